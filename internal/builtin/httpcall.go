package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/net/http/httpguts"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tasker-go/tasker/internal/handler"
	"github.com/tasker-go/tasker/internal/netguard"
)

const (
	nameHTTP = "http"

	// DefaultHTTPTimeout bounds one request of the "http" handler when its
	// config sets no timeout.
	DefaultHTTPTimeout = 30 * time.Second
	// DefaultMaxResponseBytes is the default "max_response_bytes".
	DefaultMaxResponseBytes = 1 << 20
	// maxRedirects is how many redirects a request follows.
	maxRedirects = 10
	// errorBodyBytes bounds the response body quoted in error messages.
	errorBodyBytes = 300
)

// HTTPOptions configures the "http" handler.
type HTTPOptions struct {
	// Guard decides which destinations requests may reach. Nil refuses
	// every special address (loopback, private, link-local, …).
	Guard *netguard.Policy
	// UserAgent is sent unless a step sets its own. Default "tasker".
	UserAgent string
}

// httpConfig is the "http" handler's config.
type httpConfig struct {
	Method           string            `json:"method"`
	URL              string            `json:"url"`
	Headers          map[string]string `json:"headers"`
	Query            map[string]string `json:"query"`
	Body             json.RawMessage   `json:"body"`
	Timeout          string            `json:"timeout"`
	MaxResponseBytes *int64            `json:"max_response_bytes"`
	ResponseHeaders  []string          `json:"response_headers"`
}

// httpResult is the step result of a successful request.
type httpResult struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    any               `json:"body"`
}

var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// NewHTTP returns the "http" handler: one HTTP request per attempt, built
// from the step's config with values taken from the task context and the
// dependencies' results. Config:
//
//	{"method": "POST", "url": "https://api.example.com/orders/{{ .context.order_id }}",
//	 "headers": {"Authorization": "Bearer ${env:TOKEN}"}, "query": {"expand": "items"},
//	 "body": {"amount": "{{ .steps.price.results.total }}"},
//	 "timeout": "10s", "max_response_bytes": 65536, "response_headers": ["ETag"]}
//
// A 2xx answer completes the step with {"status", "headers", "body"}; the
// body is parsed JSON when the answer is JSON, else text. 429 and 503 are
// retried, after the Retry-After the server sent when it sent one; 400,
// 401, 403, 404 and 422 fail the step permanently; any other status and
// any network error is retried. Destinations are checked by opts.Guard.
func NewHTTP(opts HTTPOptions) handler.Handler {
	if opts.UserAgent == "" {
		opts.UserAgent = "tasker"
	}
	client := opts.Guard.Client(0, maxRedirects)
	return handler.Func(func(ctx context.Context, in *handler.Input) (any, error) {
		cfg, err := decodeHTTPConfig(in.Config)
		if err != nil {
			return nil, err
		}
		data, err := renderData(in)
		if err != nil {
			return nil, handler.Permanent(err)
		}
		req, limit, timeout, err := cfg.request(ctx, data, opts.UserAgent)
		if err != nil {
			return nil, handler.Permanent(err)
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req = req.WithContext(ctx)
		where := req.Method + " " + redactURL(req.URL)
		resp, err := client.Do(req)
		if err != nil {
			if errors.Is(err, netguard.ErrRefused) {
				return nil, handler.Permanent(fmt.Errorf("%s: %w", where, unwrapURLError(err)))
			}
			if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
				return nil, fmt.Errorf("%s: no answer within %s", where, timeout)
			}
			return nil, fmt.Errorf("%s: %w", where, unwrapURLError(err))
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
		if err != nil {
			return nil, fmt.Errorf("%s: reading the answer (status %d): %w", where, resp.StatusCode, err)
		}
		if int64(len(body)) > limit {
			return nil, handler.Permanent(fmt.Errorf("%s: the answer exceeds max_response_bytes (%d)", where, limit))
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return nil, classifyStatus(resp, body, where, time.Now())
		}
		res := httpResult{Status: resp.StatusCode, Body: decodeBody(resp.Header.Get("Content-Type"), body)}
		for _, h := range cfg.ResponseHeaders {
			if v := resp.Header.Values(h); len(v) > 0 {
				if res.Headers == nil {
					res.Headers = map[string]string{}
				}
				res.Headers[http.CanonicalHeaderKey(h)] = strings.Join(v, ", ")
			}
		}
		return res, nil
	})
}

// classifyStatus turns a non-2xx answer into the error that steers retries.
func classifyStatus(resp *http.Response, body []byte, where string, now time.Time) error {
	err := fmt.Errorf("%s: status %d%s", where, resp.StatusCode, quoteBody(body))
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusUnprocessableEntity:
		return handler.Permanent(err)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if d, ok := parseRetryAfterHeader(resp.Header.Get("Retry-After"), now); ok {
			return handler.RetryAfter(d, fmt.Errorf("%w (Retry-After %s)", err, d))
		}
	}
	return err
}

// parseRetryAfterHeader reads a Retry-After header: delay-seconds or an
// HTTP-date. A date in the past means no delay.
func parseRetryAfterHeader(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > int64(365*24*time.Hour/time.Second) {
			n = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// decodeBody returns a JSON answer parsed, a text answer as a string, and
// other bytes as {"base64": …}.
func decodeBody(contentType string, body []byte) any {
	if len(body) == 0 {
		return nil
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/json" || strings.HasSuffix(mt, "+json") || (mt == "" && json.Valid(body)) {
		if json.Valid(body) {
			return json.RawMessage(body)
		}
	}
	if utf8.Valid(body) {
		return string(body)
	}
	return map[string][]byte{"base64": body}
}

func quoteBody(body []byte) string {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return ""
	}
	if len(s) > errorBodyBytes {
		s = s[:errorBodyBytes]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return ": " + strings.Join(strings.Fields(s), " ")
}

// redactURL names a URL in messages without its query and user info,
// where credentials tend to travel.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		c.RawQuery = "…"
	}
	c.Fragment = ""
	return c.String()
}

// unwrapURLError drops the *url.Error layer, which repeats the whole URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func decodeHTTPConfig(raw json.RawMessage) (*httpConfig, error) {
	var cfg httpConfig
	if err := decodeConfig(nameHTTP, raw, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.check(); err != nil {
		return nil, handler.Permanent(err)
	}
	return &cfg, nil
}

// check validates what can be checked before any value is rendered.
func (c *httpConfig) check() error {
	if c.Method == "" {
		c.Method = "GET"
	}
	c.Method = strings.ToUpper(c.Method)
	if !slices.Contains(httpMethods, c.Method) {
		return fmt.Errorf("http config: field \"method\": %q is not one of %s", c.Method, strings.Join(httpMethods, ", "))
	}
	if strings.TrimSpace(c.URL) == "" {
		return errors.New(`http config: field "url" is required`)
	}
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			return fmt.Errorf(`http config: field "timeout": %q is not a positive duration such as "10s"`, c.Timeout)
		}
	}
	if c.MaxResponseBytes != nil && *c.MaxResponseBytes <= 0 {
		return fmt.Errorf(`http config: field "max_response_bytes": %d is not a positive number of bytes`, *c.MaxResponseBytes)
	}
	for k := range c.Headers {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("http config: field \"headers\": %q is not a valid header name", k)
		}
	}
	for _, h := range c.ResponseHeaders {
		if !httpguts.ValidHeaderFieldName(h) {
			return fmt.Errorf("http config: field \"response_headers\": %q is not a valid header name", h)
		}
	}
	if len(c.Body) > 0 && (c.Method == "GET" || c.Method == "HEAD") && string(c.Body) != "null" {
		return fmt.Errorf("http config: field \"body\": a %s request has no body", c.Method)
	}
	return nil
}

// request renders the config's values and builds the request; it returns
// the response size limit and the timeout too.
func (c *httpConfig) request(ctx context.Context, data map[string]any, userAgent string) (*http.Request, int64, time.Duration, error) {
	rawURL, err := renderString("url", c.URL, data)
	if err != nil {
		return nil, 0, 0, err
	}
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("http config: field \"url\": %w", unwrapURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, 0, 0, fmt.Errorf("http config: field \"url\": scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, 0, 0, errors.New(`http config: field "url": the URL has no host`)
	}
	if len(c.Query) > 0 {
		q := u.Query()
		for _, k := range sortedKeys(c.Query) {
			v, err := renderString("query."+k, c.Query[k], data)
			if err != nil {
				return nil, 0, 0, err
			}
			q.Add(k, v)
		}
		u.RawQuery = q.Encode()
	}
	var body io.Reader
	if len(c.Body) > 0 && string(c.Body) != "null" {
		rendered, err := renderJSON("body", c.Body, data)
		if err != nil {
			return nil, 0, 0, err
		}
		body = bytes.NewReader(rendered)
	}
	req, err := http.NewRequestWithContext(ctx, c.Method, u.String(), body)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("http config: %w", err)
	}
	req.Header.Set("User-Agent", userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, */*;q=0.5")
	for _, k := range sortedKeys(c.Headers) {
		v, err := renderString("headers."+k, c.Headers[k], data)
		if err != nil {
			return nil, 0, 0, err
		}
		if strings.ContainsAny(v, "\r\n") {
			return nil, 0, 0, fmt.Errorf("http config: field \"headers.%s\": the value holds a line break", k)
		}
		req.Header.Set(k, v)
	}
	limit := int64(DefaultMaxResponseBytes)
	if c.MaxResponseBytes != nil {
		limit = *c.MaxResponseBytes
	}
	timeout := DefaultHTTPTimeout
	if c.Timeout != "" {
		timeout, _ = time.ParseDuration(c.Timeout)
	}
	return req, limit, timeout, nil
}

// templateStrings returns the config's strings that may hold templates,
// by field path.
func (c *httpConfig) templateStrings() map[string]string {
	out := map[string]string{"url": c.URL}
	for k, v := range c.Headers {
		out["headers."+k] = v
	}
	for k, v := range c.Query {
		out["query."+k] = v
	}
	if len(c.Body) > 0 {
		dec := json.NewDecoder(bytes.NewReader(c.Body))
		dec.UseNumber()
		var doc any
		if dec.Decode(&doc) == nil {
			var walk func(p string, v any)
			walk = func(p string, v any) {
				switch t := v.(type) {
				case string:
					out[p] = t
				case map[string]any:
					for k, x := range t {
						walk(p+"."+k, x)
					}
				case []any:
					for i, x := range t {
						walk(fmt.Sprintf("%s[%d]", p, i), x)
					}
				}
			}
			walk("body", doc)
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
