package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-go/tasker"
)

// Source is what Metrics reads from the client at scrape time. A
// *tasker.Client satisfies it.
type Source interface {
	// Stats returns the engine's counters of this process.
	Stats() tasker.Stats
	// ReadyCount returns the number of steps ready to run now (the
	// ready-queue depth, shared by every process using the database).
	ReadyCount(ctx context.Context) (int, error)
}

// scrapeTimeout bounds the ReadyCount query run at each scrape.
const scrapeTimeout = 5 * time.Second

// Outcome label values of the duration histograms.
const (
	outcomeSuccess = "success"
	outcomeRetry   = "retry"
	outcomeFailure = "failure"
)

// Metrics maintains Tasker's Prometheus metrics: counters and histograms
// fed by events (Observe, Run) and gauges and counters read from a Source
// when the registry is scraped. See the package documentation for the list.
// Its methods are safe for concurrent use.
type Metrics struct {
	tasksStarted   *prometheus.CounterVec
	tasksCompleted *prometheus.CounterVec
	tasksFailed    *prometheus.CounterVec
	tasksCancelled *prometheus.CounterVec
	stepsStarted   *prometheus.CounterVec
	stepsCompleted *prometheus.CounterVec
	stepsFailed    *prometheus.CounterVec
	stepRetries    *prometheus.CounterVec
	stepDuration   *prometheus.HistogramVec
	taskDuration   *prometheus.HistogramVec

	// starts remembers the occurred_at of each task's last
	// task.start_requested, for tasker_task_duration_seconds.
	starts *timeMap
}

// Step duration buckets, in seconds: from 5 ms to 10 minutes.
var stepBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Task duration buckets, in seconds: from 100 ms to 1 day.
var taskBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400}

// NewMetrics creates Tasker's metrics and registers them with reg. src is
// read at scrape time for tasker_ready_steps, tasker_steps_in_flight,
// tasker_leases_rescued_total, tasker_results_discarded_total,
// tasker_leases_lost_total and tasker_scrape_errors_total; when src is nil
// those are not registered. If a registration fails, the metrics already
// registered are unregistered and the error is returned.
//
// Feed the returned Metrics with events: Run on a subscription, or Observe.
func NewMetrics(reg prometheus.Registerer, src Source) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("telemetry: nil prometheus.Registerer")
	}
	tmpl := []string{"namespace", "template"}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, tmpl)
	}
	m := &Metrics{
		tasksStarted: counter("tasker_tasks_started_total",
			"Tasks started (task.start_requested), including restarts after a retry."),
		tasksCompleted: counter("tasker_tasks_completed_total",
			"Tasks completed (task.completed)."),
		tasksFailed: counter("tasker_tasks_failed_total",
			"Tasks failed (task.failed): nothing could run any more and some step was not done."),
		tasksCancelled: counter("tasker_tasks_cancelled_total",
			"Tasks cancelled (task.cancelled)."),
		stepsStarted: counter("tasker_steps_started_total",
			"Step attempts started: steps claimed by a worker (step.execution_requested)."),
		stepsCompleted: counter("tasker_steps_completed_total",
			"Steps completed (step.completed)."),
		stepsFailed: counter("tasker_steps_failed_total",
			"Steps failed for good (step.failed): a permanent failure, no attempts left, or a lease expired on the last attempt."),
		stepRetries: counter("tasker_step_retries_total",
			"Step attempts failed with attempts left, so the step will be retried (step.attempt_failed)."),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tasker_step_duration_seconds",
			Help:    "How long step handlers ran (execution_duration_ms), by outcome: success (step.completed), retry (step.attempt_failed) or failure (step.failed).",
			Buckets: stepBuckets,
		}, []string{"namespace", "template", "outcome"}),
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tasker_task_duration_seconds",
			Help:    "Time from a task's start (task.start_requested) to its end, by outcome: success (task.completed) or failure (task.failed). Only tasks whose start this process saw are observed.",
			Buckets: taskBuckets,
		}, []string{"namespace", "template", "outcome"}),
		starts: newTimeMap(maxTracked),
	}
	cs := []prometheus.Collector{
		m.tasksStarted, m.tasksCompleted, m.tasksFailed, m.tasksCancelled,
		m.stepsStarted, m.stepsCompleted, m.stepsFailed, m.stepRetries,
		m.stepDuration, m.taskDuration,
	}
	if src != nil {
		stat := func(f func(tasker.Stats) int64) func() float64 {
			return func() float64 { return float64(f(src.Stats())) }
		}
		cs = append(cs,
			&readyCollector{
				src: src,
				ready: prometheus.NewDesc("tasker_ready_steps",
					"Steps ready to run now: the ready-queue depth of the database, shared by all processes.", nil, nil),
				errs: prometheus.NewDesc("tasker_scrape_errors_total",
					"Errors reading the ready-queue depth at scrape time; tasker_ready_steps is absent from a scrape that failed.", nil, nil),
			},
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "tasker_steps_in_flight",
				Help: "Step handlers running now in this process.",
			}, stat(func(s tasker.Stats) int64 { return s.Running })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "tasker_steps_prefetched",
				Help: "Steps this process has claimed that wait for a free handler slot (prefetch).",
			}, stat(func(s tasker.Stats) int64 { return s.Prefetched })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "tasker_leases_rescued_total",
				Help: "Steps whose lease expired or whose worker died, returned to the queue by this process's sweeper.",
			}, stat(func(s tasker.Stats) int64 { return s.Rescued })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "tasker_results_discarded_total",
				Help: "Step outcomes discarded by this process because the worker no longer held the step's lease.",
			}, stat(func(s tasker.Stats) int64 { return s.Stale })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "tasker_leases_lost_total",
				Help: "Running handlers of this process cancelled because their lease was lost or could not be renewed in time.",
			}, stat(func(s tasker.Stats) int64 { return s.LeasesLost })),
			&latencyCollector{src: src,
				wait: prometheus.NewDesc("tasker_outcome_wait_seconds",
					"Time from the end of a step's handler in this process to the start of the transaction that records its outcome (the wait for the completion in flight).", nil, nil),
				write: prometheus.NewDesc("tasker_completion_write_seconds",
					"Time this process's completion transactions took: the write of a batch of outcomes, the claim of the steps they released, and the commit.", nil, nil),
			},
		)
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("telemetry: register metrics: %w", err)
		}
	}
	return m, nil
}

// EventNames returns the event name patterns Metrics uses, for
// tasker.SubscribeOpts.Names. Observe ignores every other event.
func (m *Metrics) EventNames() []string {
	return []string{
		string(tasker.EventTaskStartRequested), string(tasker.EventTaskCompleted),
		string(tasker.EventTaskFailed), string(tasker.EventTaskCancelled),
		string(tasker.EventStepExecutionRequested), string(tasker.EventStepCompleted),
		string(tasker.EventStepAttemptFailed), string(tasker.EventStepFailed),
	}
}

// Run observes the events of sub until ctx is done or sub is closed.
func (m *Metrics) Run(ctx context.Context, sub <-chan tasker.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub:
			if !ok {
				return
			}
			m.Observe(ev)
		}
	}
}

// Observe updates the metrics from one event. Events that no metric counts
// are ignored.
func (m *Metrics) Observe(ev tasker.Event) {
	ns, tmpl := ev.Namespace, ev.TaskName
	switch ev.Name {
	case tasker.EventTaskStartRequested:
		m.tasksStarted.WithLabelValues(ns, tmpl).Inc()
		m.starts.set(ev.TaskID, ev.OccurredAt)
	case tasker.EventTaskCompleted:
		m.tasksCompleted.WithLabelValues(ns, tmpl).Inc()
		m.observeTask(ev, outcomeSuccess)
	case tasker.EventTaskFailed:
		m.tasksFailed.WithLabelValues(ns, tmpl).Inc()
		m.observeTask(ev, outcomeFailure)
	case tasker.EventTaskCancelled:
		m.tasksCancelled.WithLabelValues(ns, tmpl).Inc()
		m.starts.take(ev.TaskID)
	case tasker.EventStepExecutionRequested:
		m.stepsStarted.WithLabelValues(ns, tmpl).Inc()
	case tasker.EventStepCompleted:
		m.stepsCompleted.WithLabelValues(ns, tmpl).Inc()
		m.observeStep(ev, outcomeSuccess)
	case tasker.EventStepAttemptFailed:
		m.stepRetries.WithLabelValues(ns, tmpl).Inc()
		m.observeStep(ev, outcomeRetry)
	case tasker.EventStepFailed:
		m.stepsFailed.WithLabelValues(ns, tmpl).Inc()
		m.observeStep(ev, outcomeFailure)
	}
}

// observeStep records the handler's run time of an attempt. Attempts that
// ran no handler, or whose duration is unknown, are not observed: the lease
// expired (the sweeper failed the step), or the handler or the template
// could not be found.
func (m *Metrics) observeStep(ev tasker.Event, outcome string) {
	if !handlerRan(ev) {
		return
	}
	m.stepDuration.WithLabelValues(ev.Namespace, ev.TaskName, outcome).
		Observe(time.Duration(ev.ExecutionDurationMS * int64(time.Millisecond)).Seconds())
}

// observeTask records the time since the task's start, when it is known.
func (m *Metrics) observeTask(ev tasker.Event, outcome string) {
	start, ok := m.starts.take(ev.TaskID)
	if !ok || ev.OccurredAt.Before(start) {
		return
	}
	m.taskDuration.WithLabelValues(ev.Namespace, ev.TaskName, outcome).Observe(ev.OccurredAt.Sub(start).Seconds())
}

// handlerRan reports whether a step attempt's end event describes a handler
// run whose duration is execution_duration_ms (0 meaning under 1 ms).
func handlerRan(ev tasker.Event) bool {
	switch ev.ErrorClass {
	case "lease_expired", "handler", "template":
		return false
	}
	return true
}

// latencyCollector exposes the engine's latency histograms
// (Stats.OutcomeWait and Stats.CompletionWrite), read at scrape time.
type latencyCollector struct {
	src         Source
	wait, write *prometheus.Desc
}

func (c *latencyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.wait
	ch <- c.write
}

func (c *latencyCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	ch <- constHistogram(c.wait, s.OutcomeWait)
	ch <- constHistogram(c.write, s.CompletionWrite)
}

// constHistogram is l as a Prometheus histogram in seconds, its buckets
// cumulative as Prometheus counts them.
func constHistogram(d *prometheus.Desc, l tasker.Latency) prometheus.Metric {
	buckets := make(map[float64]uint64, len(l.Bounds))
	var cum int64
	for i, b := range l.Bounds {
		if i < len(l.Counts) {
			cum += l.Counts[i]
		}
		buckets[b.Seconds()] = uint64(cum)
	}
	return prometheus.MustNewConstHistogram(d, uint64(l.Count), l.Sum.Seconds(), buckets)
}

// readyCollector reports the ready-queue depth, read at scrape time, and
// the errors reading it.
type readyCollector struct {
	src         Source
	ready, errs *prometheus.Desc
	errCount    atomic.Uint64
}

func (c *readyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.errs
}

func (c *readyCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	n, err := c.src.ReadyCount(ctx)
	if err != nil {
		c.errCount.Add(1)
	} else {
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(n))
	}
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(c.errCount.Load()))
}
