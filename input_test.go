package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

// Invalid templates are rejected with the file, line and step of every
// problem, and nothing is stored.
func TestInvalidTemplatesAreRejected(t *testing.T) {
	t.Parallel()
	var huge strings.Builder
	huge.WriteString("namespace: big\nname: big\nversion: 1.0.0\nsteps:\n")
	for i := range 10001 {
		fmt.Fprintf(&huge, "  - {name: s%d, handler: noop}\n", i)
	}
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error, e.g. "test.yaml:7:"
	}{
		{"cycle", `namespace: a
name: b
version: 1.0.0
steps:
  - {name: x, handler: noop, depends_on: [z]}
  - {name: y, handler: noop, depends_on: [x]}
  - {name: z, handler: noop, depends_on: [y]}
`, []string{"dependency cycle: x -> y -> z -> x"}},
		{"unknown dependency", `namespace: a
name: b
version: 1.0.0
steps:
  - {name: x, handler: noop}
  - name: y
    handler: noop
    depends_on: [x, w]
`, []string{"test.yaml:8:", `step "y"`, `unknown step "w"`}},
		{"self dependency", `namespace: a
name: b
version: 1.0.0
steps:
  - {name: x, handler: noop, depends_on: [x]}
`, []string{"test.yaml:5:", `step "x"`, "itself"}},
		{"unknown handler", `namespace: a
name: b
version: 1.0.0
steps:
  - {name: x, handler: nosuch}
`, []string{"test.yaml:5:", `step "x"`, `"nosuch"`}},
		{"bad duration", `namespace: a
name: b
version: 1.0.0
steps:
  - name: x
    handler: noop
    timeout: 10 seconds
`, []string{"test.yaml:7:", `step "x"`, "timeout"}},
		{"limit out of range", `namespace: a
name: b
version: 1.0.0
steps:
  - name: x
    handler: noop
    retry: {limit: 1000}
`, []string{"test.yaml:7:", "limit"}},
		{"duplicate step", `namespace: a
name: b
version: 1.0.0
steps:
  - {name: x, handler: noop}
  - {name: x, handler: noop}
`, []string{"test.yaml:6:", "duplicate"}},
		{"malformed name", `namespace: a
name: b
version: 1.0.0
steps:
  - {name: "Bad Name", handler: noop}
`, []string{"test.yaml:5:", "name"}},
		{"bad version", `namespace: a
name: b
version: v1
steps:
  - {name: x, handler: noop}
`, []string{"test.yaml:3:", "version"}},
		{"malformed yaml", "namespace: a\nname: [b\n", []string{"test.yaml:"}},
		{"too many steps", huge.String(), []string{"10000"}},
	}
	b := setup(t, bundleOpts{})
	ctx := context.Background()
	for _, tc := range tests {
		_, err := tasker.ParseTemplate("test.yaml", []byte(tc.yaml), &tasker.TemplateOpts{KnownHandlers: b.client.HandlerNames()})
		if err == nil {
			t.Errorf("%s: template accepted", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
	}
	// A template whose handler this client lacks cannot be registered.
	tmpl, err := tasker.ParseTemplate("test.yaml", []byte("namespace: a\nname: b\nversion: 1.0.0\nsteps:\n  - {name: x, handler: elsewhere}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.client.RegisterTemplate(ctx, tmpl); err == nil || !strings.Contains(err.Error(), "elsewhere") {
		t.Errorf("registering a template with an unknown handler: err = %v", err)
	}
	if list, err := b.client.Templates(ctx); err != nil || len(list) != 0 {
		t.Errorf("templates stored after rejections: %d, %v", len(list), err)
	}
}

// Invalid requests are rejected before anything is stored.
func TestInvalidRequestsStoreNothing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, bundleOpts{backend: backend})
		ctx := context.Background()
		tmpl := b.register(`
namespace: shop
name: order
version: 1.2.0
identity_strategy: idempotency_key
context_schema:
  type: object
  required: [order_id, items]
  properties:
    order_id: {type: integer, minimum: 1}
    items: {type: array, minItems: 1, items: {type: object, required: [sku], properties: {sku: {type: string}}}}
steps:
  - {name: a, handler: noop}
`)
		tests := []struct {
			name string
			req  tasker.TaskRequest
			want []string
		}{
			{"wrong type", tasker.TaskRequest{Context: json.RawMessage(`{"order_id":"7","items":[{"sku":"x"}]}`)}, []string{"/order_id", "integer"}},
			{"missing field", tasker.TaskRequest{Context: json.RawMessage(`{"order_id":7}`)}, []string{"items"}},
			{"nested", tasker.TaskRequest{Context: json.RawMessage(`{"order_id":7,"items":[{"sku":1}]}`)}, []string{"/items/0/sku"}},
			{"empty context", tasker.TaskRequest{}, []string{"order_id"}},
			{"not JSON", tasker.TaskRequest{Context: json.RawMessage(`{"order_id": 7,`)}, []string{"not valid JSON"}},
			{"trailing data", tasker.TaskRequest{Context: json.RawMessage(`{} {}`)}, []string{"not valid JSON"}},
			{"too large", tasker.TaskRequest{Context: json.RawMessage(`{"pad":"` + strings.Repeat("x", 2<<20) + `"}`)}, []string{"over the limit"}},
			{"unknown template", tasker.TaskRequest{Name: "nope"}, []string{"no template shop/nope"}},
			{"unknown version", tasker.TaskRequest{Version: "9.9.9"}, []string{"shop/order@9.9.9"}},
			{"no idempotency key", tasker.TaskRequest{Context: json.RawMessage(`{"order_id":7,"items":[{"sku":"x"}]}`)}, []string{"requires an idempotency key"}},
		}
		for _, tc := range tests {
			req := tc.req
			if req.Namespace == "" {
				req.Namespace = tmpl.Namespace
			}
			if req.Name == "" {
				req.Name = tmpl.Name
			}
			if req.IdempotencyKey == "" && tc.name != "no idempotency key" {
				req.IdempotencyKey = "k-" + tc.name
			}
			_, err := b.client.CreateTask(ctx, req)
			if !errors.Is(err, tasker.ErrInvalidRequest) {
				t.Errorf("%s: err = %v, want ErrInvalidRequest", tc.name, err)
				continue
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
				}
			}
		}
		var ce *tasker.ContextError
		_, err := b.client.CreateTask(ctx, tasker.TaskRequest{Namespace: "shop", Name: "order", IdempotencyKey: "k", Context: json.RawMessage(`{"order_id":0,"items":[]}`)})
		if !errors.As(err, &ce) || len(ce.Problems) != 2 || ce.Template != "shop/order@1.2.0" {
			t.Errorf("ContextError = %+v (%v); want both problems listed for shop/order@1.2.0", ce, err)
		}
		tasks, err := b.client.Tasks(ctx, nil)
		if err != nil || len(tasks) != 0 {
			t.Errorf("tasks stored after rejected requests: %d, %v", len(tasks), err)
		}
		events, err := b.client.Events(ctx, nil)
		if err != nil || len(events) != 0 {
			t.Errorf("events logged after rejected requests: %d, %v", len(events), err)
		}
		// The valid request goes through.
		res, err := b.client.CreateTask(ctx, tasker.TaskRequest{Namespace: "shop", Name: "order", IdempotencyKey: "k",
			Context: json.RawMessage(`{"order_id":7,"items":[{"sku":"x"}]}`)})
		if err != nil || !res.Created {
			t.Fatalf("valid request: %v", err)
		}
	})
}

func TestOperatorCancelAndRetry(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, bundleOpts{backend: backend})
		ctx := context.Background()
		tmpl := b.register(shapeTemplate("ops", `
  - {name: fails, handler: work, retry: {limit: 1}, config: {fail_times: 1}}
  - {name: after, handler: work, depends_on: [fails]}
`))
		b.start()
		task := b.wait(b.create(tmpl, `{}`).ID, 10*time.Second)
		if task.State != tasker.TaskError {
			t.Fatalf("task = %s, want error", task.State)
		}
		if _, err := b.client.CancelTask(ctx, task.ID, "too late"); !errors.Is(err, tasker.ErrInvalidTransition) {
			t.Errorf("cancel of a task in error: err = %v, want ErrInvalidTransition", err)
		}
		// The step failed on attempt 1 of 1; a retry grants a fresh budget and
		// the second attempt succeeds.
		// RetryTask returns the task as it is after the retry: running, or
		// already complete if the engine was that quick.
		retried, err := b.client.RetryTask(ctx, task.ID, "upstream fixed")
		if err != nil || (retried.State != tasker.TaskInProgress && retried.State != tasker.TaskComplete) {
			t.Fatalf("RetryTask = %v, %v", retried, err)
		}
		done := b.wait(task.ID, 10*time.Second)
		if done.State != tasker.TaskComplete || stepsByName(done)["fails"].Attempts != 2 {
			t.Fatalf("after retry: %s, attempts %d", done.State, stepsByName(done)["fails"].Attempts)
		}
		if _, err := b.client.RetryTask(ctx, task.ID, ""); !errors.Is(err, tasker.ErrInvalidTransition) {
			t.Errorf("retry of a complete task: err = %v", err)
		}
		// Cancelling a running task cancels its unfinished steps.
		slow := b.register(shapeTemplate("slow", "  - {name: long, handler: work, timeout: 1m, config: {sleep: 20s}}\n  - {name: next, handler: work, depends_on: [long]}\n"))
		id := b.create(slow, `{}`).ID
		for b.ledger.running.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancelled, err := b.client.CancelTask(ctx, id, "operator")
		if err != nil || cancelled.State != tasker.TaskCancelled {
			t.Fatalf("CancelTask = %v, %v", cancelled, err)
		}
		for _, s := range cancelled.Steps {
			if s.State != tasker.StepCancelled {
				t.Errorf("step %s = %s after cancel", s.Name, s.State)
			}
		}
		if _, err := b.client.Task(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, tasker.ErrNotFound) {
			t.Errorf("unknown task: err = %v", err)
		}
	})
}

// A client keeps the template it created tasks from; when another process
// replaces that definition, the next task is created from the new one, is
// validated against the new schema, and nothing is stored from the old.
func TestCreateTaskFollowsAReplacedTemplate(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		ctx := context.Background()
		db, schema := filepath.Join(t.TempDir(), "tasker.db"), ""
		if backend == "postgres" {
			db = pgtest.URL(t)
			schema = pgtest.Schema(t, db)
		}
		open := func() *tasker.Client {
			c, err := tasker.Open(ctx, tasker.Config{Database: db, Schema: schema, MaxConns: 4, SQLiteSynchronous: "NORMAL"})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return c
		}
		creator, registrar := open(), open()
		register := func(c *tasker.Client, yaml string) {
			t.Helper()
			tmpl, err := tasker.ParseTemplate("orders.yaml", []byte(yaml), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.RegisterTemplate(ctx, tmpl); err != nil {
				t.Fatal(err)
			}
		}
		const header = "namespace: shop\nname: order\nversion: 1.0.0\n"
		register(creator, header+"steps:\n  - {name: a, handler: noop}\n")
		create := func(context string) (*tasker.TaskCreated, error) {
			return creator.CreateTask(ctx, tasker.TaskRequest{Namespace: "shop", Name: "order", Version: "1.0.0",
				Context: json.RawMessage(context)})
		}
		stepNames := func(id string) []string {
			t.Helper()
			task, err := creator.Task(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range task.Steps {
				names = append(names, s.Name)
			}
			return names
		}
		first, err := create(`{}`)
		if err != nil {
			t.Fatal(err)
		}
		if got := stepNames(first.Task.ID); fmt.Sprint(got) != "[a]" {
			t.Fatalf("first task's steps = %v, want [a]", got)
		}
		register(registrar, header+`context_schema: {type: object, required: [order_id]}
steps:
  - {name: a, handler: noop}
  - {name: b, handler: noop, depends_on: [a]}
`)
		if _, err := create(`{}`); !errors.Is(err, tasker.ErrInvalidRequest) {
			t.Fatalf("a context the new schema rejects: %v, want ErrInvalidRequest", err)
		}
		second, err := create(`{"order_id": 7}`)
		if err != nil {
			t.Fatal(err)
		}
		if got := stepNames(second.Task.ID); fmt.Sprint(got) != "[a b]" {
			t.Fatalf("task created after the replacement has steps %v, want the new definition's [a b]", got)
		}
		// A looser definition from the other process: a request the kept
		// definition would reject is decided on the current one.
		register(registrar, header+"steps:\n  - {name: c, handler: noop}\n")
		third, err := create(`{}`)
		if err != nil {
			t.Fatalf("a context the current definition accepts: %v", err)
		}
		if got := stepNames(third.Task.ID); fmt.Sprint(got) != "[c]" {
			t.Fatalf("task created after the second replacement has steps %v, want [c]", got)
		}
		tasks, err := creator.Tasks(ctx, nil)
		if err != nil || len(tasks) != 3 {
			t.Fatalf("stored tasks = %d, %v; want 3", len(tasks), err)
		}
	})
}

// A request without a version gets the highest version by semantic
// versioning (1.10.0 above 1.9.0), in its current definition; other
// namespaces' templates of the same name do not count.
func TestCreateTaskWithoutVersionTakesTheHighest(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		ctx := context.Background()
		b := setup(t, bundleOpts{backend: backend})
		register := func(namespace, version, step string) {
			b.register(fmt.Sprintf("namespace: %s\nname: order\nversion: %s\nsteps:\n  - {name: %s, handler: noop}\n",
				namespace, version, step))
		}
		register("shop", "1.9.0", "nine")
		register("shop", "1.10.0", "ten_replaced")
		register("shop", "1.10.0", "ten")
		register("shop", "1.2.0", "two")
		register("other", "2.0.0", "elsewhere")
		created, err := b.client.CreateTask(ctx, tasker.TaskRequest{Namespace: "shop", Name: "order"})
		if err != nil {
			t.Fatal(err)
		}
		task, err := b.client.Task(ctx, created.Task.ID)
		if err != nil {
			t.Fatal(err)
		}
		if task.Version != "1.10.0" || len(task.Steps) != 1 || task.Steps[0].Name != "ten" {
			t.Fatalf("task of version %s with steps %+v; want 1.10.0's current definition (step ten)", task.Version, task.Steps)
		}
		if _, err := b.client.CreateTask(ctx, tasker.TaskRequest{Namespace: "shop", Name: "nope"}); !errors.Is(err, tasker.ErrInvalidRequest) {
			t.Fatalf("unknown template: %v, want ErrInvalidRequest", err)
		}
	})
}
