package telemetry

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tasker-go/tasker"
)

// A *tasker.Client is what the server gives NewMetrics and NewTracer.
var (
	_ Source     = (*tasker.Client)(nil)
	_ TaskReader = (*tasker.Client)(nil)
)

type fakeSource struct {
	mu    sync.Mutex
	stats tasker.Stats
	ready int
	err   error
	calls int
}

func (f *fakeSource) Stats() tasker.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

func (f *fakeSource) ReadyCount(ctx context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if _, ok := ctx.Deadline(); !ok {
		return 0, errors.New("ReadyCount called without a deadline")
	}
	return f.ready, f.err
}

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// ev builds an event of the template shop/order (version 1.0.0).
func ev(name tasker.EventName, taskID string, at time.Duration, mod ...func(*tasker.Event)) tasker.Event {
	e := tasker.Event{
		Name: name, TaskID: taskID, TaskName: "order", Namespace: "shop", Version: "1.0.0",
		OccurredAt: t0.Add(at),
	}
	for _, f := range mod {
		f(&e)
	}
	return e
}

func step(id, name string, attempt int) func(*tasker.Event) {
	return func(e *tasker.Event) { e.StepID, e.StepName, e.Attempt, e.RetryLimit = id, name, attempt, 3 }
}

func states(from, to string) func(*tasker.Event) {
	return func(e *tasker.Event) { e.FromState, e.ToState = from, to }
}

func dur(ms int64) func(*tasker.Event) {
	return func(e *tasker.Event) { e.ExecutionDurationMS = ms }
}

func fail(class, msg string) func(*tasker.Event) {
	return func(e *tasker.Event) { e.ErrorClass, e.ErrorMessage = class, msg }
}

func template(name string) func(*tasker.Event) {
	return func(e *tasker.Event) { e.TaskName = name }
}

// histogram returns the sample count and sum of one series of a histogram.
func histogram(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (uint64, float64) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
		}
	}
	return 0, 0
}

func TestMetricsFromEvents(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	const a, b, c, d = "task-a", "task-b", "task-c", "task-d"
	events := []tasker.Event{
		// Task a (shop/order): one step completes, another is retried then fails.
		ev(tasker.EventTaskInitializeRequested, a, 0, states("", "pending")),
		ev(tasker.EventStepInitializeRequested, a, 0, step("s1", "fetch", 0), states("", "pending")),
		ev(tasker.EventStepInitializeRequested, a, 0, step("s2", "charge", 0), states("", "pending")),
		ev(tasker.EventTaskStartRequested, a, 0, states("pending", "in_progress")),
		ev(tasker.EventWorkflowViableStepsDiscovered, a, 0),
		ev(tasker.EventStepExecutionRequested, a, 10*time.Millisecond, step("s1", "fetch", 1), states("pending", "in_progress")),
		ev(tasker.EventStepCompleted, a, 260*time.Millisecond, step("s1", "fetch", 1), states("in_progress", "complete"), dur(250)),
		ev(tasker.EventStepHandled, a, 260*time.Millisecond, step("s1", "fetch", 1), dur(250)),
		ev(tasker.EventStepExecutionRequested, a, 300*time.Millisecond, step("s2", "charge", 1), states("pending", "in_progress")),
		ev(tasker.EventStepAttemptFailed, a, 1800*time.Millisecond, step("s2", "charge", 1), states("in_progress", "waiting_for_retry"), dur(1500), fail("retryable", "boom")),
		ev(tasker.EventStepExecutionRequested, a, 5*time.Second, step("s2", "charge", 2), states("waiting_for_retry", "in_progress")),
		ev(tasker.EventStepFailed, a, 5020*time.Millisecond, step("s2", "charge", 2), states("in_progress", "error"), dur(20), fail("permanent", "card declined")),
		ev(tasker.EventWorkflowNoViableSteps, a, 90*time.Second),
		ev(tasker.EventTaskFailed, a, 90*time.Second, states("in_progress", "error"), fail("blocked", "charge")),
		ev(tasker.EventWorkflowTaskFinalized, a, 90*time.Second),

		// Task b (shop/refund): completes in 2 s; its step's lease expired
		// once on the last attempt (no duration: not observed).
		ev(tasker.EventTaskStartRequested, b, 0, template("refund"), states("pending", "in_progress")),
		ev(tasker.EventStepExecutionRequested, b, 0, template("refund"), step("s3", "pay", 1)),
		ev(tasker.EventStepCompleted, b, 40*time.Millisecond, template("refund"), step("s3", "pay", 1), states("in_progress", "complete"), dur(40)),
		ev(tasker.EventStepFailed, b, time.Second, template("refund"), step("s4", "audit", 1), states("in_progress", "error"), fail("lease_expired", "lease expired")),
		ev(tasker.EventTaskCompleted, b, 2*time.Second, template("refund"), states("in_progress", "complete")),

		// Task c: cancelled. Task d: completed, its start was not seen here.
		ev(tasker.EventTaskStartRequested, c, 0, states("pending", "in_progress")),
		ev(tasker.EventTaskCancelled, c, time.Second, states("in_progress", "cancelled")),
		ev(tasker.EventTaskCompleted, d, time.Second, states("in_progress", "complete")),

		// A custom event is ignored.
		ev("order.placed", a, time.Second),
	}
	sub := make(chan tasker.Event, len(events))
	for _, e := range events {
		sub <- e
	}
	close(sub)
	m.Run(context.Background(), sub) // returns when sub is closed

	const counters = `
# HELP tasker_step_retries_total Step attempts failed with attempts left, so the step will be retried (step.attempt_failed).
# TYPE tasker_step_retries_total counter
tasker_step_retries_total{namespace="shop",template="order"} 1
# HELP tasker_steps_completed_total Steps completed (step.completed).
# TYPE tasker_steps_completed_total counter
tasker_steps_completed_total{namespace="shop",template="order"} 1
tasker_steps_completed_total{namespace="shop",template="refund"} 1
# HELP tasker_steps_failed_total Steps failed for good (step.failed): a permanent failure, no attempts left, or a lease expired on the last attempt.
# TYPE tasker_steps_failed_total counter
tasker_steps_failed_total{namespace="shop",template="order"} 1
tasker_steps_failed_total{namespace="shop",template="refund"} 1
# HELP tasker_steps_started_total Step attempts started: steps claimed by a worker (step.execution_requested).
# TYPE tasker_steps_started_total counter
tasker_steps_started_total{namespace="shop",template="order"} 3
tasker_steps_started_total{namespace="shop",template="refund"} 1
# HELP tasker_tasks_cancelled_total Tasks cancelled (task.cancelled).
# TYPE tasker_tasks_cancelled_total counter
tasker_tasks_cancelled_total{namespace="shop",template="order"} 1
# HELP tasker_tasks_completed_total Tasks completed (task.completed).
# TYPE tasker_tasks_completed_total counter
tasker_tasks_completed_total{namespace="shop",template="order"} 1
tasker_tasks_completed_total{namespace="shop",template="refund"} 1
# HELP tasker_tasks_failed_total Tasks failed (task.failed): nothing could run any more and some step was not done.
# TYPE tasker_tasks_failed_total counter
tasker_tasks_failed_total{namespace="shop",template="order"} 1
# HELP tasker_tasks_started_total Tasks started (task.start_requested), including restarts after a retry.
# TYPE tasker_tasks_started_total counter
tasker_tasks_started_total{namespace="shop",template="order"} 2
tasker_tasks_started_total{namespace="shop",template="refund"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(counters),
		"tasker_tasks_started_total", "tasker_tasks_completed_total", "tasker_tasks_failed_total",
		"tasker_tasks_cancelled_total", "tasker_steps_started_total", "tasker_steps_completed_total",
		"tasker_steps_failed_total", "tasker_step_retries_total"); err != nil {
		t.Error(err)
	}

	type series struct {
		name   string
		labels map[string]string
		count  uint64
		sum    float64
	}
	lbl := func(tmpl, outcome string) map[string]string {
		return map[string]string{"namespace": "shop", "template": tmpl, "outcome": outcome}
	}
	for _, s := range []series{
		{"tasker_step_duration_seconds", lbl("order", "success"), 1, 0.25},
		{"tasker_step_duration_seconds", lbl("order", "retry"), 1, 1.5},
		{"tasker_step_duration_seconds", lbl("order", "failure"), 1, 0.02},
		{"tasker_step_duration_seconds", lbl("refund", "success"), 1, 0.04},
		{"tasker_step_duration_seconds", lbl("refund", "failure"), 0, 0}, // lease expired: no duration
		{"tasker_task_duration_seconds", lbl("order", "failure"), 1, 90},
		{"tasker_task_duration_seconds", lbl("refund", "success"), 1, 2},
		{"tasker_task_duration_seconds", lbl("order", "success"), 0, 0}, // task d: start unknown
	} {
		count, sum := histogram(t, reg, s.name, s.labels)
		if count != s.count || math.Abs(sum-s.sum) > 1e-9 {
			t.Errorf("%s%v: count %d sum %g, want count %d sum %g", s.name, s.labels, count, sum, s.count, s.sum)
		}
	}
	if n := testutil.CollectAndCount(m.stepDuration); n != 4 {
		t.Errorf("tasker_step_duration_seconds has %d series, want 4", n)
	}
	if n := testutil.CollectAndCount(m.taskDuration); n != 2 {
		t.Errorf("tasker_task_duration_seconds has %d series, want 2", n)
	}
	// Every start was consumed by the task's end.
	if n := m.starts.len(); n != 0 {
		t.Errorf("%d task starts still remembered, want 0", n)
	}
}

func TestMetricsTaskDurationBuckets(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(ev(tasker.EventTaskStartRequested, "x", 0))
	m.Observe(ev(tasker.EventTaskCompleted, "x", 3*time.Second))
	const want = `
# HELP tasker_task_duration_seconds Time from a task's start (task.start_requested) to its end, by outcome: success (task.completed) or failure (task.failed). Only tasks whose start this process saw are observed.
# TYPE tasker_task_duration_seconds histogram
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="0.1"} 0
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="0.25"} 0
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="0.5"} 0
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="1"} 0
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="2.5"} 0
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="5"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="10"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="30"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="60"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="120"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="300"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="600"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="1800"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="3600"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="7200"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="21600"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="86400"} 1
tasker_task_duration_seconds_bucket{namespace="shop",outcome="success",template="order",le="+Inf"} 1
tasker_task_duration_seconds_sum{namespace="shop",outcome="success",template="order"} 3
tasker_task_duration_seconds_count{namespace="shop",outcome="success",template="order"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tasker_task_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestMetricsRetriedTaskDuration(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A task fails after 10 s, is retried at 60 s and completes at 65 s:
	// each run is observed from its own start.
	m.Observe(ev(tasker.EventTaskStartRequested, "x", 0))
	m.Observe(ev(tasker.EventTaskFailed, "x", 10*time.Second))
	m.Observe(ev(tasker.EventTaskRetryRequested, "x", 60*time.Second))
	m.Observe(ev(tasker.EventTaskStartRequested, "x", 60*time.Second))
	m.Observe(ev(tasker.EventTaskCompleted, "x", 65*time.Second))
	for outcome, want := range map[string]float64{"failure": 10, "success": 5} {
		count, sum := histogram(t, reg, "tasker_task_duration_seconds",
			map[string]string{"namespace": "shop", "template": "order", "outcome": outcome})
		if count != 1 || sum != want {
			t.Errorf("outcome %s: count %d sum %g, want 1 and %g", outcome, count, sum, want)
		}
	}
	if got := testutil.ToFloat64(m.tasksStarted.WithLabelValues("shop", "order")); got != 2 {
		t.Errorf("tasker_tasks_started_total = %g, want 2", got)
	}
}

func TestMetricsStartsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.starts = newTimeMap(2)
	m.Observe(ev(tasker.EventTaskStartRequested, "old", 0))
	m.Observe(ev(tasker.EventTaskStartRequested, "mid", time.Second))
	m.Observe(ev(tasker.EventTaskStartRequested, "new", 2*time.Second)) // evicts "old"
	if n := m.starts.len(); n != 2 {
		t.Fatalf("%d starts remembered, want 2", n)
	}
	for _, id := range []string{"old", "mid", "new"} {
		m.Observe(ev(tasker.EventTaskCompleted, id, 10*time.Second))
	}
	// "old" was evicted: only mid (9 s) and new (8 s) are observed.
	count, sum := histogram(t, reg, "tasker_task_duration_seconds",
		map[string]string{"namespace": "shop", "template": "order", "outcome": "success"})
	if count != 2 || sum != 17 {
		t.Errorf("count %d sum %g, want 2 and 17", count, sum)
	}
	if got := testutil.ToFloat64(m.tasksCompleted.WithLabelValues("shop", "order")); got != 3 {
		t.Errorf("tasker_tasks_completed_total = %g, want 3", got)
	}
}

func TestTimeMapUpdateMovesToBack(t *testing.T) {
	tm := newTimeMap(2)
	tm.set("a", t0)
	tm.set("b", t0)
	tm.set("a", t0.Add(time.Second)) // a is now the newest
	tm.set("c", t0)                  // evicts b
	if _, ok := tm.take("b"); ok {
		t.Error("b was not evicted")
	}
	if at, ok := tm.take("a"); !ok || !at.Equal(t0.Add(time.Second)) {
		t.Errorf("a = %v, %v; want %v, true", at, ok, t0.Add(time.Second))
	}
	if _, ok := tm.take("a"); ok {
		t.Error("take did not forget a")
	}
}

func TestMetricsScrapeTime(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := &fakeSource{stats: tasker.Stats{Running: 3, Prefetched: 2, Rescued: 4, Stale: 5, LeasesLost: 6, Claimed: 99}, ready: 7}
	if _, err := NewMetrics(reg, src); err != nil {
		t.Fatal(err)
	}
	names := []string{"tasker_ready_steps", "tasker_scrape_errors_total", "tasker_steps_in_flight", "tasker_steps_prefetched",
		"tasker_leases_rescued_total", "tasker_results_discarded_total", "tasker_leases_lost_total"}
	const head = `
# HELP tasker_leases_lost_total Running handlers of this process cancelled because their lease was lost or could not be renewed in time.
# TYPE tasker_leases_lost_total counter
tasker_leases_lost_total %d
# HELP tasker_leases_rescued_total Steps whose lease expired or whose worker died, returned to the queue by this process's sweeper.
# TYPE tasker_leases_rescued_total counter
tasker_leases_rescued_total 4
`
	want := strings.Replace(head, "%d", "6", 1) + `# HELP tasker_ready_steps Steps ready to run now: the ready-queue depth of the database, shared by all processes.
# TYPE tasker_ready_steps gauge
tasker_ready_steps 7
# HELP tasker_results_discarded_total Step outcomes discarded by this process because the worker no longer held the step's lease.
# TYPE tasker_results_discarded_total counter
tasker_results_discarded_total 5
# HELP tasker_scrape_errors_total Errors reading the ready-queue depth at scrape time; tasker_ready_steps is absent from a scrape that failed.
# TYPE tasker_scrape_errors_total counter
tasker_scrape_errors_total 0
# HELP tasker_steps_in_flight Step handlers running now in this process.
# TYPE tasker_steps_in_flight gauge
tasker_steps_in_flight 3
# HELP tasker_steps_prefetched Steps this process has claimed that wait for a free handler slot (prefetch).
# TYPE tasker_steps_prefetched gauge
tasker_steps_prefetched 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// The store fails: tasker_ready_steps is absent and the error is
	// counted in the same scrape; the values change between scrapes.
	src.mu.Lock()
	src.err = errors.New("database is down")
	src.stats.LeasesLost = 8
	src.mu.Unlock()
	want = strings.Replace(head, "%d", "8", 1) + `# HELP tasker_results_discarded_total Step outcomes discarded by this process because the worker no longer held the step's lease.
# TYPE tasker_results_discarded_total counter
tasker_results_discarded_total 5
# HELP tasker_scrape_errors_total Errors reading the ready-queue depth at scrape time; tasker_ready_steps is absent from a scrape that failed.
# TYPE tasker_scrape_errors_total counter
tasker_scrape_errors_total 1
# HELP tasker_steps_in_flight Step handlers running now in this process.
# TYPE tasker_steps_in_flight gauge
tasker_steps_in_flight 3
# HELP tasker_steps_prefetched Steps this process has claimed that wait for a free handler slot (prefetch).
# TYPE tasker_steps_prefetched gauge
tasker_steps_prefetched 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if src.calls != 2 {
		t.Errorf("ReadyCount called %d times, want once per scrape (2)", src.calls)
	}
}

func TestNewMetricsRegistrationConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Something else already registered one of the names.
	if err := reg.Register(prometheus.NewGauge(prometheus.GaugeOpts{Name: "tasker_steps_in_flight", Help: "x"})); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg, &fakeSource{}); err == nil {
		t.Fatal("NewMetrics succeeded despite a conflicting metric")
	}
	// What was registered before the failure was unregistered: the
	// event-fed metrics can be registered again.
	if _, err := NewMetrics(reg, nil); err != nil {
		t.Fatalf("NewMetrics after a failed registration: %v", err)
	}
	if _, err := NewMetrics(nil, nil); err == nil {
		t.Error("NewMetrics(nil, nil) succeeded")
	}
}

func TestMetricsRunStopsOnContext(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sub := make(chan tasker.Event)
	done := make(chan struct{})
	go func() {
		m.Run(ctx, sub)
		close(done)
	}()
	sub <- ev(tasker.EventTaskStartRequested, "x", 0)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the context was cancelled")
	}
	if got := testutil.ToFloat64(m.tasksStarted.WithLabelValues("shop", "order")); got != 1 {
		t.Errorf("tasker_tasks_started_total = %g, want 1", got)
	}
}

func TestMetricsEventNamesCoverObserved(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range m.EventNames() {
		if _, ok := lookupCatalog(name); !ok {
			t.Errorf("EventNames lists %q, which is not in the catalog", name)
		}
	}
}

func lookupCatalog(name string) (tasker.EventSpec, bool) {
	for _, s := range tasker.EventCatalog() {
		if string(s.Name) == name {
			return s, true
		}
	}
	return tasker.EventSpec{}, false
}

// The engine's latency histograms are exposed at scrape time in seconds,
// their buckets cumulative.
func TestMetricsLatencyHistograms(t *testing.T) {
	reg := prometheus.NewRegistry()
	ms := time.Millisecond
	src := &fakeSource{stats: tasker.Stats{
		OutcomeWait: tasker.Latency{Bounds: []time.Duration{ms, 2 * ms}, Counts: []int64{3, 1, 1}, Count: 5, Sum: 10 * ms},
		CompletionWrite: tasker.Latency{Bounds: []time.Duration{ms, 2 * ms}, Counts: []int64{0, 2, 0}, Count: 2,
			Sum: 3 * ms},
	}}
	if _, err := NewMetrics(reg, src); err != nil {
		t.Fatal(err)
	}
	const want = `
# HELP tasker_completion_write_seconds Time this process's completion transactions took: the write of a batch of outcomes, the claim of the steps they released, and the commit.
# TYPE tasker_completion_write_seconds histogram
tasker_completion_write_seconds_bucket{le="0.001"} 0
tasker_completion_write_seconds_bucket{le="0.002"} 2
tasker_completion_write_seconds_bucket{le="+Inf"} 2
tasker_completion_write_seconds_sum 0.003
tasker_completion_write_seconds_count 2
# HELP tasker_outcome_wait_seconds Time from the end of a step's handler in this process to the start of the transaction that records its outcome (the wait for the completion in flight).
# TYPE tasker_outcome_wait_seconds histogram
tasker_outcome_wait_seconds_bucket{le="0.001"} 3
tasker_outcome_wait_seconds_bucket{le="0.002"} 4
tasker_outcome_wait_seconds_bucket{le="+Inf"} 5
tasker_outcome_wait_seconds_sum 0.01
tasker_outcome_wait_seconds_count 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tasker_completion_write_seconds", "tasker_outcome_wait_seconds"); err != nil {
		t.Error(err)
	}
}
