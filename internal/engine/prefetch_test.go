package engine_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/engine"
	"github.com/tasker-go/tasker/internal/handler"
	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/sqlite"
	"github.com/tasker-go/tasker/internal/template"
)

// gate is a handler that returns at once until it is closed, then blocks
// every run until it is opened (or the run's context ends), counting the
// runs and the most running at once.
type gate struct {
	// delay is how long every run takes before it looks at the gate.
	delay   time.Duration
	mu      sync.Mutex
	shut    chan struct{} // nil: open
	running atomic.Int64
	peak    atomic.Int64
	runs    atomic.Int64
	started sync.Map // step id -> true, for every run
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shut = make(chan struct{})
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.shut)
	g.shut = nil
}

func (g *gate) handler() handler.Handler {
	return handler.Func(func(ctx context.Context, in *handler.Input) (any, error) {
		g.started.Store(in.StepID, true)
		g.runs.Add(1)
		if g.delay > 0 {
			time.Sleep(g.delay)
		}
		n := g.running.Add(1)
		defer g.running.Add(-1)
		for {
			p := g.peak.Load()
			if n <= p || g.peak.CompareAndSwap(p, n) {
				break
			}
		}
		g.mu.Lock()
		shut := g.shut
		g.mu.Unlock()
		if shut != nil {
			select {
			case <-shut:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return nil, nil
	})
}

const gateTemplate = `
namespace: prefetch
name: gated
version: 1.0.0
steps:
  - {name: work, handler: gate, timeout: 1m}
`

// setupGated is setup with the gated template, whose steps run g's handler.
func setupGated(t *testing.T, g *gate, cfg engine.Config) *bundle {
	t.Helper()
	cfg.Handlers = map[string]handler.Handler{"gate": g.handler()}
	return setup(t, cfg, gateTemplate)
}

// held counts the steps of these tasks that are claimed (in progress in
// the store).
func held(t *testing.T, b *bundle, ids []string) int {
	t.Helper()
	n := 0
	for _, id := range ids {
		steps, err := b.st.StepListByTask(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range steps {
			if s.State == lifecycle.StepInProgress {
				n++
			}
		}
	}
	return n
}

// blockAndCount runs a few steps with an open gate (so that the engine
// has seen its handlers' durations), then closes the gate, creates n
// tasks and returns their ids once the engine has claimed what it will
// claim: two handlers block, and how many steps it holds no longer grows.
func blockAndCount(t *testing.T, b *bundle, g *gate, n int) ([]string, int) {
	t.Helper()
	b.workOff(t, 3)
	g.close()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = b.create(t)
	}
	b.eng.Wake()
	deadline := time.Now().Add(5 * time.Second)
	for g.running.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers running, want 2", g.running.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The dispatcher claims in rounds; give it several poll intervals to
	// claim whatever it would claim.
	last := -1
	for stable := 0; stable < 8; {
		time.Sleep(50 * time.Millisecond)
		if h := held(t, b, ids); h == last {
			stable++
		} else {
			last, stable = h, 0
		}
	}
	return ids, last
}

// With short handlers, the engine holds Concurrency + Prefetch claimed
// steps, runs no more than Concurrency of them at once, and runs the
// waiting ones when slots free up.
func TestPrefetchHoldsStepsForFreedSlots(t *testing.T) {
	g := &gate{}
	b := setupGated(t, g, engine.Config{Concurrency: 2, Prefetch: 3, PollInterval: 20 * time.Millisecond})
	ids, got := blockAndCount(t, b, g, 8)
	if got != 5 {
		t.Errorf("claimed steps = %d, want 5 (concurrency 2 + prefetch 3)", got)
	}
	if r := g.running.Load(); r != 2 {
		t.Errorf("running handlers = %d, want 2", r)
	}
	g.open()
	for _, id := range ids {
		b.waitTask(t, id, lifecycle.TaskComplete)
	}
	if p := g.peak.Load(); p > 2 {
		t.Errorf("at most %d handlers ran at once, want at most 2 (the concurrency)", p)
	}
	if s := b.eng.Stats(); s.Prefetched != 0 || s.Running != 0 {
		t.Errorf("stats after the work: running %d, prefetched %d; want 0 and 0", s.Running, s.Prefetched)
	}
}

// Without prefetching (turned off, handlers longer than PrefetchBelow, or
// handlers longer than a claim takes) the engine claims only for free
// handler slots. It prefetches only as many steps as its handlers get
// through in the time of a claim: with handlers of 400 ms and claims of a
// few milliseconds (SQLite), two slots get through none in a claim's time,
// though Prefetch allows 3 and the handlers are under PrefetchBelow. (With
// 80 ms handlers a loaded machine's claims of 40 ms made it prefetch one.)
func TestNoPrefetch(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg   engine.Config
		delay time.Duration
	}{
		"turned off":                   {cfg: engine.Config{Prefetch: -1}},
		"long handlers":                {cfg: engine.Config{Prefetch: 3, PrefetchBelow: time.Nanosecond}},
		"default, long handlers":       {cfg: engine.Config{PrefetchBelow: time.Nanosecond}},
		"handlers longer than a claim": {cfg: engine.Config{Prefetch: 3, PrefetchBelow: 10 * time.Second}, delay: 400 * time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			g := &gate{delay: tc.delay}
			cfg := tc.cfg
			cfg.Concurrency, cfg.PollInterval = 2, 20*time.Millisecond
			b := setupGated(t, g, cfg)
			ids, got := blockAndCount(t, b, g, 6)
			if got != 2 {
				t.Errorf("claimed steps = %d, want 2 (the concurrency, no prefetch)", got)
			}
			g.open()
			for _, id := range ids {
				b.waitTask(t, id, lifecycle.TaskComplete)
			}
		})
	}
}

// Stop releases the steps waiting for a slot at once, without running
// them and without charging them an attempt, while the running ones have
// their grace period to finish.
func TestStopReleasesPrefetchedSteps(t *testing.T) {
	g := &gate{}
	b := setupGated(t, g, engine.Config{Concurrency: 2, Prefetch: 2, PollInterval: 20 * time.Millisecond, StopGrace: 10 * time.Second})
	ids, got := blockAndCount(t, b, g, 6)
	if got != 4 {
		t.Fatalf("claimed steps = %d, want 4", got)
	}
	if s := b.eng.Stats(); s.Prefetched != 2 || s.Running != 2 {
		t.Errorf("stats: running %d, prefetched %d; want 2 and 2", s.Running, s.Prefetched)
	}
	runs := g.runs.Load()
	stopped := make(chan error, 1)
	go func() { stopped <- b.eng.Stop(context.Background()) }()
	deadline := time.Now().Add(3 * time.Second)
	for held(t, b, ids) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d steps claimed during Stop's grace period, want the 2 running ones", held(t, b, ids))
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.open()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if r := g.runs.Load(); r != runs {
		t.Errorf("%d handlers started during Stop, want none", r-runs)
	}
	complete, released := 0, 0
	for _, id := range ids {
		steps, err := b.st.StepListByTask(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		switch s := steps[0]; {
		case s.State == lifecycle.StepComplete:
			complete++
		case s.State == lifecycle.StepPending && s.Attempts > 0:
			// A released attempt is refunded: the retry limit grows with it.
			released++
			if s.RetryLimit-s.Attempts != s.MaxAttempts {
				t.Errorf("released step of %s: attempt %d of %d (max %d); want every attempt left", id, s.Attempts, s.RetryLimit, s.MaxAttempts)
			}
		case s.State != lifecycle.StepPending:
			t.Errorf("step of %s after Stop: %s", id, s.State)
		}
	}
	if complete != 2 || released != 2 {
		t.Errorf("after Stop: %d steps complete and %d released, want 2 and 2", complete, released)
	}
}

// A prefetched step cancelled while it waits for a slot never runs its
// handler.
func TestCancelledPrefetchedStepDoesNotRun(t *testing.T) {
	g := &gate{}
	b := setupGated(t, g, engine.Config{Concurrency: 2, Prefetch: 2, PollInterval: 20 * time.Millisecond})
	ids, got := blockAndCount(t, b, g, 6)
	if got != 4 {
		t.Fatalf("claimed steps = %d, want 4", got)
	}
	// The claimed steps whose handler has not started wait for a slot.
	var waiting []*store.Step
	for _, id := range ids {
		steps, err := b.st.StepListByTask(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if s := steps[0]; s.State == lifecycle.StepInProgress {
			if _, ran := g.started.Load(s.ID); !ran {
				waiting = append(waiting, s)
			}
		}
	}
	if len(waiting) != 2 {
		t.Fatalf("%d claimed steps wait for a slot, want 2", len(waiting))
	}
	cancelled := map[string]bool{}
	for _, s := range waiting {
		if _, err := b.st.TaskCancel(context.Background(), &store.TaskCancelParams{TaskID: s.TaskID, Reason: "test", Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
		cancelled[s.TaskID] = true
	}
	// The running handlers end: the waiting steps get their slots.
	g.open()
	for _, id := range ids {
		if cancelled[id] {
			b.waitTask(t, id, lifecycle.TaskCancelled)
		} else {
			b.waitTask(t, id, lifecycle.TaskComplete)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s := b.eng.Stats(); s.Running+s.Prefetched > 0; s = b.eng.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats at the end: running %d, prefetched %d", s.Running, s.Prefetched)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, s := range waiting {
		if _, ran := g.started.Load(s.ID); ran {
			t.Errorf("the handler of step %s ran after its task was cancelled while the step waited for a slot", s.ID)
		}
	}
}

// Steps of a template with a concurrency limit that one claim took past
// the limit (the engine did not know the template yet) are given back and
// run one after the other, instead of waiting for each other forever.
func TestStepsClaimedPastTheirLimitAreReleased(t *testing.T) {
	g := &gate{}
	g.close()
	b := setupGated(t, g, engine.Config{Concurrency: 4, Prefetch: -1, PollInterval: time.Hour})
	if err := b.eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Another process registers the template, after this engine loaded
	// the templates it knows, and creates a task of three parallel steps:
	// they become ready in one commit, so the first claim to see them
	// (the engine's first rounds after Start, which may still be under
	// way, or the one Wake asks for) takes all three.
	other, err := sqlite.Open(context.Background(), b.path, sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	limited, err := template.Parse("limited.yaml", []byte(`
namespace: prefetch
name: limited
version: 1.0.0
concurrency: 1
steps:
  - {name: a, handler: gate, timeout: 1m}
  - {name: b, handler: gate, timeout: 1m}
  - {name: c, handler: gate, timeout: 1m}
`), template.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	def, err := limited.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.TemplateRegister(context.Background(), &store.TemplateRegisterParams{ID: limited.Digest(),
		Namespace: limited.Namespace, Name: limited.Name, Version: limited.Version, Definition: def, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var specs []store.StepSpec
	for _, s := range limited.Steps {
		specs = append(specs, store.StepSpec{Name: s.Name, Handler: s.Handler, MaxAttempts: 1, Timeout: s.Timeout})
	}
	res, err := other.TaskCreate(context.Background(), &store.TaskCreateParams{TemplateID: limited.Digest(),
		Namespace: limited.Namespace, Name: limited.Name, Version: limited.Version, Context: []byte(`{}`), Now: time.Now(),
		Steps: specs})
	if err != nil {
		t.Fatal(err)
	}
	b.eng.Wake()
	deadline := time.Now().Add(5 * time.Second)
	// The two steps over the limit are released once the third is
	// admitted, and that one's handler starts a moment after its
	// admission: wait for both.
	for b.eng.Stats().Released < 2 || g.running.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stats: %+v, %d handlers running; want two steps released and one handler running", b.eng.Stats(), g.running.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := b.eng.Stats(); s.Claimed != 3 {
		t.Errorf("claimed %d steps, want the 3 of the first claim", s.Claimed)
	}
	if r := g.running.Load(); r != 1 {
		t.Errorf("%d handlers running, want 1 (the limit)", r)
	}
	g.open()
	b.waitTask(t, res.Task.ID, lifecycle.TaskComplete)
	if p := g.peak.Load(); p != 1 {
		t.Errorf("at most %d steps of the template ran at once, want 1", p)
	}
}
