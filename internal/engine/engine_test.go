package engine_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/engine"
	"github.com/tasker-go/tasker/internal/eventbus"
	"github.com/tasker-go/tasker/internal/handler"
	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/sqlite"
	"github.com/tasker-go/tasker/internal/template"
)

type bundle struct {
	st   *sqlite.Store
	eng  *engine.Engine
	bus  *eventbus.Bus
	tmpl *template.Template
	path string // the database file
}

func setup(t *testing.T, cfg engine.Config, yaml string) *bundle {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	st, err := sqlite.Open(ctx, path, sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.Parse("t.yaml", []byte(yaml), template.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	def, err := tmpl.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: tmpl.Digest(), Namespace: tmpl.Namespace,
		Name: tmpl.Name, Version: tmpl.Version, Definition: def, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	bus := eventbus.New(eventbus.Config{})
	eng := engine.New(st, bus, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		eng.Stop(ctx)
		eng.Close(ctx)
		bus.Close()
		st.Close()
	})
	return &bundle{st: st, eng: eng, bus: bus, tmpl: tmpl, path: path}
}

func (b *bundle) create(t *testing.T) string {
	t.Helper()
	specs := make([]store.StepSpec, len(b.tmpl.Steps))
	for i, s := range b.tmpl.Steps {
		specs[i] = store.StepSpec{Name: s.Name, Handler: s.Handler, MaxAttempts: s.Retry.Limit, Timeout: s.Timeout, Parents: s.Parents}
	}
	res, err := b.st.TaskCreate(context.Background(), &store.TaskCreateParams{TemplateID: b.tmpl.Digest(), Namespace: b.tmpl.Namespace,
		Name: b.tmpl.Name, Version: b.tmpl.Version, Context: []byte(`{}`), Steps: specs, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return res.Task.ID
}

// workOff creates n tasks, starts the engine and waits until all are
// complete.
func (b *bundle) workOff(t *testing.T, n int) {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = b.create(t)
	}
	if err := b.eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		b.waitTask(t, id, lifecycle.TaskComplete)
	}
}

func (b *bundle) waitTask(t *testing.T, id string, want lifecycle.TaskState) *store.Task {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		task, err := b.st.TaskGet(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if task.State == want {
			return task
		}
		if time.Now().After(deadline) {
			for _, e := range b.history(t, id) {
				t.Logf("%s %s %s->%s %+v", e.Name, e.StepName, e.From, e.To, e.Metadata)
			}
			t.Logf("stats %+v", b.eng.Stats())
			t.Fatalf("task %s is %s, want %s", id, task.State, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *bundle) history(t *testing.T, id string) []*store.Event {
	t.Helper()
	evs, err := b.st.EventList(context.Background(), &store.EventListParams{TaskID: id, TransitionsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// A handler that runs longer than the lease TTL keeps its step: the
// heartbeat renews the lease, and the sweeper rescues nothing.
func TestHeartbeatKeepsLongStepsLeased(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	slow := handler.Func(func(ctx context.Context, in *handler.Input) (any, error) {
		runs.Add(1)
		select {
		case <-time.After(1200 * time.Millisecond):
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	b := setup(t, engine.Config{Handlers: map[string]handler.Handler{"slow": slow}, LeaseTTL: 300 * time.Millisecond,
		SweepInterval: 50 * time.Millisecond, PollInterval: 50 * time.Millisecond},
		"namespace: e\nname: long\nversion: 1.0.0\nsteps:\n  - {name: a, handler: slow, timeout: 10s}\n")
	if err := b.eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := b.create(t)
	b.waitTask(t, id, lifecycle.TaskComplete)
	for _, e := range b.history(t, id) {
		if e.Name == "step.rescued" {
			t.Fatalf("a renewed lease was rescued: %+v", e)
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1", runs.Load())
	}
	if s := b.eng.Stats(); s.LeasesLost != 0 || !s.Leader {
		t.Fatalf("stats = %+v; want no lost lease, and this only engine leading maintenance", s)
	}
}

// A handler whose lease is taken away is cancelled at the next heartbeat,
// and its late outcome is discarded.
func TestLostLeaseCancelsHandler(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	var cancelled atomic.Bool
	blocking := handler.Func(func(ctx context.Context, in *handler.Input) (any, error) {
		if in.Attempt > 1 {
			return "second attempt", nil
		}
		started <- struct{}{}
		<-ctx.Done()
		cancelled.Store(true)
		return nil, ctx.Err()
	})
	b := setup(t, engine.Config{Handlers: map[string]handler.Handler{"block": blocking}, LeaseTTL: 600 * time.Millisecond,
		SweepInterval: time.Hour, PollInterval: 50 * time.Millisecond},
		"namespace: e\nname: lost\nversion: 1.0.0\nsteps:\n  - {name: a, handler: block, timeout: 1m}\n")
	if err := b.eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := b.create(t)
	<-started
	// Another party rescues the step as if this worker's lease had expired.
	if _, err := b.st.StepRescue(context.Background(), &store.StepRescueParams{Now: time.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	task := b.waitTask(t, id, lifecycle.TaskComplete)
	if !cancelled.Load() {
		t.Fatal("the handler that lost its lease was not cancelled")
	}
	if s := b.eng.Stats(); s.LeasesLost < 1 || s.Stale < 1 {
		t.Fatalf("stats = %+v; want a lost lease and a discarded outcome", s)
	}
	steps, _ := b.st.StepListByTask(context.Background(), task.ID)
	if steps[0].Attempts != 2 || string(steps[0].Results) != `"second attempt"` {
		t.Fatalf("step = %+v", steps[0])
	}
}

// Of two engines on one database, one leads maintenance; when it stops,
// the other takes over.
func TestMaintenanceLeaderFailover(t *testing.T) {
	t.Parallel()
	noop := handler.Func(func(context.Context, *handler.Input) (any, error) { return nil, nil })
	b := setup(t, engine.Config{WorkerID: "w-one/1/a", Handlers: map[string]handler.Handler{"noop": noop}, SweepInterval: 50 * time.Millisecond},
		"namespace: e\nname: lead\nversion: 1.0.0\nsteps:\n  - {name: a, handler: noop}\n")
	second := engine.New(b.st, nil, engine.Config{WorkerID: "w-two/2/b", Handlers: map[string]handler.Handler{"noop": noop}, SweepInterval: 50 * time.Millisecond})
	ctx := context.Background()
	if err := b.eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return b.eng.Stats().Leader })
	if err := second.Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if second.Stats().Leader {
		t.Fatal("two leaders at once")
	}
	if err := b.eng.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return second.Stats().Leader })
	if err := second.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// During a graceful stop, handlers that keep running keep their leases:
// nobody may take their steps over while the stop grace lasts.
func TestStopGraceKeepsLeasesRenewed(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	slow := handler.Func(func(ctx context.Context, in *handler.Input) (any, error) {
		started <- struct{}{}
		select {
		case <-time.After(1500 * time.Millisecond):
			return "finished during the grace", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	b := setup(t, engine.Config{Handlers: map[string]handler.Handler{"slow": slow}, LeaseTTL: 300 * time.Millisecond,
		StopGrace: 5 * time.Second, PollInterval: 50 * time.Millisecond},
		"namespace: e\nname: grace\nversion: 1.0.0\nsteps:\n  - {name: a, handler: slow, timeout: 1m}\n")
	if err := b.eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := b.create(t)
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- b.eng.Stop(context.Background()) }()
	time.Sleep(800 * time.Millisecond) // well past the TTL of the lease taken at claim time
	rs, err := b.st.StepRescue(context.Background(), &store.StepRescueParams{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if rs.Count != 0 {
		t.Fatalf("a step was rescued from a worker that was still running it during its stop grace")
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	task := b.waitTask(t, id, lifecycle.TaskComplete)
	steps, _ := b.st.StepListByTask(context.Background(), task.ID)
	if steps[0].Attempts != 1 {
		t.Fatalf("attempts = %d, want 1", steps[0].Attempts)
	}
}

// On SQLite (a store whose writes commit one at a time) the slot a
// finished handler frees is filled by the claim of the completion that
// records its outcome, not by a claim transaction of the dispatcher: a
// backlog is worked off almost entirely by completions.
func TestCompletionsFillFreedSlotsOnSerialStore(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	quick := handler.Func(func(ctx context.Context, in *handler.Input) (any, error) {
		runs.Add(1)
		return nil, nil
	})
	// Without prefetching: the dispatcher also claims into the room
	// prefetching adds, which this test does not measure.
	b := setup(t, engine.Config{Handlers: map[string]handler.Handler{"quick": quick}, Concurrency: 4, Prefetch: -1,
		PollInterval: 10 * time.Second},
		"namespace: e\nname: backlog\nversion: 1.0.0\nsteps:\n  - {name: a, handler: quick}\n")
	const n = 200
	b.workOff(t, n)
	s := b.eng.Stats()
	if runs.Load() != n || s.Claimed+s.ClaimedOnCompletion != n {
		t.Fatalf("handler runs %d, claimed %d by the dispatcher and %d by completions; want %d in all",
			runs.Load(), s.Claimed, s.ClaimedOnCompletion, n)
	}
	// The dispatcher claims the first batch; completions claim the rest
	// (a dispatcher woken for every freed slot claimed about half).
	if s.ClaimedOnCompletion < n*9/10 {
		t.Fatalf("completions claimed %d of %d steps (dispatcher %d in %d calls); want at least 90%%",
			s.ClaimedOnCompletion, n, s.Claimed, s.ClaimCalls)
	}
}

// The steps of a template with a concurrency limit are claimed by the
// dispatcher alone: the end of one of them wakes it for the next, so a
// backlog does not wait for the poll interval between steps.
func TestTemplateLimitBacklogRunsWithoutPolling(t *testing.T) {
	t.Parallel()
	var running, most atomic.Int32
	quick := handler.Func(func(ctx context.Context, in *handler.Input) (any, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		return nil, nil
	})
	// With a poll interval of a minute, a backlog that waited for polls
	// would miss waitTask's deadline.
	b := setup(t, engine.Config{Handlers: map[string]handler.Handler{"quick": quick}, Concurrency: 4, PollInterval: time.Minute},
		"namespace: e\nname: limited\nversion: 1.0.0\nconcurrency: 1\nsteps:\n  - {name: a, handler: quick}\n")
	b.workOff(t, 6)
	if m := most.Load(); m != 1 {
		t.Fatalf("%d steps of a template limited to 1 ran at once", m)
	}
}
