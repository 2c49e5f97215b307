package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/handler"
	"github.com/tasker-go/tasker/internal/netguard"
)

// localHTTP returns the http handler allowed to reach local test servers.
func localHTTP(t *testing.T) handler.Handler {
	t.Helper()
	guard, err := netguard.ParsePolicy([]string{"127.0.0.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	return NewHTTP(HTTPOptions{Guard: guard})
}

func httpInput(t *testing.T, config string) *handler.Input {
	t.Helper()
	return &handler.Input{TaskID: "t-1", StepID: "s-1", StepName: "call", Namespace: "shop", TaskName: "order", Version: "1.0.0",
		Attempt: 2, RetryLimit: 3, Config: json.RawMessage(config),
		Context:      json.RawMessage(`{"order_id": "A/42", "amount": 1999, "big": 12345678901234567890, "items": [{"sku": "x"}], "note": null}`),
		Dependencies: map[string]json.RawMessage{"price": json.RawMessage(`{"total": 19.99, "currency": "EUR", "ok": true}`)}}
}

func TestHTTPStatusClassification(t *testing.T) {
	t.Parallel()
	date := time.Now().Add(40 * time.Second).UTC().Format(http.TimeFormat)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/drop":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		case "/slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
			return
		case "/retry-seconds":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
			return
		case "/retry-date":
			w.Header().Set("Retry-After", date)
			w.WriteHeader(503)
			io.WriteString(w, "maintenance")
			return
		case "/retry-garbage":
			w.Header().Set("Retry-After", "soon")
			w.WriteHeader(503)
			return
		}
		var code int
		fmt.Sscanf(r.URL.Path, "/%d", &code)
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error": "status %d"}`, code)
	}))
	defer srv.Close()
	h := localHTTP(t)
	type want struct {
		permanent bool
		delay     time.Duration // requested delay; 0: none
	}
	cases := map[string]want{
		"/400": {permanent: true}, "/401": {permanent: true}, "/403": {permanent: true}, "/404": {permanent: true}, "/422": {permanent: true},
		"/429": {}, "/503": {}, "/500": {}, "/502": {}, "/504": {}, "/408": {}, "/409": {}, "/418": {}, "/304": {},
		"/retry-seconds": {delay: 7 * time.Second},
		"/retry-date":    {delay: 40 * time.Second},
		"/retry-garbage": {},
		"/drop":          {},
		"/slow":          {},
	}
	for path, w := range cases {
		cfg := fmt.Sprintf(`{"url": %q, "timeout": "300ms"}`, srv.URL+path)
		_, err := h.Handle(context.Background(), httpInput(t, cfg))
		if err == nil {
			t.Errorf("%s: no error", path)
			continue
		}
		c := handler.Classify(err)
		if c.Permanent != w.permanent {
			t.Errorf("%s: permanent = %v, want %v (%v)", path, c.Permanent, w.permanent, err)
		}
		switch {
		case w.delay == 0 && c.Requested:
			t.Errorf("%s: asked for a delay of %s, want none", path, c.Delay)
		case w.delay != 0 && (!c.Requested || c.Delay > w.delay || c.Delay < w.delay-2*time.Second):
			t.Errorf("%s: delay = %s (requested %v), want about %s", path, c.Delay, c.Requested, w.delay)
		}
		if !strings.Contains(err.Error(), "GET "+srv.URL+path) {
			t.Errorf("%s: the error does not name the request: %v", path, err)
		}
	}
	_, err := h.Handle(context.Background(), httpInput(t, fmt.Sprintf(`{"url": %q}`, srv.URL+"/422")))
	if !strings.Contains(err.Error(), `status 422: {"error": "status 422"}`) {
		t.Errorf("the error does not quote the answer: %v", err)
	}
	_, err = h.Handle(context.Background(), httpInput(t, fmt.Sprintf(`{"url": %q, "timeout": "200ms"}`, srv.URL+"/slow")))
	if !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Errorf("timeout error: %v", err)
	}
}

func TestHTTPRequestAndResult(t *testing.T) {
	t.Parallel()
	var seen atomic.Pointer[http.Request]
	var seenBody atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen.Store(r)
		seenBody.Store(string(b))
		switch r.URL.Path {
		case "/text":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "plain words")
		case "/big":
			io.WriteString(w, strings.Repeat("x", 2000))
		case "/empty":
			w.WriteHeader(204)
		default:
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set("ETag", `"v7"`)
			w.Header().Set("X-Secret-Internal", "no")
			w.WriteHeader(201)
			io.WriteString(w, `{"charge_id": "ch_1", "amount": 12345678901234567890}`)
		}
	}))
	defer srv.Close()
	h := localHTTP(t)
	cfg := fmt.Sprintf(`{
		"method": "post",
		"url": "%s/orders/{{ pathescape .context.order_id }}/charge",
		"headers": {"X-Attempt": "{{ .step.attempt }}", "Idempotency-Key": "{{ .task.id }}-{{ .step.name }}"},
		"query": {"currency": "{{ .steps.price.results.currency }}", "region": "{{ default \"eu\" (index .context \"region\") }}"},
		"body": {"amount": "{{ .context.amount }}", "big": "{{ .context.big }}", "total": "{{ .steps.price.results.total }}",
		         "items": "{{ .context.items }}", "label": "order {{ .context.order_id }} of {{ .context.items }}", "fixed": [1, "two", null],
		         "ok": "{{ .steps.price.results.ok }}", "note": "{{ .context.note }}"},
		"response_headers": ["etag", "Content-Type"]
	}`, srv.URL)
	out, err := h.Handle(context.Background(), httpInput(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	r := seen.Load()
	if r.Method != "POST" || r.URL.EscapedPath() != "/orders/A%2F42/charge" {
		t.Errorf("request %s %s", r.Method, r.URL.EscapedPath())
	}
	if q := r.URL.Query(); q.Get("currency") != "EUR" || q.Get("region") != "eu" {
		t.Errorf("query %v", q)
	}
	if r.Header.Get("X-Attempt") != "2" || r.Header.Get("Idempotency-Key") != "t-1-call" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.Header)
	}
	wantBody := `{"amount":1999,"big":12345678901234567890,"fixed":[1,"two",null],"items":[{"sku":"x"}],` +
		`"label":"order A/42 of [{\"sku\":\"x\"}]","note":null,"ok":true,"total":19.99}`
	if got := seenBody.Load().(string); got != wantBody {
		t.Errorf("body\n got %s\nwant %s", got, wantBody)
	}
	res, _ := json.Marshal(out)
	wantRes := `{"status":201,"headers":{"Content-Type":"application/json; charset=utf-8","Etag":"\"v7\""},"body":{"charge_id":"ch_1","amount":12345678901234567890}}`
	if string(res) != wantRes {
		t.Errorf("result\n got %s\nwant %s", res, wantRes)
	}

	out, err = h.Handle(context.Background(), httpInput(t, fmt.Sprintf(`{"url": "%s/text", "method": "DELETE"}`, srv.URL)))
	if res, _ := json.Marshal(out); err != nil || string(res) != `{"status":200,"body":"plain words"}` {
		t.Errorf("text answer: %s, %v", res, err)
	}
	out, err = h.Handle(context.Background(), httpInput(t, fmt.Sprintf(`{"url": "%s/empty"}`, srv.URL)))
	if res, _ := json.Marshal(out); err != nil || string(res) != `{"status":204,"body":null}` {
		t.Errorf("empty answer: %s, %v", res, err)
	}
	_, err = h.Handle(context.Background(), httpInput(t, fmt.Sprintf(`{"url": "%s/big", "max_response_bytes": 1000}`, srv.URL)))
	if err == nil || !handler.Classify(err).Permanent || !strings.Contains(err.Error(), "exceeds max_response_bytes (1000)") {
		t.Errorf("oversized answer: %v", err)
	}

	// Values that cannot be rendered fail the step permanently, naming the field.
	for cfg, want := range map[string]string{
		`{"url": "%s/{{ .context.missing }}"}`:                                            `field "url": at <.context.missing>: map has no entry for key "missing"`,
		`{"url": "%s/x", "method": "POST", "body": {"a": ["{{ .steps.nope.results }}"]}}`: `field "body.a[0]"`,
		`{"url": "%s/x", "headers": {"X-Note": "{{ .context.note }}"}}`:                   `field "headers.X-Note": the value is null`,
		`{"url": "%s/x?n={{ .context.note }}&m=1"}`:                                       `field "url": a value it uses is null`,
		`{"url": "%s/x", "headers": {"X-Bad": "a{{ \"\\n\" }}b"}}`:                        `the value holds a line break`,
		`{"url": "ftp://{{ .context.order_id }}%s"}`:                                      `scheme "ftp" is not http or https`,
	} {
		_, err := h.Handle(context.Background(), httpInput(t, fmt.Sprintf(cfg, srv.URL)))
		if err == nil || !handler.Classify(err).Permanent || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want permanent with %q", cfg, err, want)
		}
	}
}

func TestHTTPRefusesSpecialDestinations(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	h := NewHTTP(HTTPOptions{})
	for _, u := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1), "http://169.254.169.254/latest", "http://2130706433/"} {
		_, err := h.Handle(context.Background(), httpInput(t, fmt.Sprintf(`{"url": %q}`, u)))
		if !errors.Is(err, netguard.ErrRefused) || !handler.Classify(err).Permanent {
			t.Errorf("%s: err = %v, want a permanent refusal", u, err)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("the server was reached %d times", hits.Load())
	}
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		handler, config string
		deps            []string
		want            string // "" for valid
	}{
		{"http", `{"url": "https://x.example/{{ .steps.price.results.id }}", "method": "PUT", "body": {"a": "{{ .context.a }}"}}`, []string{"price"}, ""},
		{"http", `{"url": "https://x.example/{{ .steps.price.results.id }}"}`, nil, `reads the result of "price", which is not in this step's depends_on`},
		{"http", `{"url": "https://x.example/{{ .context.a "}`, nil, `field "url": unclosed action`},
		{"http", `{"url": "https://x.example/", "method": "BREW"}`, nil, `"BREW" is not one of GET, HEAD, POST`},
		{"http", `{"url": "https://x.example/", "timeout": "soon"}`, nil, `field "timeout"`},
		{"http", `{"url": "https://x.example/", "max_response_bytes": 0}`, nil, `field "max_response_bytes"`},
		{"http", `{"url": "https://x.example/", "body": {"a": 1}}`, nil, `a GET request has no body`},
		{"http", `{"url": "https://x.example/", "headers": {"Bad Name": "x"}}`, nil, `"Bad Name" is not a valid header name`},
		{"http", `{"uri": "https://x.example/"}`, nil, `unknown field "uri"`},
		{"http", `{}`, nil, `field "url" is required`},
		{"http", `{"url": "https://x.example/", "headers": {"A": "{{ .context.a }}", "B": "{{ .steps.x.results }}"}}`, nil, `headers.B`},
		{"sleep", `{"duration": "soon"}`, nil, `field "duration"`},
		{"sleep", `{}`, nil, `field "duration" is required`},
		{"noop", `{"resultz": 1}`, nil, `unknown field "resultz"`},
		{"command", `{"command": []}`, nil, `field "command" is required`},
		{"mine", `{"anything": true}`, nil, ""},
	} {
		err := CheckConfig(tc.handler, json.RawMessage(tc.config), tc.deps)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %s: %v", tc.handler, tc.config, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s %s: err = %v, want %q", tc.handler, tc.config, err, tc.want)
		case err != nil && handler.Classify(err).Permanent:
			t.Errorf("%s: a validation error must not carry the retry marker", tc.handler)
		}
	}
}

func TestParseRetryAfterHeader(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"0": 0, "120": 2 * time.Minute, "Fri, 27 Nov 2026 12:01:30 GMT": 90 * time.Second, "Fri, 27 Nov 2026 11:00:00 GMT": 0,
		"Friday, 27-Nov-26 12:00:10 GMT": 10 * time.Second, "99999999999": 365 * 24 * time.Hour,
	} {
		if d, ok := parseRetryAfterHeader(v, now); !ok || d != want {
			t.Errorf("%q: %s, %v; want %s", v, d, ok, want)
		}
	}
	for _, v := range []string{"", "-5", "soon", "1.5"} {
		if _, ok := parseRetryAfterHeader(v, now); ok {
			t.Errorf("%q was accepted", v)
		}
	}
}
