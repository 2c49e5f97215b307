package tasker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
	"github.com/tasker-go/tasker/internal/store/storetest"
)

// forEachBackend runs fn as a parallel subtest for each store: SQLite and
// PostgreSQL (skipped with a message when no server is reachable).
func forEachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Helper()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			fn(t, backend)
		})
	}
}

// testBundle is a client on a fresh database with the test handlers.
type testBundle struct {
	t      *testing.T
	client *tasker.Client
	ledger *ledger
	events *eventLog
}

type bundleOpts struct {
	// backend is "sqlite" (the default) or "postgres".
	backend      string
	concurrency  int
	prefetch     int // tasker.Config.Prefetch
	pollInterval time.Duration
	handlers     map[string]tasker.Handler
}

func setup(t *testing.T, o bundleOpts) *testBundle {
	t.Helper()
	b := &testBundle{t: t, ledger: newLedger()}
	handlers := map[string]tasker.Handler{"work": b.ledger.handler()}
	for k, v := range o.handlers {
		handlers[k] = v
	}
	if o.pollInterval == 0 {
		o.pollInterval = 100 * time.Millisecond
	}
	db, schema := filepath.Join(t.TempDir(), "tasker.db"), ""
	if o.backend == "postgres" {
		db = pgtest.URL(t)
		schema = pgtest.Schema(t, db)
	}
	c, err := tasker.Open(context.Background(), tasker.Config{
		Database:          db,
		Schema:            schema,
		MaxConns:          6,
		Handlers:          handlers,
		Concurrency:       o.concurrency,
		Prefetch:          o.prefetch,
		PollInterval:      o.pollInterval,
		SweepInterval:     time.Second,
		SQLiteSynchronous: "NORMAL",
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	b.client = c
	b.events = newEventLog(c)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func (b *testBundle) register(yaml string) *tasker.Template {
	b.t.Helper()
	tmpl, err := tasker.ParseTemplate("test.yaml", []byte(yaml), nil)
	if err != nil {
		b.t.Fatalf("ParseTemplate: %v", err)
	}
	if err := b.client.RegisterTemplate(context.Background(), tmpl); err != nil {
		b.t.Fatalf("RegisterTemplate: %v", err)
	}
	return tmpl
}

func (b *testBundle) create(tmpl *tasker.Template, ctxJSON string) *tasker.Task {
	b.t.Helper()
	res, err := b.client.CreateTask(context.Background(), tasker.TaskRequest{Namespace: tmpl.Namespace, Name: tmpl.Name,
		Version: tmpl.Version, Context: json.RawMessage(ctxJSON)})
	if err != nil {
		b.t.Fatalf("CreateTask: %v", err)
	}
	return res.Task
}

func (b *testBundle) start() {
	b.t.Helper()
	if err := b.client.Start(context.Background(), nil); err != nil {
		b.t.Fatalf("Start: %v", err)
	}
}

func (b *testBundle) wait(id string, timeout time.Duration) *tasker.Task {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	task, err := b.client.WaitTask(ctx, id)
	if err != nil {
		b.t.Fatalf("WaitTask(%s): %v", id, err)
	}
	return task
}

func stepsByName(task *tasker.Task) map[string]*tasker.Step {
	out := map[string]*tasker.Step{}
	for _, s := range task.Steps {
		out[s.Name] = s
	}
	return out
}

// workConfig is the config of the "work" test handler: it fails on its
// first FailTimes attempts, times out (ignoring nothing: it waits for its
// context) on attempts FailTimes+1..FailTimes+TimeoutTimes, asks for a delay
// when RetryAfter is set, fails permanently when Permanent is set, and
// otherwise sleeps Sleep and returns its name and its dependencies' names.
type workConfig struct {
	FailTimes    int    `json:"fail_times"`
	TimeoutTimes int    `json:"timeout_times"`
	Sleep        string `json:"sleep"`
	RetryAfter   string `json:"retry_after"`
	Permanent    bool   `json:"permanent"`
	Publish      string `json:"publish"`
}

// ledger records every handler run, by step id and attempt.
type ledger struct {
	mu      sync.Mutex
	runs    map[string][]int // step id -> attempts seen, in order
	running atomic.Int64
	peak    atomic.Int64
}

func newLedger() *ledger { return &ledger{runs: map[string][]int{}} }

func (l *ledger) handler() tasker.Handler {
	return tasker.HandlerFunc(func(ctx context.Context, in *tasker.StepInput) (any, error) {
		l.mu.Lock()
		l.runs[in.StepID] = append(l.runs[in.StepID], in.Attempt)
		l.mu.Unlock()
		n := l.running.Add(1)
		defer l.running.Add(-1)
		for {
			p := l.peak.Load()
			if n <= p || l.peak.CompareAndSwap(p, n) {
				break
			}
		}
		var cfg workConfig
		if err := in.DecodeConfig(&cfg); err != nil {
			return nil, tasker.Permanent(err)
		}
		if cfg.Permanent {
			return nil, tasker.Permanent(fmt.Errorf("%s: permanent failure", in.StepName))
		}
		if in.Attempt <= cfg.FailTimes {
			err := fmt.Errorf("%s: simulated failure on attempt %d", in.StepName, in.Attempt)
			if cfg.RetryAfter != "" {
				d, _ := time.ParseDuration(cfg.RetryAfter)
				return nil, tasker.RetryAfter(d, err)
			}
			return nil, err
		}
		if in.Attempt <= cfg.FailTimes+cfg.TimeoutTimes {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		if cfg.Sleep != "" {
			d, _ := time.ParseDuration(cfg.Sleep)
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if cfg.Publish != "" {
			if err := in.Publish(cfg.Publish, map[string]any{"step": in.StepName}); err != nil {
				return nil, tasker.Permanent(err)
			}
		}
		deps := make([]string, 0, len(in.Dependencies))
		for name := range in.Dependencies {
			deps = append(deps, name)
		}
		return map[string]any{"step": in.StepName, "attempt": in.Attempt, "deps": len(deps)}, nil
	})
}

func (l *ledger) attempts(stepID string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.runs[stepID]...)
}

// eventLog records every event the client publishes, blocking the engine
// rather than dropping any.
type eventLog struct {
	sub  *tasker.Subscription
	mu   sync.Mutex
	all  []tasker.Event
	done chan struct{}
}

func newEventLog(c *tasker.Client) *eventLog {
	l := &eventLog{sub: c.Subscribe(&tasker.SubscribeOpts{Block: true, Buffer: 1 << 14}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for ev := range l.sub.Events() {
			l.mu.Lock()
			l.all = append(l.all, ev)
			l.mu.Unlock()
		}
	}()
	return l
}

// stop closes the subscription and returns every event received. Stop the
// client first so that everything it published is queued.
func (l *eventLog) stop() []tasker.Event {
	l.sub.Close()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all
}

// checkAudit verifies, for every task in the database, that its transition
// history is legal under the state machine and gapless, that it matches one
// to one the lifecycle events the subscriber received, and that every
// handler ran exactly once per recorded attempt. It stops the client.
func (b *testBundle) checkAudit() {
	t := b.t
	t.Helper()
	ctx := context.Background()
	if err := b.client.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	received := b.events.stop()
	tasks, err := b.client.Tasks(ctx, &tasker.TaskListOpts{Limit: 100000})
	if err != nil {
		t.Fatalf("Tasks: %v", err)
	}
	if len(tasks) == 0 {
		t.Fatal("no tasks to audit")
	}
	type key struct{ stepID, from, to, name string }
	got := map[string][]key{}
	// An attempt's observability events follow the transition that
	// recorded its outcome (a completion may return before the store
	// announces it; the engine holds them back until it has).
	type attemptKey struct {
		stepID  string
		attempt int
	}
	outcomes := map[attemptKey]bool{}
	for _, ev := range received {
		switch {
		case ev.FromState == string(tasker.StepInProgress) && ev.StepID != "":
			outcomes[attemptKey{ev.StepID, ev.Attempt}] = true
		case ev.Name == event.StepHandled || ev.Name == event.StepBackoff:
			if !outcomes[attemptKey{ev.StepID, ev.Attempt}] {
				t.Errorf("%s for step %s attempt %d was published before the transition that recorded the attempt's outcome",
					ev.Name, ev.StepID, ev.Attempt)
			}
		}
	}
	for _, ev := range received {
		spec, ok := event.Lookup(ev.Name)
		if !ok || (spec.Kind != event.KindTaskLifecycle && spec.Kind != event.KindStepLifecycle) {
			continue
		}
		got[ev.TaskID] = append(got[ev.TaskID], key{ev.StepID, ev.FromState, ev.ToState, string(ev.Name)})
	}
	for _, task := range tasks {
		history, err := b.client.Transitions(ctx, task.ID)
		if err != nil {
			t.Fatalf("Transitions: %v", err)
		}
		var logged []*store.Event
		var want []key
		claims := map[string][]int{}
		for _, tr := range history {
			logged = append(logged, &store.Event{Cursor: tr.Cursor, TaskID: task.ID, StepID: tr.StepID, StepName: tr.StepName,
				Seq: tr.Seq, From: tr.From, To: tr.To, Name: event.Name(tr.Event), Metadata: tr.Metadata})
			want = append(want, key{tr.StepID, tr.From, tr.To, tr.Event})
			if tr.Event == string(event.StepExecutionRequested) {
				claims[tr.StepID] = append(claims[tr.StepID], tr.Metadata.Attempt)
			}
		}
		if err := storetest.CheckHistory(logged); err != nil {
			t.Errorf("task %s: illegal history:\n%v", task.ID, err)
		}
		if fmt.Sprint(got[task.ID]) != fmt.Sprint(want) {
			t.Errorf("task %s: lifecycle events received differ from its transition history:\nreceived %v\nstored   %v", task.ID, got[task.ID], want)
		}
		full, err := b.client.Task(ctx, task.ID)
		if err != nil {
			t.Fatalf("Task: %v", err)
		}
		for _, s := range full.Steps {
			if s.Handler != "work" {
				continue
			}
			if ran, recorded := b.ledger.attempts(s.ID), claims[s.ID]; fmt.Sprint(ran) != fmt.Sprint(recorded) {
				t.Errorf("task %s step %s: handler ran for attempts %v, recorded attempts %v", task.ID, s.Name, ran, recorded)
			}
		}
	}
}
