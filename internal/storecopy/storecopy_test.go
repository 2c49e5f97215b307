package storecopy_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/retry"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
	"github.com/tasker-go/tasker/internal/store/sqlite"
	"github.com/tasker-go/tasker/internal/store/storetest"
	"github.com/tasker-go/tasker/internal/storecopy"
)

const templateYAML = `namespace: copy
name: order
version: 1.0.0
events:
  - {name: order.placed}
defaults: {retry: {limit: 3, backoff: {initial: 10ms, max: 50ms}}}
steps:
  - {name: a, handler: work}
  - {name: b, handler: work, depends_on: [a]}
  - {name: c, handler: work, depends_on: [a]}
  - {name: d, handler: work, depends_on: [b, c]}
`

// work publishes a custom event, fails permanently when the context asks
// for it and the attempt is the first, and otherwise succeeds.
func work() tasker.Handler {
	return tasker.HandlerFunc(func(ctx context.Context, in *tasker.StepInput) (any, error) {
		var c struct {
			FailStep string `json:"fail_step"`
		}
		_ = in.DecodeContext(&c)
		if c.FailStep == in.StepName && in.RetryLimit == 3 {
			return nil, tasker.Permanent(errors.New("declined"))
		}
		if in.StepName == "a" {
			if err := in.Publish("order.placed", map[string]any{"task": in.TaskID}); err != nil {
				return nil, err
			}
		}
		return map[string]any{"step": in.StepName}, nil
	})
}

func open(t *testing.T, db, schema string) *tasker.Client {
	t.Helper()
	c, err := tasker.Open(context.Background(), tasker.Config{Database: db, Schema: schema, MaxConns: 6,
		Handlers: map[string]tasker.Handler{"work": work()}, PollInterval: 50 * time.Millisecond, SweepInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && cmp.Equal(x, y)
}

func wait(t *testing.T, c *tasker.Client, id string) *tasker.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	task, err := c.WaitTask(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// A store with finished and unfinished tasks copied from SQLite to
// PostgreSQL keeps every transition; the unfinished tasks then complete on
// PostgreSQL.
func TestCopySQLiteToPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	file := filepath.Join(t.TempDir(), "tasker.db")

	src := open(t, file, "")
	tmpl, err := tasker.ParseTemplate("order.yaml", []byte(templateYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.RegisterTemplate(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	create := func(c string) string {
		res, err := src.CreateTask(ctx, tasker.TaskRequest{Namespace: "copy", Name: "order", Context: json.RawMessage(c)})
		if err != nil {
			t.Fatal(err)
		}
		return res.Task.ID
	}
	var finished, unfinished []string
	for range 3 {
		finished = append(finished, create(`{}`))
	}
	failed := create(`{"fail_step": "b"}`)
	// A webhook whose receiver is refused: its deliveries stay pending.
	if err := src.SetServerSubscriptions(ctx, []tasker.Webhook{{Name: "ops", Events: []string{"task.completed"}, URL: "http://10.0.0.1/hook",
		Secret: "s", Retry: retry.Policy{Limit: 50, Initial: time.Hour, Multiplier: 2, Max: 2 * time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range finished {
		if task := wait(t, src, id); task.State != tasker.TaskComplete {
			t.Fatalf("task %s = %s", id, task.State)
		}
	}
	if task := wait(t, src, failed); task.State != tasker.TaskError {
		t.Fatalf("failing task = %s", task.State)
	}
	fctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	src.FlushDeliveries(fctx, finished[0])
	cancel()
	// Every finished task's completion has its delivery before the stop
	// (the fan-out may run while a first delivery is being attempted).
	for deadline := time.Now().Add(15 * time.Second); ; {
		ds, err := src.Deliveries(ctx, &tasker.DeliveryListOpts{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries before the copy, want 3", len(ds))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := src.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		unfinished = append(unfinished, create(`{"n": 1}`))
	}
	token, err := src.CreateToken(ctx, tasker.TokenRequest{Role: "operator", Namespace: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}

	from, err := sqlite.Open(ctx, file, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	to, err := postgres.Open(ctx, url, postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer to.Close()
	stats, err := storecopy.Copy(ctx, from, to, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if stats.Tasks != 8 || stats.Unfinished != 4 || stats.Steps != 32 || stats.Templates != 1 || stats.Edges != 32 || stats.Tokens != 1 ||
		stats.Subscriptions != 1 || stats.Deliveries != 3 {
		t.Fatalf("stats = %+v", stats)
	}
	// Every log entry is there, identical, with the same cursor.
	all := func(s store.Store) []*store.Event {
		evs, err := s.EventList(ctx, &store.EventListParams{Limit: 100000})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	want, got := all(from), all(to)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("event log differs after the copy (-sqlite +postgres):\n%s", diff)
	}
	for _, id := range append(append([]string{failed}, finished...), unfinished...) {
		ws, _ := from.StepListByTask(ctx, id)
		gs, _ := to.StepListByTask(ctx, id)
		if diff := cmp.Diff(ws, gs); diff != "" {
			t.Fatalf("steps of %s differ (-sqlite +postgres):\n%s", id, diff)
		}
		wt, _ := from.TaskGet(ctx, id)
		gt, _ := to.TaskGet(ctx, id)
		if diff := cmp.Diff(wt, gt); diff != "" {
			t.Fatalf("task %s differs (-sqlite +postgres):\n%s", id, diff)
		}
	}
	// The webhook keeps its cursor and its pending deliveries.
	ws, _ := from.SubscriptionList(ctx, &store.SubscriptionListParams{})
	gs, _ := to.SubscriptionList(ctx, &store.SubscriptionListParams{})
	if len(ws) != 1 || len(gs) != 1 || ws[0].Cursor != gs[0].Cursor || gs[0].Pending != 3 {
		t.Fatalf("subscriptions after the copy: %+v, want %+v", gs, ws)
	}
	wd, _ := from.DeliveryList(ctx, &store.DeliveryListParams{})
	gd, _ := to.DeliveryList(ctx, &store.DeliveryListParams{})
	if diff := cmp.Diff(wd, gd, cmp.Comparer(func(a, b json.RawMessage) bool { return jsonEqual(a, b) })); diff != "" {
		t.Fatalf("deliveries differ (-sqlite +postgres):\n%s", diff)
	}
	// A second copy into the same schema is refused.
	if _, err := storecopy.Copy(ctx, from, to, time.Now()); !errors.Is(err, postgres.ErrNotEmpty) {
		t.Fatalf("copy into a non-empty schema: err = %v", err)
	}

	// The unfinished tasks continue on PostgreSQL, and the failed one can be retried there.
	dst := open(t, url, schema)
	defer dst.Close()
	// The API token still works after the move.
	if tk, err := dst.LookupToken(ctx, token.Secret); err != nil || tk.ID != token.Token.ID || tk.Namespace != "copy" {
		t.Fatalf("token after the copy = %+v, %v", tk, err)
	}
	if err := dst.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range unfinished {
		if task := wait(t, dst, id); task.State != tasker.TaskComplete {
			t.Fatalf("unfinished task %s ended %s on PostgreSQL", id, task.State)
		}
	}
	if _, err := dst.RetryTask(ctx, failed, "after the move"); err != nil {
		t.Fatal(err)
	}
	if task := wait(t, dst, failed); task.State != tasker.TaskComplete {
		t.Fatalf("retried task = %s", task.State)
	}
	after := all(to)
	if err := storetest.CheckHistory(after); err != nil {
		t.Fatalf("histories after continuing on PostgreSQL:\n%v", err)
	}
	if after[len(want)-1].Cursor != want[len(want)-1].Cursor || after[len(want)].Cursor <= want[len(want)-1].Cursor {
		t.Fatal("new log entries do not continue after the copied cursors")
	}
}

// A store with a running step (an unexpired lease) is in use: copying it
// is refused and leaves the destination untouched.
func TestCopyRefusesStoreInUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	file := filepath.Join(t.TempDir(), "tasker.db")
	c := open(t, file, "")
	tmpl, err := tasker.ParseTemplate("order.yaml", []byte(templateYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterTemplate(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTask(ctx, tasker.TaskRequest{Namespace: "copy", Name: "order"}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	from, err := sqlite.Open(ctx, file, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	if _, err := from.StepClaim(ctx, &store.StepClaimParams{Worker: "busy", LeaseToken: 1, Limit: 1, Now: time.Now(), LeaseTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	to, err := postgres.Open(ctx, url, postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer to.Close()
	if _, err := storecopy.Copy(ctx, from, to, time.Now()); !errors.Is(err, storecopy.ErrInUse) {
		t.Fatalf("copy of a store in use: err = %v", err)
	}
	if tasks, err := to.TaskList(ctx, &store.TaskListParams{}); err != nil || len(tasks) != 0 {
		t.Fatalf("destination after a refused copy: %d tasks, %v", len(tasks), err)
	}
	if tmpls, err := to.TemplateList(ctx); err != nil || len(tmpls) != 0 {
		t.Fatalf("destination after a refused copy: %d templates, %v", len(tmpls), err)
	}
}
