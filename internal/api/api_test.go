package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/api"
	"github.com/tasker-go/tasker/internal/auth"
)

const flowYAML = `namespace: %s
name: flow
version: 1.0.0
context_schema:
  type: object
  properties: {n: {type: integer}}
steps:
  - {name: first, handler: noop, config: {result: {ok: true}}}
  - {name: second, handler: sleep, depends_on: [first], config: {duration: 50ms}}
  - {name: third, handler: noop, depends_on: [second]}
`

type fixture struct {
	t      *testing.T
	client *tasker.Client
	srv    *api.Server
	url    string
	tokens map[string]string // kind -> secret
}

func newFixture(t *testing.T, start bool) *fixture {
	t.Helper()
	ctx := context.Background()
	c, err := tasker.Open(ctx, tasker.Config{Database: filepath.Join(t.TempDir(), "t.db"), SQLiteSynchronous: "NORMAL",
		PollInterval: 50 * time.Millisecond, DisableCommandHandler: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, ns := range []string{"alpha", "beta"} {
		tmpl, err := tasker.ParseTemplate("flow.yaml", []byte(fmt.Sprintf(flowYAML, ns)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RegisterTemplate(ctx, tmpl); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{t: t, client: c, tokens: map[string]string{}}
	mk := func(kind, role, ns string, expires time.Duration) {
		tok, err := c.CreateToken(ctx, tasker.TokenRequest{Name: kind, Role: role, Namespace: ns, ExpiresIn: expires})
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[kind] = tok.Secret
	}
	mk("viewer", "viewer", "", 0)
	mk("operator", "operator", "", 0)
	mk("admin", "admin", "", 0)
	mk("alpha-operator", "operator", "alpha", 0)
	mk("beta-admin", "admin", "beta", 0)
	mk("expired", "admin", "", time.Millisecond)
	mk("revoked", "admin", "", 0)
	list, _ := c.Tokens(ctx)
	for _, tk := range list {
		if tk.Name == "revoked" {
			if _, err := c.RevokeToken(ctx, tk.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(5 * time.Millisecond) // the expired token's lifetime
	f.tokens["malformed"] = "tsk_nothex_x"
	f.tokens["unknown"] = "tsk_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "# metrics\n") })
	srv, err := api.New(api.Config{Client: c, Auth: auth.NewAuthenticator(c, nil, nil), Metrics: metrics, RateLimit: 10000,
		RateBurst: 10000, EventPoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { srv.Close(); hs.Close() })
	f.srv, f.url = srv, hs.URL
	if start {
		if err := c.Start(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response %d is not JSON: %v\n%s", r.status, err, r.body)
	}
}

func (f *fixture) do(method, path, token string, body any, headers ...string) *response {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, f.url+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return &response{status: resp.StatusCode, header: resp.Header, body: data}
}

// hookedYAML has a webhook whose destination is refused, so that its
// deliveries stay pending.
const hookedYAML = `namespace: alpha
name: hooked
version: 1.0.0
subscriptions:
  - {name: ops, events: [task.initialize_requested], url: "http://10.0.0.1/hook", secret: s3cret}
steps:
  - {name: only, handler: noop}
`

// createDelivery creates a task of alpha/hooked (registered by the test)
// and returns the id of its pending delivery.
func (f *fixture) createDelivery() string {
	f.t.Helper()
	ctx := context.Background()
	res, err := f.client.CreateTask(ctx, tasker.TaskRequest{Namespace: "alpha", Name: "hooked"})
	if err != nil {
		f.t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	f.client.FlushDeliveries(fctx, res.Task.ID)
	cancel()
	ds, err := f.client.Deliveries(ctx, &tasker.DeliveryListOpts{TaskID: res.Task.ID})
	if err != nil || len(ds) != 1 {
		f.t.Fatalf("deliveries of %s: %v, %v", res.Task.ID, ds, err)
	}
	return ds[0].ID
}

// createTask creates a task through the client directly.
func (f *fixture) createTask(ns string) *tasker.Task {
	f.t.Helper()
	res, err := f.client.CreateTask(context.Background(), tasker.TaskRequest{Namespace: ns, Name: "flow"})
	if err != nil {
		f.t.Fatal(err)
	}
	task, err := f.client.Task(context.Background(), res.Task.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	return task
}

func checkProblem(t *testing.T, r *response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d: %s", r.status, status, r.body)
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type %q, want application/problem+json", ct)
	}
	var p api.Problem
	r.json(t, &p)
	if p.Code != code || p.Status != status || p.Title == "" || p.CorrelationID == "" {
		t.Errorf("problem = %+v, want code %s", p, code)
	}
}

// Every endpoint, called with every kind of credential, answers what the
// permissions say; a namespace-confined token sees nothing outside its
// namespace (404) and can change nothing there.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	type call struct {
		method, path string
		body         any
		// minRole is the least role allowed; "" for public endpoints.
		minRole auth.Role
		// scoped reports a resource of namespace alpha (404 for beta tokens).
		scoped bool
		// global reports a resource refused to every confined token.
		global bool
		// list reports a listing filtered to the token's namespace.
		list bool
	}
	hooked, err := tasker.ParseTemplate("hooked.yaml", []byte(hookedYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.client.RegisterTemplate(context.Background(), hooked); err != nil {
		t.Fatal(err)
	}
	newCalls := func() []call {
		alpha := f.createTask("alpha")
		step := alpha.Steps[0].ID
		delivery := f.createDelivery()
		return []call{
			{"GET", "/health/live", nil, "", false, false, false},
			{"GET", "/health/ready", nil, "", false, false, false},
			{"GET", "/openapi.json", nil, "", false, false, false},
			{"GET", "/metrics", nil, auth.RoleViewer, false, true, false},
			{"GET", "/v1/templates", nil, auth.RoleViewer, false, false, true},
			{"PUT", "/v1/templates", map[string]string{"source": fmt.Sprintf(flowYAML, "alpha")}, auth.RoleAdmin, true, false, false},
			{"POST", "/v1/templates/validate", map[string]string{"source": fmt.Sprintf(flowYAML, "alpha")}, auth.RoleOperator, false, false, false},
			{"GET", "/v1/templates/alpha/flow", nil, auth.RoleViewer, true, false, false},
			{"GET", "/v1/templates/alpha/flow/1.0.0", nil, auth.RoleViewer, true, false, false},
			{"POST", "/v1/tasks", map[string]any{"namespace": "alpha", "name": "flow"}, auth.RoleOperator, true, false, false},
			{"GET", "/v1/tasks", nil, auth.RoleViewer, false, false, true},
			{"GET", "/v1/tasks/" + alpha.ID, nil, auth.RoleViewer, true, false, false},
			{"POST", "/v1/tasks/" + alpha.ID + "/cancel", map[string]string{"reason": "test"}, auth.RoleOperator, true, false, false},
			{"POST", "/v1/tasks/" + alpha.ID + "/retry", nil, auth.RoleOperator, true, false, false},
			{"POST", "/v1/tasks/" + alpha.ID + "/resolve", map[string]string{"reason": "done elsewhere"}, auth.RoleOperator, true, false, false},
			{"GET", "/v1/tasks/" + alpha.ID + "/diagram", nil, auth.RoleViewer, true, false, false},
			{"GET", "/v1/tasks/" + alpha.ID + "/transitions", nil, auth.RoleViewer, true, false, false},
			{"GET", "/v1/steps/" + step, nil, auth.RoleViewer, true, false, false},
			{"POST", "/v1/steps/" + step + "/reset", nil, auth.RoleOperator, true, false, false},
			{"POST", "/v1/steps/" + step + "/resolve", map[string]string{"reason": "done by hand"}, auth.RoleOperator, true, false, false},
			{"POST", "/v1/steps/" + step + "/cancel", nil, auth.RoleOperator, true, false, false},
			{"GET", "/v1/steps/" + step + "/transitions", nil, auth.RoleViewer, true, false, false},
			{"GET", "/v1/events", nil, auth.RoleViewer, false, false, true},
			{"GET", "/v1/analytics", nil, auth.RoleViewer, false, false, true},
			{"GET", "/v1/me", nil, auth.RoleViewer, false, false, false},
			{"GET", "/v1/overview", nil, auth.RoleViewer, false, false, true},
			{"GET", "/v1/webhooks", nil, auth.RoleViewer, false, false, true},
			{"GET", "/v1/deliveries", nil, auth.RoleViewer, false, false, true},
			{"GET", "/v1/deliveries/" + delivery, nil, auth.RoleViewer, true, false, false},
			{"POST", "/v1/deliveries/" + delivery + "/retry", nil, auth.RoleOperator, true, false, false},
		}
	}
	// Every route the server serves is in the matrix, except the stream
	// (tested on its own below).
	covered := map[string]bool{"GET /v1/events/stream": true}
	for _, c := range newCalls() {
		covered[c.method+" "+routePattern(c.path)] = true
	}
	for _, rt := range f.srv.Routes() {
		if !covered[rt.Method+" "+rt.Pattern] {
			t.Errorf("route %s %s is not in the authorization matrix", rt.Method, rt.Pattern)
		}
	}
	roles := map[string]auth.Role{"viewer": auth.RoleViewer, "operator": auth.RoleOperator, "admin": auth.RoleAdmin,
		"alpha-operator": auth.RoleOperator, "beta-admin": auth.RoleAdmin}
	rank := map[auth.Role]int{auth.RoleViewer: 1, auth.RoleOperator: 2, auth.RoleAdmin: 3}
	for _, kind := range []string{"none", "malformed", "unknown", "expired", "revoked", "viewer", "operator", "admin", "alpha-operator", "beta-admin"} {
		for _, c := range newCalls() { // fresh objects for every credential: calls change states
			token := f.tokens[kind]
			r := f.do(c.method, c.path, token, c.body)
			name := fmt.Sprintf("%s %s as %s", c.method, routePattern(c.path), kind)
			role, authenticated := roles[kind]
			switch {
			case c.minRole == "":
				if r.status != http.StatusOK {
					t.Errorf("%s: public endpoint answered %d", name, r.status)
				}
			case !authenticated:
				if r.status != http.StatusUnauthorized {
					t.Errorf("%s: %d, want 401: %s", name, r.status, r.body)
				}
			case rank[role] < rank[c.minRole]:
				if r.status != http.StatusForbidden {
					t.Errorf("%s: %d, want 403: %s", name, r.status, r.body)
				}
			case c.global && (kind == "beta-admin" || kind == "alpha-operator"):
				if r.status != http.StatusForbidden {
					t.Errorf("%s: %d, want 403 for a confined token on a global resource", name, r.status)
				}
			case kind == "beta-admin" && c.scoped:
				if r.status != http.StatusNotFound {
					t.Errorf("%s: %d, want 404 outside the token's namespace: %s", name, r.status, r.body)
				}
			default:
				if r.status == http.StatusUnauthorized || r.status == http.StatusForbidden || r.status == http.StatusNotFound || r.status >= 500 {
					t.Errorf("%s: %d, want the request allowed: %s", name, r.status, r.body)
				}
				if c.list && kind == "beta-admin" && bytes.Contains(r.body, []byte(`"alpha"`)) {
					t.Errorf("%s: a beta token saw alpha resources: %s", name, r.body)
				}
			}
		}
	}
	// Nothing of alpha was changed by the beta token: every alpha task it
	// targeted is still in progress (the only change would be a cancel).
	page, err := f.client.ListTasks(context.Background(), &tasker.TaskListOpts{Namespace: "alpha", Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	cancelled := 0
	for _, task := range page.Tasks {
		h, _ := f.client.Transitions(context.Background(), task.ID)
		for _, tr := range h {
			if strings.Contains(tr.Metadata.Actor, "beta-admin") {
				t.Errorf("the beta token changed alpha task %s: %s", task.ID, tr.Event)
			}
			if tr.Event == "task.cancelled" {
				cancelled++
			}
		}
	}
	if cancelled == 0 {
		t.Error("no allowed cancel took effect; the matrix proves nothing")
	}
}

// routePattern turns a concrete path back into its route pattern.
func routePattern(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if len(p) == 36 && strings.Count(p, "-") == 4 {
			parts[i] = "{id}"
		}
	}
	out := strings.Join(parts, "/")
	switch {
	case strings.HasPrefix(out, "/v1/templates/alpha/flow/1.0.0"):
		return "/v1/templates/{namespace}/{name}/{version}"
	case strings.HasPrefix(out, "/v1/templates/alpha/flow"):
		return "/v1/templates/{namespace}/{name}"
	}
	return out
}

func TestConcurrentCreatesWithOneIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	var wg sync.WaitGroup
	ids := make(chan string, 20)
	created := make(chan int, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.do("POST", "/v1/tasks", f.tokens["operator"], map[string]any{"namespace": "alpha", "name": "flow", "context": map[string]int{"n": 1}},
				"Idempotency-Key", "order-42")
			var out struct {
				Task    tasker.Task
				Created bool
			}
			r.json(t, &out)
			ids <- out.Task.ID
			created <- r.status
		}()
	}
	wg.Wait()
	close(ids)
	close(created)
	distinct := map[string]bool{}
	for id := range ids {
		distinct[id] = true
	}
	n201 := 0
	for s := range created {
		if s == http.StatusCreated {
			n201++
		} else if s != http.StatusOK {
			t.Errorf("status %d", s)
		}
	}
	if len(distinct) != 1 || n201 != 1 {
		t.Fatalf("20 concurrent creates with one key: %d tasks, %d answered 201; want 1 and 1", len(distinct), n201)
	}
}

// readSSE reads events from a stream until stop says so or the timeout.
type sseEvent struct {
	id    string
	name  string
	event tasker.Event
}

func readSSE(t *testing.T, body io.Reader, stop func([]sseEvent) bool) []sseEvent {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var out []sseEvent
	var cur sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.event); err != nil {
				t.Fatalf("bad event data %q: %v", line, err)
			}
		case line == "" && cur.id != "":
			out = append(out, cur)
			cur = sseEvent{}
			if stop(out) {
				return out
			}
		}
	}
	return out
}

func (f *fixture) stream(ctx context.Context, query string, headers ...string) *http.Response {
	f.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.url+"/v1/events/stream"+query, nil)
	req.Header.Set("Authorization", "Bearer "+f.tokens["viewer"])
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		f.t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	return resp
}

// A created task's events arrive on the stream in order until it
// completes; a reconnect with Last-Event-ID resumes without gaps or
// duplicates.
func TestEventStreamFollowsATaskAndResumes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := f.do("POST", "/v1/tasks", f.tokens["operator"], map[string]any{"namespace": "alpha", "name": "flow"})
	var created struct{ Task tasker.Task }
	r.json(t, &created)
	id := created.Task.ID

	// First connection: read a few events, then drop it.
	resp := f.stream(ctx, "?task_id="+id)
	first := readSSE(t, resp.Body, func(evs []sseEvent) bool { return len(evs) == 5 })
	resp.Body.Close()
	if len(first) != 5 {
		t.Fatalf("got %d events before the drop", len(first))
	}
	// Reconnect where the client left off and follow until completion.
	resp = f.stream(ctx, "?task_id="+id, "Last-Event-ID", first[len(first)-1].id)
	rest := readSSE(t, resp.Body, func(evs []sseEvent) bool { return evs[len(evs)-1].name == "task.completed" })
	resp.Body.Close()
	got := append(first, rest...)
	if got[len(got)-1].name != "task.completed" {
		t.Fatalf("the stream ended before task.completed: %v", got[len(got)-1].name)
	}
	want, err := f.client.Events(ctx, &tasker.EventListOpts{TaskID: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("streamed %d events, the log has %d", len(got), len(want))
	}
	for i := range want {
		if got[i].id != fmt.Sprint(want[i].Cursor) || got[i].name != string(want[i].Name) || got[i].event.TaskID != id {
			t.Fatalf("event %d: streamed %s %s, logged %d %s (gap, duplicate or reordering)", i, got[i].id, got[i].name, want[i].Cursor, want[i].Name)
		}
	}
	// A filtered stream by event name, for a namespace the token cannot see, is empty.
	r = f.do("GET", "/v1/events?event=task.*&task_id="+id, f.tokens["viewer"], nil)
	var page struct{ Events []tasker.Event }
	r.json(t, &page)
	for _, ev := range page.Events {
		if !strings.HasPrefix(string(ev.Name), "task.") {
			t.Errorf("event filter let %s through", ev.Name)
		}
	}
	r = f.do("GET", "/v1/events?task_id="+id, f.tokens["beta-admin"], nil)
	r.json(t, &page)
	if len(page.Events) != 0 {
		t.Errorf("a beta token read %d events of an alpha task", len(page.Events))
	}
}

// Bad requests get problem+json 4xx answers, never a 500.
func TestBadRequestsGetProblems(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	task := f.createTask("alpha")
	op := f.tokens["operator"]
	huge := `{"namespace":"alpha","name":"flow","context":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}`
	tests := []struct {
		name, method, path string
		body               any
		headers            []string
		status             int
		code               string
	}{
		{"malformed JSON", "POST", "/v1/tasks", `{"namespace": "alpha",`, nil, 400, "invalid_json"},
		{"not an object", "POST", "/v1/tasks", `[1, 2]`, nil, 400, "invalid_json"},
		{"empty body", "POST", "/v1/tasks", ``, nil, 400, "invalid_json"},
		{"trailing data", "POST", "/v1/tasks", `{"namespace":"alpha","name":"flow"} {}`, nil, 400, "invalid_json"},
		{"wrong type", "POST", "/v1/tasks", `{"namespace": 7, "name": "flow"}`, nil, 400, "invalid_json"},
		{"unknown field", "POST", "/v1/tasks", `{"namespace":"alpha","name":"flow","priority":9}`, nil, 400, "unknown_field"},
		{"missing name", "POST", "/v1/tasks", `{"namespace":"alpha"}`, nil, 400, "invalid_json"},
		{"oversized body", "POST", "/v1/tasks", huge, nil, 413, "body_too_large"},
		{"wrong media type", "POST", "/v1/tasks", `{}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"context not matching", "POST", "/v1/tasks", `{"namespace":"alpha","name":"flow","context":{"n":"x"}}`, nil, 422, "invalid_context"},
		{"unknown template", "POST", "/v1/tasks", `{"namespace":"alpha","name":"nope"}`, nil, 422, "invalid_request"},
		{"long idempotency key", "POST", "/v1/tasks", `{"namespace":"alpha","name":"flow"}`, []string{"Idempotency-Key", strings.Repeat("k", 300)}, 400, "invalid_parameter"},
		{"invalid cursor", "GET", "/v1/tasks?cursor=not-a-cursor", nil, nil, 400, "invalid_cursor"},
		{"bad state filter", "GET", "/v1/tasks?state=sleeping", nil, nil, 400, "invalid_parameter"},
		{"bad limit", "GET", "/v1/tasks?limit=0", nil, nil, 400, "invalid_parameter"},
		{"huge limit", "GET", "/v1/tasks?limit=100000", nil, nil, 400, "invalid_parameter"},
		{"bad time", "GET", "/v1/tasks?created_after=yesterday", nil, nil, 400, "invalid_parameter"},
		{"unknown filter", "GET", "/v1/tasks?colour=red", nil, nil, 400, "invalid_parameter"},
		{"NUL in a filter", "GET", "/v1/tasks?namespace=al%00pha", nil, nil, 400, "invalid_parameter"},
		{"invalid UTF-8 in a search", "GET", "/v1/tasks?q=%ff%fe", nil, nil, 400, "invalid_parameter"},
		{"NUL in a path id", "GET", "/v1/tasks/ab%00cd", nil, nil, 404, "not_found"},
		{"NUL in a reason", "POST", "/v1/tasks/" + task.ID + "/cancel", `{"reason":"stop\u0000now"}`, nil, 422, "invalid_request"},
		{"NUL in a namespace", "POST", "/v1/tasks", `{"namespace":"al\u0000pha","name":"flow"}`, nil, 422, "invalid_request"},
		{"repeated filter", "GET", "/v1/tasks?state=error&state=complete", nil, nil, 400, "invalid_parameter"},
		{"long search", "GET", "/v1/tasks?q=" + strings.Repeat("a", 300), nil, nil, 400, "invalid_parameter"},
		{"bad event pattern", "GET", "/v1/events?event=step*x", nil, nil, 400, "invalid_parameter"},
		{"bad after", "GET", "/v1/events?after=-1", nil, nil, 400, "invalid_parameter"},
		{"bad window", "GET", "/v1/analytics?window=forever", nil, nil, 400, "invalid_parameter"},
		{"bad Last-Event-ID", "GET", "/v1/events/stream", nil, []string{"Last-Event-ID", "abc"}, 400, "invalid_parameter"},
		{"unknown task", "GET", "/v1/tasks/00000000-0000-0000-0000-000000000000", nil, nil, 404, "not_found"},
		{"garbage id", "GET", "/v1/tasks/%00%01", nil, nil, 404, "not_found"},
		{"unknown step", "POST", "/v1/steps/nope/reset", nil, nil, 404, "not_found"},
		{"resolve without reason", "POST", "/v1/steps/" + task.Steps[0].ID + "/resolve", `{}`, nil, 400, "invalid_json"},
		{"invalid transition", "POST", "/v1/tasks/" + task.ID + "/retry", nil, nil, 409, "invalid_transition"},
		{"invalid template", "POST", "/v1/templates/validate", `{"source": 42}`, nil, 400, "invalid_json"},
		{"unknown route", "GET", "/v1/nothing", nil, nil, 404, "not_found"},
		{"wrong method", "DELETE", "/v1/tasks", nil, nil, 405, "method_not_allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != nil {
				body = tc.body
			}
			r := f.do(tc.method, tc.path, op, body, tc.headers...)
			checkProblem(t, r, tc.status, tc.code)
		})
	}
	// An invalid template registered by an admin lists its problems.
	r := f.do("PUT", "/v1/templates", f.tokens["admin"], map[string]string{"source": "namespace: a\nname: b\nversion: 1.0.0\nsteps:\n  - {name: x, handler: nope}\n"})
	checkProblem(t, r, 422, "invalid_template")
	var p api.Problem
	r.json(t, &p)
	if len(p.Problems) != 1 || !strings.Contains(fmt.Sprint(p.Problems[0]), "nope") {
		t.Errorf("problems = %v", p.Problems)
	}
	// Validation answers with the problems instead of an error.
	r = f.do("POST", "/v1/templates/validate", op, map[string]string{"source": "namespace: a\nname: b\nversion: x\nsteps: []\n"})
	var v struct {
		Valid    bool
		Problems []map[string]any
	}
	r.json(t, &v)
	if r.status != 200 || v.Valid || len(v.Problems) < 2 {
		t.Errorf("validate of a bad template: %d %s", r.status, r.body)
	}
}

func TestRateLimitAnswers429(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, err := tasker.Open(ctx, tasker.Config{Database: filepath.Join(t.TempDir(), "t.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tok, err := c.CreateToken(ctx, tasker.TokenRequest{Role: "viewer"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Client: c, Auth: auth.NewAuthenticator(c, nil, nil), RateLimit: 1, RateBurst: 3})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	f := &fixture{t: t, url: hs.URL}
	var statuses []int
	for range 5 {
		statuses = append(statuses, f.do("GET", "/v1/templates", tok.Secret, nil).status)
	}
	if fmt.Sprint(statuses) != "[200 200 200 429 429]" {
		t.Fatalf("statuses %v, want 3 allowed then 429", statuses)
	}
	r := f.do("GET", "/v1/templates", tok.Secret, nil)
	checkProblem(t, r, 429, "rate_limited")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Another token has its own budget.
	other, _ := c.CreateToken(ctx, tasker.TokenRequest{Role: "viewer"})
	if s := f.do("GET", "/v1/templates", other.Secret, nil).status; s != 200 {
		t.Errorf("another token got %d", s)
	}
}

func TestCorrelationIDs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	r := f.do("GET", "/v1/tasks/nope", f.tokens["viewer"], nil, "X-Correlation-ID", "req-123")
	if r.header.Get("X-Correlation-ID") != "req-123" {
		t.Errorf("correlation id not echoed: %q", r.header.Get("X-Correlation-ID"))
	}
	var p api.Problem
	r.json(t, &p)
	if p.CorrelationID != "req-123" {
		t.Errorf("problem correlation id %q", p.CorrelationID)
	}
	r = f.do("GET", "/health/live", "", nil)
	if len(r.header.Get("X-Correlation-ID")) != 16 {
		t.Errorf("generated correlation id %q", r.header.Get("X-Correlation-ID"))
	}
}

func TestAnalyticsReportsFinishedWork(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, ns := range []string{"alpha", "alpha", "beta"} {
		task := f.createTask(ns)
		if _, err := f.client.WaitTask(ctx, task.ID); err != nil {
			t.Fatal(err)
		}
	}
	r := f.do("GET", "/v1/analytics?window=1h&slowest=2", f.tokens["viewer"], nil)
	var rep struct {
		Templates []struct {
			Namespace string
			Completed int
		}
		Steps []struct {
			Namespace, Step     string
			Attempts, Succeeded int
		}
		SlowestSteps []struct {
			Step       string
			DurationMS int64 `json:"duration_ms"`
		} `json:"slowest_steps"`
		Throughput []struct{ Completed int }
	}
	r.json(t, &rep)
	if r.status != 200 || len(rep.Templates) != 2 {
		t.Fatalf("analytics: %d %s", r.status, r.body)
	}
	completed := map[string]int{}
	for _, tpl := range rep.Templates {
		completed[tpl.Namespace] = tpl.Completed
	}
	if completed["alpha"] != 2 || completed["beta"] != 1 {
		t.Errorf("completed by namespace = %v, want alpha 2, beta 1", completed)
	}
	total := 0
	for _, b := range rep.Throughput {
		total += b.Completed
	}
	if total != 3 {
		t.Errorf("throughput counts %d completions, want 3", total)
	}
	if len(rep.SlowestSteps) != 2 || rep.SlowestSteps[0].Step != "second" || rep.SlowestSteps[0].DurationMS < 40 {
		t.Errorf("slowest steps = %+v; want the 50ms sleep step first", rep.SlowestSteps)
	}
	// A confined token's report covers its namespace only.
	r = f.do("GET", "/v1/analytics?window=1h", f.tokens["beta-admin"], nil)
	r.json(t, &rep)
	if len(rep.Templates) != 1 || rep.Templates[0].Namespace != "beta" {
		t.Errorf("beta token's analytics = %+v", rep.Templates)
	}
}

func TestMeAndOverview(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	for range 2 {
		f.createTask("alpha")
	}
	f.createTask("beta")
	var me struct {
		Role        string
		Namespace   string
		Permissions []string
	}
	f.do("GET", "/v1/me", f.tokens["viewer"], nil).json(t, &me)
	if me.Role != "viewer" || slices.Contains(me.Permissions, "steps:reset") || !slices.Contains(me.Permissions, "tasks:read") {
		t.Errorf("viewer = %+v", me)
	}
	f.do("GET", "/v1/me", f.tokens["alpha-operator"], nil).json(t, &me)
	if me.Role != "operator" || me.Namespace != "alpha" || !slices.Contains(me.Permissions, "steps:reset") || slices.Contains(me.Permissions, "metrics:read") {
		t.Errorf("alpha operator = %+v", me)
	}
	var all, alpha tasker.Overview
	f.do("GET", "/v1/overview", f.tokens["viewer"], nil).json(t, &all)
	f.do("GET", "/v1/overview", f.tokens["alpha-operator"], nil).json(t, &alpha)
	if all.Tasks[tasker.TaskInProgress] != 3 || all.Steps[tasker.StepPending] != 9 || all.ReadySteps == nil || *all.ReadySteps != 3 {
		t.Errorf("overview = %+v", all)
	}
	if alpha.Tasks[tasker.TaskInProgress] != 2 || alpha.Steps[tasker.StepPending] != 6 || alpha.ReadySteps != nil {
		t.Errorf("alpha overview = %+v", alpha)
	}
}
