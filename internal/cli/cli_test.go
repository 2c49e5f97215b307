package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/webhook"
)

// run calls Main in process and returns the exit status and both streams.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("compact %q: %v", raw, err)
	}
	return b.String()
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const okTemplate = `namespace: cli
name: ok
version: 1.0.0
context_schema:
  type: object
  properties: {n: {type: integer}}
steps:
  - name: first
    handler: command
    config: {command: [sh, -c, 'echo "{\"seen\": $(sed "s/.*\"n\":\([0-9]*\).*/\1/")}"']}
  - {name: second, handler: noop, depends_on: [first], config: {result: {done: true}}}
`

const failTemplate = `namespace: cli
name: fails
version: 1.0.0
steps:
  - name: charge
    handler: command
    config: {command: [sh, -c, 'echo "card declined" >&2; exit 78']}
  - {name: ship, handler: noop, depends_on: [charge]}
`

func TestRunJSONDocument(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "t.db")
	tmpl := writeFile(t, dir, "ok.yaml", okTemplate)
	code, out, stderr := run(t, "run", tmpl, "--db", db, "--json", "--context", `{"n": 41}`)
	if code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	var task tasker.Task
	if err := json.Unmarshal([]byte(out), &task); err != nil {
		t.Fatalf("stdout is not the task document: %v\n%s", err, out)
	}
	if task.State != tasker.TaskComplete || len(task.Steps) != 2 {
		t.Fatalf("task = %s with %d steps", task.State, len(task.Steps))
	}
	if got := compact(t, task.Steps[0].Results); got != `{"seen":41}` {
		t.Errorf("first step result = %s, want {\"seen\":41}", got)
	}
	if task.Steps[1].Attempts != 1 || compact(t, task.Steps[1].Results) != `{"done":true}` {
		t.Errorf("second step = %+v", task.Steps[1])
	}
	if !strings.Contains(stderr, task.ID) {
		t.Errorf("stderr does not name the task id: %q", stderr)
	}
}

func TestRunFailureExitsOne(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "fails.yaml", failTemplate)
	code, out, _ := run(t, "run", tmpl, "--db", filepath.Join(dir, "t.db"), "--json")
	if code != ExitTaskFailed {
		t.Fatalf("exit %d, want %d", code, ExitTaskFailed)
	}
	var task tasker.Task
	if err := json.Unmarshal([]byte(out), &task); err != nil {
		t.Fatal(err)
	}
	charge := task.Steps[0]
	if task.State != tasker.TaskError || charge.State != tasker.StepError || charge.Attempts != 1 ||
		!strings.Contains(charge.LastError, "card declined") || task.Steps[1].State != tasker.StepPending {
		t.Fatalf("task %s, charge %s/%d %q, ship %s", task.State, charge.State, charge.Attempts, charge.LastError, task.Steps[1].State)
	}
}

func TestRunProgressAndSummary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "ok.yaml", okTemplate)
	code, out, stderr := run(t, "run", tmpl, "--db", filepath.Join(dir, "t.db"), "--context", `{"n": 1}`)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"first: attempt 1/3 started", "first: complete", "ready: second", "task complete", "2/2 steps done", "✓ second"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress output lacks %q:\n%s", want, out)
		}
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "t.db")
	bad := writeFile(t, dir, "bad.yaml", "namespace: cli\nname: bad\nversion: 1.0.0\nsteps:\n  - {name: a, handler: noop, depends_on: [b]}\n  - {name: b, handler: noop, depends_on: [a]}\n")
	code, _, stderr := run(t, "run", bad, "--db", db)
	if code != ExitUsage || !strings.Contains(stderr, "bad.yaml:") || !strings.Contains(stderr, "dependency cycle") {
		t.Errorf("cyclic template: exit %d, stderr %q", code, stderr)
	}
	ok := writeFile(t, dir, "ok.yaml", okTemplate)
	code, _, stderr = run(t, "run", ok, "--db", db, "--context", `{"n": "many"}`)
	if code != ExitUsage || !strings.Contains(stderr, "/n") {
		t.Errorf("bad context: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = run(t, "run", ok, "--db", db, "--context", `{"n": 1`)
	if code != ExitUsage || !strings.Contains(stderr, "JSON") {
		t.Errorf("malformed context: exit %d, stderr %q", code, stderr)
	}
	code, _, _ = run(t, "run", ok, "--db", db, "--context", "{}", "--context-file", "x.json")
	if code != ExitUsage {
		t.Errorf("both context flags: exit %d", code)
	}
	code, out, _ := run(t, "task", "list", "--db", db, "--json")
	if code != ExitOK || !strings.Contains(out, `"tasks": []`) {
		t.Errorf("tasks stored after rejected runs: %s", out)
	}
	code, _, stderr = run(t, "run", filepath.Join(dir, "missing.yaml"), "--db", db)
	if code != ExitUsage || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing template: exit %d, %q", code, stderr)
	}
}

func TestTemplateValidateAndGraph(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ok := writeFile(t, dir, "ok.yaml", okTemplate)
	bad := writeFile(t, dir, "bad.yaml", "namespace: cli\nname: bad\nversion: 1.0.0\nsteps:\n  - {name: a, handler: mystery, timeout: 5 minutes}\n")
	code, out, _ := run(t, "template", "validate", ok, bad)
	if code != ExitUsage {
		t.Errorf("validate with one bad file: exit %d", code)
	}
	for _, want := range []string{"ok.yaml: ok (cli/ok@1.0.0, 2 steps)", "bad.yaml: invalid", "bad.yaml:5:", `"mystery"`, "timeout"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	if code, _, _ := run(t, "template", "validate", "--handler", "mystery", ok); code != ExitOK {
		t.Errorf("validate ok: exit %d", code)
	}
	code, out, _ = run(t, "template", "graph", ok)
	if code != ExitOK || !strings.Contains(out, "flowchart TD") || !strings.Contains(out, "first --> second") ||
		!strings.Contains(out, "level 0: first") || !strings.Contains(out, "level 1: second") {
		t.Errorf("graph: exit %d\n%s", code, out)
	}
}

func TestTaskListShowCancelRetry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "t.db")
	fails := writeFile(t, dir, "fails.yaml", failTemplate)
	run(t, "run", fails, "--db", db)
	code, out, _ := run(t, "task", "list", "--db", db, "--json")
	var list struct{ Tasks []tasker.Task }
	if err := json.Unmarshal([]byte(out), &list); code != ExitOK || err != nil || len(list.Tasks) != 1 {
		t.Fatalf("task list: exit %d, %v, %s", code, err, out)
	}
	id := list.Tasks[0].ID
	code, out, _ = run(t, "task", "show", id, "--db", db)
	if code != ExitOK {
		t.Fatalf("task show: exit %d", code)
	}
	for _, want := range []string{"transitions:", "task.initialize_requested", "step.execution_requested", "step.failed", "task.failed", "card declined", "(new) → pending"} {
		if !strings.Contains(out, want) {
			t.Errorf("task show lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = run(t, "task", "show", id, "--db", db, "--json")
	var shown struct {
		Task        tasker.Task
		Transitions []tasker.Transition
	}
	if err := json.Unmarshal([]byte(out), &shown); code != ExitOK || err != nil || len(shown.Transitions) < 7 {
		t.Fatalf("task show --json: exit %d, %v, %d transitions", code, err, len(shown.Transitions))
	}
	if code, _, stderr := run(t, "task", "cancel", id, "--db", db); code != ExitUsage || !strings.Contains(stderr, "invalid transition") {
		t.Errorf("cancel of a failed task: exit %d, %q", code, stderr)
	}
	if code, out, _ := run(t, "task", "retry", id, "--db", db); code != ExitOK || !strings.Contains(out, "in_progress") {
		t.Errorf("retry: exit %d, %q", code, out)
	}
	if code, out, _ := run(t, "task", "list", "--db", db, "--state", "in_progress"); code != ExitOK || !strings.Contains(out, id) {
		t.Errorf("list in_progress after retry: %q", out)
	}
	if code, out, _ := run(t, "task", "cancel", id, "--db", db, "--reason", "giving up"); code != ExitOK || !strings.Contains(out, "cancelled") {
		t.Errorf("cancel: exit %d, %q", code, out)
	}
	if code, _, stderr := run(t, "task", "show", "nope", "--db", db); code != ExitUsage || !strings.Contains(stderr, "not found") {
		t.Errorf("show unknown: exit %d, %q", code, stderr)
	}
	if code, _, stderr := run(t, "task", "list", "--db", db, "--state", "bogus"); code != ExitUsage || !strings.Contains(stderr, "bogus") {
		t.Errorf("list bad state: exit %d, %q", code, stderr)
	}
}

func TestStepCommandsAndTaskResolve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "t.db")
	fails := writeFile(t, dir, "fails.yaml", failTemplate)
	ok := writeFile(t, dir, "ok.yaml", okTemplate)
	run(t, "run", fails, "--db", db)
	run(t, "run", fails, "--db", db)
	_, out, _ := run(t, "task", "list", "--db", db, "--json", "--state", "error")
	var list struct{ Tasks []tasker.Task }
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Tasks) != 2 {
		t.Fatalf("task list: %v, %s", err, out)
	}
	first, second := list.Tasks[0], list.Tasks[1]
	_, out, _ = run(t, "task", "show", first.ID, "--db", db, "--json")
	var detail struct{ Task tasker.Task }
	if err := json.Unmarshal([]byte(out), &detail); err != nil || len(detail.Task.Steps) != 2 {
		t.Fatalf("task show: %v, %s", err, out)
	}
	charge := detail.Task.Steps[0]
	if charge.Name != "charge" {
		charge = detail.Task.Steps[1]
	}

	code, out, _ := run(t, "step", "show", charge.ID, "--db", db)
	if code != ExitOK {
		t.Fatalf("step show: exit %d", code)
	}
	for _, want := range []string{"step charge  error", "card declined", "transitions:", "step.failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("step show lacks %q:\n%s", want, out)
		}
	}
	if code, _, stderr := run(t, "step", "resolve", charge.ID, "--db", db); code != ExitUsage || !strings.Contains(stderr, "--reason is required") {
		t.Errorf("resolve without reason: exit %d, %q", code, stderr)
	}
	if code, out, _ := run(t, "step", "reset", charge.ID, "--db", db); code != ExitOK || !strings.Contains(out, "pending") {
		t.Errorf("step reset: exit %d, %q", code, out)
	}
	if code, out, _ := run(t, "resume", first.ID, "--db", db); code != ExitTaskFailed {
		t.Errorf("resume after reset: exit %d, %q", code, out)
	}
	if code, out, _ := run(t, "step", "resolve", charge.ID, "--db", db, "--reason", "charged by phone"); code != ExitOK || !strings.Contains(out, "resolved_manually") {
		t.Errorf("step resolve: exit %d, %q", code, out)
	}
	if code, out, _ := run(t, "resume", first.ID, "--db", db); code != ExitOK {
		t.Errorf("resume after resolve: exit %d, %q", code, out)
	}
	code, out, _ = run(t, "step", "show", charge.ID, "--db", db, "--json")
	var shown struct {
		Step        tasker.StepDetail
		Transitions []tasker.Transition
	}
	if err := json.Unmarshal([]byte(out), &shown); code != ExitOK || err != nil || shown.Step.TaskID != first.ID || len(shown.Transitions) == 0 {
		t.Fatalf("step show --json: exit %d, %v, %s", code, err, out)
	}
	if last := shown.Transitions[len(shown.Transitions)-1]; last.Metadata.Reason != "charged by phone" || last.Metadata.Actor != "command line" {
		t.Errorf("last step transition = %+v, want the reason and actor", last.Metadata)
	}

	if code, _, stderr := run(t, "task", "resolve", second.ID, "--db", db); code != ExitUsage || !strings.Contains(stderr, "--reason is required") {
		t.Errorf("task resolve without reason: exit %d, %q", code, stderr)
	}
	if code, out, _ := run(t, "task", "resolve", second.ID, "--db", db, "--reason", "refunded"); code != ExitOK || !strings.Contains(out, "resolved_manually") {
		t.Errorf("task resolve: exit %d, %q", code, out)
	}
	if code, _, stderr := run(t, "task", "resolve", first.ID, "--db", db, "--reason", "x"); code != ExitUsage || !strings.Contains(stderr, "invalid transition") {
		t.Errorf("resolving a complete task: exit %d, %q", code, stderr)
	}
	run(t, "run", ok, "--db", db)
	if code, _, stderr := run(t, "step", "cancel", "nope", "--db", db); code != ExitUsage || !strings.Contains(stderr, "not found") {
		t.Errorf("cancel unknown step: exit %d, %q", code, stderr)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func TestResumeRefusesTasksWithForeignHandlers(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "t.db")
	ctx := context.Background()
	c, err := tasker.Open(ctx, tasker.Config{Database: db, Handlers: map[string]tasker.Handler{
		"in_my_program": tasker.HandlerFunc(func(context.Context, *tasker.StepInput) (any, error) { return nil, nil }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := tasker.ParseTemplate("x.yaml", []byte("namespace: lib\nname: go\nversion: 1.0.0\nsteps:\n  - {name: a, handler: in_my_program}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterTemplate(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	created, err := c.CreateTask(ctx, tasker.TaskRequest{Namespace: "lib", Name: "go"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	code, _, stderr := run(t, "resume", created.Task.ID, "--db", db)
	if code != ExitUsage || !strings.Contains(stderr, "in_my_program") {
		t.Errorf("resume of a task with a Go handler: exit %d, %q; want a refusal naming the handler", code, stderr)
	}
}

func TestRunDeliversWebhooks(t *testing.T) {
	t.Setenv("CLI_HOOK_SECRET", "cli-hook-secret")
	dir := t.TempDir()
	db := filepath.Join(dir, "t.db")
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if webhook.Verify([]byte("cli-hook-secret"), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute) != nil {
			w.WriteHeader(401)
			return
		}
		mu.Lock()
		got = append(got, r.Header.Get(webhook.HeaderEvent))
		mu.Unlock()
	}))
	defer srv.Close()
	tmpl := writeFile(t, dir, "hooked.yaml", `namespace: cli
name: hooked
version: 1.0.0
subscriptions:
  - {name: done, events: [task.completed, step.completed], url: "`+srv.URL+`/in", secret: "${env:CLI_HOOK_SECRET}"}
steps:
  - {name: a, handler: noop}
  - {name: b, handler: noop, depends_on: [a]}
`)
	// Without the allowlist the local receiver is refused.
	code, _, stderr := run(t, "run", tmpl, "--db", db, "--webhook-wait", "300ms")
	if code != ExitOK || !strings.Contains(stderr, "webhooks: 0 delivered, 0 failed, 3 pending") {
		t.Fatalf("run without --http-allow: exit %d\n%s", code, stderr)
	}
	code, out, _ := run(t, "delivery", "list", "--db", db, "--state", "pending")
	if code != ExitOK || !strings.Contains(out, "destination refused") || strings.Count(out, "template:cli/hooked@1.0.0/done") != 3 {
		t.Fatalf("delivery list: exit %d\n%s", code, out)
	}
	// The next run, allowed to reach it, sends its own deliveries and the
	// earlier ones that are due.
	code, _, stderr = run(t, "run", tmpl, "--db", db, "--http-allow", "127.0.0.1")
	if code != ExitOK || !strings.Contains(stderr, "webhooks: 3 delivered, 0 failed, 0 pending") {
		t.Fatalf("run with --http-allow: exit %d\n%s", code, stderr)
	}
	mu.Lock()
	n := len(got)
	mu.Unlock()
	if n < 3 {
		t.Fatalf("the receiver got %d deliveries", n)
	}
	code, out, _ = run(t, "webhook", "list", "--db", db, "--json")
	var subs struct{ Webhooks []tasker.WebhookInfo }
	if err := json.Unmarshal([]byte(out), &subs); code != ExitOK || err != nil || len(subs.Webhooks) != 1 || subs.Webhooks[0].Delivered < 3 {
		t.Fatalf("webhook list: exit %d, %v\n%s", code, err, out)
	}
	code, out, _ = run(t, "delivery", "list", "--db", db, "--json", "--state", "delivered", "--limit", "1")
	var ds struct{ Deliveries []tasker.Delivery }
	if err := json.Unmarshal([]byte(out), &ds); code != ExitOK || err != nil || len(ds.Deliveries) != 1 {
		t.Fatalf("delivery list --json: exit %d, %v\n%s", code, err, out)
	}
	code, out, _ = run(t, "delivery", "show", ds.Deliveries[0].ID, "--db", db)
	if code != ExitOK || !strings.Contains(out, `"delivery_id": "`+ds.Deliveries[0].ID+`"`) {
		t.Fatalf("delivery show: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, "delivery", "retry", ds.Deliveries[0].ID, "--db", db)
	if code != ExitOK || !strings.Contains(out, "is pending") {
		t.Fatalf("delivery retry: exit %d\n%s", code, out)
	}
	if code, _, stderr := run(t, "delivery", "retry", ds.Deliveries[0].ID, "--db", db); code != ExitUsage || !strings.Contains(stderr, "pending already") {
		t.Fatalf("retrying a pending delivery: exit %d\n%s", code, stderr)
	}
	bad := writeFile(t, dir, "subs.yaml", "subscriptions:\n  - {name: x, events: [task.done], url: \"https://a.example/\", secret: s}\n")
	if code, _, stderr := run(t, "worker", "--db", db, "--subscriptions", bad); code != ExitUsage || !strings.Contains(stderr, `subs.yaml:2`) || !strings.Contains(stderr, `unknown event "task.done"`) {
		t.Fatalf("worker with a bad subscriptions file: exit %d\n%s", code, stderr)
	}
}

// --sqlite-driver picks the SQLite build a database runs on; both run the
// same file, and a driver this program lacks is refused by name.
func TestSQLiteDriverFlag(t *testing.T) {
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "ok.yaml", okTemplate)
	db := filepath.Join(dir, "t.db")
	for _, d := range tasker.SQLiteDrivers() {
		code, out, stderr := run(t, "--sqlite-driver", d, "run", tmpl, "--db", db, "--json", "--context", `{"n": 1}`)
		if code != ExitOK || !strings.Contains(out, `"state": "complete"`) {
			t.Fatalf("driver %s: exit %d\n%s\n%s", d, code, out, stderr)
		}
	}
	code, out, _ := run(t, "task", "list", "--db", db, "--sqlite-driver", tasker.SQLiteDrivers()[len(tasker.SQLiteDrivers())-1])
	if code != ExitOK || strings.Count(out, "cli/ok") != len(tasker.SQLiteDrivers()) {
		t.Fatalf("task list: exit %d\n%s", code, out)
	}
	code, _, stderr := run(t, "--sqlite-driver", "sqlite4", "task", "list", "--db", db)
	if code != ExitUsage || !strings.Contains(stderr, `unknown driver "sqlite4"`) {
		t.Fatalf("driver sqlite4: exit %d: %s", code, stderr)
	}
	// TASKER_SQLITE_DRIVER sets the default; the flag wins.
	t.Setenv("TASKER_SQLITE_DRIVER", "sqlite5")
	if code, _, stderr := run(t, "task", "list", "--db", db); code != ExitUsage || !strings.Contains(stderr, `unknown driver "sqlite5"`) {
		t.Fatalf("TASKER_SQLITE_DRIVER=sqlite5: exit %d: %s", code, stderr)
	}
	if code, _, stderr := run(t, "task", "list", "--db", db, "--sqlite-driver", "go"); code != ExitOK {
		t.Fatalf("TASKER_SQLITE_DRIVER=sqlite5 --sqlite-driver go: exit %d: %s", code, stderr)
	}
}
