package tasker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/template"
	"github.com/tasker-go/tasker/internal/webhook"
)

// Webhook declares a webhook subscription: the stored events it delivers,
// the URL, the signing secret, extra headers and the delivery retry
// policy. See docs/subscriptions.md.
type Webhook = template.Subscription

// LoadSubscriptionsFile parses a server's subscriptions file. Problems are
// a *TemplateError listing each with its line.
func LoadSubscriptionsFile(path string) ([]Webhook, error) {
	return template.ParseSubscriptionsFile(path)
}

// SetServerSubscriptions replaces the server-level subscriptions (those of
// a subscriptions file) with subs. New ones deliver the events committed
// from now on; kept ones (same name) continue where they were; the others
// stop, and their deliveries stay visible.
func (c *Client) SetServerSubscriptions(ctx context.Context, subs []Webhook) error {
	if _, err := webhook.SyncServer(ctx, c.store, subs, c.clock.Now()); err != nil {
		return fmt.Errorf("tasker: %w", err)
	}
	c.deliverer.Kick()
	return nil
}

// WebhookInfo is a stored webhook subscription with its delivery counts.
type WebhookInfo struct {
	ID string `json:"id"`
	// Source is "server" (a subscriptions file) or
	// "template:NAMESPACE/NAME@VERSION".
	Source    string   `json:"source"`
	Name      string   `json:"name"`
	Namespace string   `json:"namespace,omitempty"`
	TaskName  string   `json:"template,omitempty"`
	Version   string   `json:"version,omitempty"`
	Events    []string `json:"events"`
	// URL is shown without user info and query, where credentials travel.
	URL string `json:"url"`
	// Headers are the names of the extra headers.
	Headers []string `json:"headers,omitempty"`
	// Retry is the delivery retry policy.
	RetryLimit int `json:"retry_limit"`
	// Active is false once the subscription was removed from its source.
	Active bool `json:"active"`
	// Cursor is how far into the event log it has been fanned out.
	Cursor    int64     `json:"cursor"`
	Pending   int       `json:"pending"`
	Delivered int       `json:"delivered"`
	Failed    int       `json:"failed"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Webhooks lists the webhook subscriptions, of one namespace when
// namespace is set (those of every namespace are then left out).
func (c *Client) Webhooks(ctx context.Context, namespace string) ([]*WebhookInfo, error) {
	subs, err := c.store.SubscriptionList(ctx, &store.SubscriptionListParams{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	out := make([]*WebhookInfo, 0, len(subs))
	for _, s := range subs {
		spec, err := webhook.Spec(s)
		if err != nil {
			return nil, fmt.Errorf("tasker: %w", err)
		}
		info := &WebhookInfo{ID: s.ID, Source: s.Source, Name: s.Name, Namespace: s.Namespace, TaskName: s.TaskName, Version: s.Version,
			Events: spec.Events, URL: displayURL(spec.URL), RetryLimit: spec.Retry.Limit, Active: s.Active, Cursor: s.Cursor,
			Pending: s.Pending, Delivered: s.Delivered, Failed: s.Failed, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
		for h := range spec.Headers {
			info.Headers = append(info.Headers, h)
		}
		slices.Sort(info.Headers)
		out = append(out, info)
	}
	return out, nil
}

func displayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}

// Delivery states.
const (
	DeliveryPending   = store.DeliveryPending
	DeliveryDelivered = store.DeliveryDelivered
	DeliveryFailed    = store.DeliveryFailed
)

// Delivery is one event to deliver to one subscription.
type Delivery struct {
	// ID is the delivery id the receiver sees (header Tasker-Delivery and
	// "delivery_id"), the same on every attempt.
	ID             string `json:"id"`
	SubscriptionID string `json:"subscription_id"`
	Subscription   string `json:"subscription"`
	EventCursor    int64  `json:"event_cursor"`
	Event          string `json:"event"`
	TaskID         string `json:"task_id"`
	Namespace      string `json:"namespace"`
	// State is pending, delivered or failed.
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	// NextAttemptAt is when a pending delivery is sent next.
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	// LastStatus is the HTTP status of the last attempt (0: no answer).
	LastStatus  int       `json:"last_status,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
	// Payload is the body sent, with Delivery and Client.Delivery only.
	Payload json.RawMessage `json:"payload,omitempty"`
}

func deliveryFromStore(d *store.Delivery, withPayload bool) *Delivery {
	out := &Delivery{ID: d.ID, SubscriptionID: d.SubscriptionID, Subscription: d.SubscriptionName, EventCursor: d.EventCursor,
		Event: d.EventName, TaskID: d.TaskID, Namespace: d.Namespace, State: d.State, Attempts: d.Attempts,
		LastStatus: d.LastStatus, LastError: d.LastError, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, DeliveredAt: d.DeliveredAt}
	if d.State == store.DeliveryPending {
		out.NextAttemptAt = d.NextAttemptAt
	}
	if withPayload {
		out.Payload = d.Payload
	}
	return out
}

// DeliveryListOpts filter Deliveries.
type DeliveryListOpts struct {
	SubscriptionID string
	// State is pending, delivered or failed; empty lists all.
	State     string
	TaskID    string
	Namespace string
	// Before continues a listing after its last delivery's id.
	Before string
	// Limit defaults to 100, at most 1000.
	Limit int
}

// Deliveries lists deliveries, newest first.
func (c *Client) Deliveries(ctx context.Context, opts *DeliveryListOpts) ([]*Delivery, error) {
	if opts == nil {
		opts = &DeliveryListOpts{}
	}
	switch opts.State {
	case "", DeliveryPending, DeliveryDelivered, DeliveryFailed:
	default:
		return nil, fmt.Errorf("tasker: unknown delivery state %q (pending, delivered or failed): %w", opts.State, ErrInvalidRequest)
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	ds, err := c.store.DeliveryList(ctx, &store.DeliveryListParams{SubscriptionID: opts.SubscriptionID, State: opts.State,
		TaskID: opts.TaskID, Namespace: opts.Namespace, Before: opts.Before, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	out := make([]*Delivery, len(ds))
	for i, d := range ds {
		out[i] = deliveryFromStore(d, false)
	}
	return out, nil
}

// Delivery returns one delivery with its payload.
func (c *Client) Delivery(ctx context.Context, id string) (*Delivery, error) {
	d, err := c.store.DeliveryGet(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	return deliveryFromStore(d, true), nil
}

// RetryDelivery sends a failed (or delivered) delivery again, with a fresh
// attempt budget. A pending one is an ErrConflict.
func (c *Client) RetryDelivery(ctx context.Context, id string) (*Delivery, error) {
	d, err := c.store.DeliveryRetry(ctx, id, c.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	c.deliverer.Kick()
	return deliveryFromStore(d, true), nil
}

// FlushDeliveries fans out the events committed so far and sends due
// deliveries until none of the task's is pending or ctx is done; it
// returns how many are still pending. tasker run uses it so that a task's
// last events reach their webhooks before the process exits.
func (c *Client) FlushDeliveries(ctx context.Context, taskID string) (int, error) {
	for {
		if err := c.deliverer.Pass(ctx); err != nil && ctx.Err() == nil {
			return 0, fmt.Errorf("tasker: %w", err)
		}
		pending, err := c.store.DeliveryList(context.WithoutCancel(ctx), &store.DeliveryListParams{TaskID: taskID,
			State: store.DeliveryPending, Limit: 1000})
		if err != nil {
			return 0, fmt.Errorf("tasker: %w", err)
		}
		if len(pending) == 0 {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return len(pending), ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Webhook delivery headers.
const (
	// WebhookDeliveryHeader carries the delivery id, the same on every attempt.
	WebhookDeliveryHeader = webhook.HeaderDelivery
	// WebhookEventHeader carries the event name.
	WebhookEventHeader = webhook.HeaderEvent
	// WebhookAttemptHeader carries the attempt number, from 1.
	WebhookAttemptHeader = webhook.HeaderAttempt
	// WebhookSignatureHeader carries "t=UNIX,v1=HEX": the hex HMAC-SHA256,
	// keyed with the subscription's secret, of "UNIX." followed by the body.
	WebhookSignatureHeader = webhook.HeaderSignature
)

// ErrBadWebhookSignature reports a webhook signature that does not verify.
var ErrBadWebhookSignature = webhook.ErrBadSignature

// VerifyWebhook checks the signature header of a webhook delivery against
// the raw body and the subscription's secret, and that it was signed within
// tolerance of now (0 skips that check). Receivers written in Go use it.
func VerifyWebhook(secret []byte, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	return webhook.Verify(secret, signature, body, now, tolerance)
}
