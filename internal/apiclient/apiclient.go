// Package apiclient is a small client of the Tasker REST API, used by the
// command line to work against a running server.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-go/tasker"
)

// Client calls one server with one token.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// New returns a client of the server at baseURL (http or https).
func New(baseURL, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q must look like http://host:port", baseURL)
	}
	return &Client{base: u, token: token, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Error is a problem returned by the server.
type Error struct {
	Status int
	Code   string
	Detail string
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Detail)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
}

// ErrNotFound is matched by errors.Is for 404 answers.
var ErrNotFound = errors.New("not found")

// Is makes 404 problems match ErrNotFound.
func (e *Error) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var p struct{ Code, Detail string }
		_ = json.Unmarshal(data, &p)
		if p.Code == "" {
			p.Code = http.StatusText(resp.StatusCode)
		}
		return &Error{Status: resp.StatusCode, Code: p.Code, Detail: p.Detail}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
	}
	return nil
}

// ListTasks lists tasks, newest first.
func (c *Client) ListTasks(ctx context.Context, state string, limit int, cursor string) (*tasker.TaskPage, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var page tasker.TaskPage
	if err := c.do(ctx, "GET", "/v1/tasks", q, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// Task returns a task with its steps.
func (c *Client) Task(ctx context.Context, id string) (*tasker.Task, error) {
	var out struct{ Task *tasker.Task }
	if err := c.do(ctx, "GET", "/v1/tasks/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Task, nil
}

// Transitions returns a task's audit trail.
func (c *Client) Transitions(ctx context.Context, id string) ([]*tasker.Transition, error) {
	var out struct{ Transitions []*tasker.Transition }
	if err := c.do(ctx, "GET", "/v1/tasks/"+url.PathEscape(id)+"/transitions", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Transitions, nil
}

// CancelTask cancels a task.
func (c *Client) CancelTask(ctx context.Context, id, reason string) (*tasker.Task, error) {
	return c.taskAction(ctx, id, "cancel", reason)
}

// RetryTask retries a task in error.
func (c *Client) RetryTask(ctx context.Context, id, reason string) (*tasker.Task, error) {
	return c.taskAction(ctx, id, "retry", reason)
}

// ResolveTask marks a task in error as resolved by hand.
func (c *Client) ResolveTask(ctx context.Context, id, reason string) (*tasker.Task, error) {
	return c.taskAction(ctx, id, "resolve", reason)
}

// Step fetches one step with its task's identity.
func (c *Client) Step(ctx context.Context, id string) (*tasker.StepDetail, error) {
	var out struct{ Step *tasker.StepDetail }
	if err := c.do(ctx, "GET", "/v1/steps/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Step, nil
}

// StepAction runs an operator action on a step: "reset", "resolve" or
// "cancel".
func (c *Client) StepAction(ctx context.Context, id, action, reason string) (*tasker.StepDetail, error) {
	var out struct{ Step *tasker.StepDetail }
	if err := c.do(ctx, "POST", "/v1/steps/"+url.PathEscape(id)+"/"+action, nil, map[string]string{"reason": reason}, &out); err != nil {
		return nil, err
	}
	return out.Step, nil
}

// Webhooks lists the webhook subscriptions.
func (c *Client) Webhooks(ctx context.Context, namespace string) ([]*tasker.WebhookInfo, error) {
	q := url.Values{}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	var out struct{ Webhooks []*tasker.WebhookInfo }
	if err := c.do(ctx, "GET", "/v1/webhooks", q, nil, &out); err != nil {
		return nil, err
	}
	return out.Webhooks, nil
}

// Deliveries lists webhook deliveries, newest first.
func (c *Client) Deliveries(ctx context.Context, opts *tasker.DeliveryListOpts) ([]*tasker.Delivery, error) {
	q := url.Values{}
	for k, v := range map[string]string{"webhook": opts.SubscriptionID, "state": opts.State, "task_id": opts.TaskID,
		"namespace": opts.Namespace, "before": opts.Before} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	var out struct{ Deliveries []*tasker.Delivery }
	if err := c.do(ctx, "GET", "/v1/deliveries", q, nil, &out); err != nil {
		return nil, err
	}
	return out.Deliveries, nil
}

// Delivery fetches one delivery with its payload.
func (c *Client) Delivery(ctx context.Context, id string) (*tasker.Delivery, error) {
	var out struct{ Delivery *tasker.Delivery }
	if err := c.do(ctx, "GET", "/v1/deliveries/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Delivery, nil
}

// RetryDelivery sends a failed or delivered delivery again.
func (c *Client) RetryDelivery(ctx context.Context, id string) (*tasker.Delivery, error) {
	var out struct{ Delivery *tasker.Delivery }
	if err := c.do(ctx, "POST", "/v1/deliveries/"+url.PathEscape(id)+"/retry", nil, map[string]string{}, &out); err != nil {
		return nil, err
	}
	return out.Delivery, nil
}

func (c *Client) taskAction(ctx context.Context, id, action, reason string) (*tasker.Task, error) {
	var out struct{ Task *tasker.Task }
	if err := c.do(ctx, "POST", "/v1/tasks/"+url.PathEscape(id)+"/"+action, nil, map[string]string{"reason": reason}, &out); err != nil {
		return nil, err
	}
	return out.Task, nil
}

// TemplateSummary is a template as listed by the server.
type TemplateSummary struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description"`
	Steps       int    `json:"steps"`
}

// Templates lists the server's templates.
func (c *Client) Templates(ctx context.Context) ([]TemplateSummary, error) {
	var out struct{ Templates []TemplateSummary }
	if err := c.do(ctx, "GET", "/v1/templates", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Templates, nil
}
