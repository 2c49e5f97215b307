// Package analytics computes throughput, error rates and latency percentiles
// of tasks and step attempts over a time window.
//
// It is pure: Compute does no I/O and reads no clock. The caller loads the
// tasks that finished in the window and the step attempt outcomes (the
// step.completed, step.attempt_failed and step.failed events of
// docs/events.md) and passes the window itself, usually ending now.
//
// Definitions used throughout:
//
//   - The window is the half-open interval [Since, Until): a task counts when
//     its FinishedAt is in it, an attempt when its event's OccurredAt is in it.
//     Everything else is ignored.
//   - Task duration is FinishedAt − StartedAt.
//   - Percentiles use the nearest-rank method: the p-th percentile of n sorted
//     values is the value at rank ⌈p/100 × n⌉ (1-based), so p50 of
//     [1 2 3 4] is 2 and p95 of [1 … 10] is 10. Every percentile is one of
//     the values, never an interpolation, and all are 0 when there are no
//     values. Max is the largest value.
//   - Durations are in milliseconds.
//
// Compute runs in O(n log n) time for n tasks and attempts (sorting the
// durations of each template and step; the slowest list costs O(n log k) for
// k slowest), plus one step per throughput bucket (at most MaxBuckets).
package analytics

import (
	"cmp"
	"slices"
	"time"

	tasker "github.com/tasker-go/tasker"
)

// MaxBuckets bounds the number of throughput buckets of a report. When the
// requested bucket width would need more, Compute widens the buckets to the
// smallest whole number of minutes that fits (Report.Bucket tells the width
// used).
const MaxBuckets = 10_000

// Outcomes of an attempt (SlowAttempt.Outcome), as in the outcome key of
// step.handled.
const (
	// OutcomeSuccess is a step.completed attempt.
	OutcomeSuccess = "success"
	// OutcomeRetry is a step.attempt_failed attempt: it failed and the step
	// will be retried.
	OutcomeRetry = "retry"
	// OutcomeFailure is a step.failed attempt: it failed and the step is in
	// error.
	OutcomeFailure = "failure"
)

// Input is what Compute summarizes.
type Input struct {
	// Since and Until are the window, [Since, Until). Until is usually now.
	Since, Until time.Time
	// Bucket is the width of a throughput bucket. When it is 0 (or
	// negative), the default is the window divided by 24, rounded to the
	// nearest whole minute, and at least one minute.
	Bucket time.Duration
	// Tasks are the tasks that finished in the window, with StartedAt and
	// FinishedAt set. Only tasks in a finished state count (complete,
	// error, cancelled or resolved_manually); others, nil tasks and tasks
	// whose FinishedAt is outside the window are ignored.
	Tasks []*tasker.Task
	// Attempts are the step attempt outcomes of the window: step.completed,
	// step.attempt_failed and step.failed events. Other events and events
	// whose OccurredAt is outside the window are ignored.
	Attempts []tasker.Event
}

// Report is the summary of a window.
type Report struct {
	// Since and Until are the window, as given.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Bucket is the throughput bucket width used, as a duration string
	// such as "1h0m0s".
	Bucket string `json:"bucket"`
	// Throughput has every bucket of the window, oldest first, empty
	// buckets included. The first starts at Since truncated to the bucket
	// width (time.Time.Truncate: relative to the zero time, so whole UTC
	// minutes or hours); the last is the one that contains Until − 1ns.
	Throughput []Bucket `json:"throughput"`
	// Templates has one entry per template with at least one task finished
	// in the window, sorted by namespace, name and version (as strings).
	Templates []TemplateStats `json:"templates"`
	// Steps has one entry per step of a template with at least one attempt
	// in the window, sorted by namespace, template, version, then step name.
	Steps []StepStats `json:"steps"`
	// SlowestSteps are the slowest attempts of the window, slowest first;
	// see Compute.
	SlowestSteps []SlowAttempt `json:"slowest_steps"`
}

// Bucket counts the tasks that finished in [Start, Start+width) by end state.
// Tasks resolved manually are not counted in any bucket (see
// TemplateStats.ResolvedManually).
type Bucket struct {
	Start time.Time `json:"start"`
	// Completed counts tasks that ended complete.
	Completed int `json:"completed"`
	// Failed counts tasks that ended in error.
	Failed int `json:"failed"`
	// Cancelled counts tasks that were cancelled.
	Cancelled int `json:"cancelled"`
}

// Percentiles summarize a set of durations, in milliseconds, with the
// nearest-rank method (see the package documentation). All are 0 when there
// are no values.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// TemplateStats summarize the tasks of one template that finished in the
// window.
type TemplateStats struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Version   string `json:"version"`
	// Completed, Failed, Cancelled and ResolvedManually count tasks by end
	// state: complete, error, cancelled and resolved_manually.
	Completed        int `json:"completed"`
	Failed           int `json:"failed"`
	Cancelled        int `json:"cancelled"`
	ResolvedManually int `json:"resolved_manually"`
	// ErrorRate is Failed / (Completed + Failed + ResolvedManually), or 0
	// when that sum is 0. Cancelled tasks are left out: cancelling is an
	// operator's decision, not an outcome of the task.
	ErrorRate float64 `json:"error_rate"`
	// DurationMS are the percentiles of the task durations (FinishedAt −
	// StartedAt) of every counted task, whatever its end state, that has a
	// StartedAt not after its FinishedAt (a task cancelled before it
	// started has none).
	DurationMS Percentiles `json:"duration_ms"`
	// TasksPerMinute is the number of counted tasks (all four end states)
	// divided by the length of the window in minutes.
	TasksPerMinute float64 `json:"tasks_per_minute"`
}

// StepStats summarize the attempts of one step of one template in the window.
type StepStats struct {
	Namespace string `json:"namespace"`
	// Template and Version are the template's name and version.
	Template string `json:"template"`
	Version  string `json:"version"`
	// Step is the step's name in the template.
	Step string `json:"step"`
	// Attempts counts the attempt outcomes: Succeeded + Retried + Failed.
	Attempts int `json:"attempts"`
	// Succeeded counts step.completed events.
	Succeeded int `json:"succeeded"`
	// Retried counts step.attempt_failed events: failed attempts that were
	// followed by a retry.
	Retried int `json:"retried"`
	// Failed counts step.failed events: failed attempts that left the step
	// in error.
	Failed int `json:"failed"`
	// ErrorRate is (Retried + Failed) / Attempts, the share of attempts that
	// did not succeed, or 0 when there are no attempts.
	ErrorRate float64 `json:"error_rate"`
	// DurationMS are the percentiles of execution_duration_ms over the
	// attempts that ran a handler: every attempt except a step.failed of
	// error class lease_expired (written by the sweeper), handler (no
	// handler registered) or template (the template could not be loaded),
	// which carry no duration. A duration of 0 is a handler that ran for
	// under a millisecond.
	DurationMS Percentiles `json:"duration_ms"`
}

// SlowAttempt is one step attempt of the window, for the slowest list.
type SlowAttempt struct {
	Namespace string `json:"namespace"`
	Template  string `json:"template"`
	Version   string `json:"version"`
	Step      string `json:"step"`
	TaskID    string `json:"task_id"`
	StepID    string `json:"step_id"`
	// Attempt is the attempt number, 1 for the first.
	Attempt int `json:"attempt"`
	// DurationMS is how long the handler ran (execution_duration_ms).
	DurationMS int64 `json:"duration_ms"`
	// Outcome is OutcomeSuccess, OutcomeRetry or OutcomeFailure.
	Outcome string `json:"outcome"`
	// At is when the attempt's outcome was recorded (the event's OccurredAt).
	At time.Time `json:"at"`
}

// Compute summarizes in. The slowest list holds at most slowest attempts
// (none when slowest <= 0), chosen among the attempts that ran a handler (see
// StepStats.DurationMS), by decreasing duration; ties are broken by earlier
// At, then by task id, step id and attempt number, so the result does not
// depend on the order of in.Attempts.
//
// Every slice of the report is non-nil, so that it encodes as a JSON array.
func Compute(in Input, slowest int) Report {
	width := bucketWidth(in.Since, in.Until, in.Bucket)
	r := Report{
		Since:        in.Since,
		Until:        in.Until,
		Bucket:       width.String(),
		Throughput:   buckets(in.Since, in.Until, width),
		Templates:    []TemplateStats{},
		Steps:        []StepStats{},
		SlowestSteps: []SlowAttempt{},
	}
	inWindow := func(t time.Time) bool { return !t.Before(in.Since) && t.Before(in.Until) }
	r.Templates = templateStats(in, inWindow, r.Throughput, width)
	var measured []int
	r.Steps, measured = stepStats(in.Attempts, inWindow)
	r.SlowestSteps = slowestAttempts(in.Attempts, measured, slowest)
	return r
}

// bucketWidth returns the throughput bucket width for the window: b, or the
// default when b <= 0, widened when the window would need more than
// MaxBuckets buckets.
func bucketWidth(since, until time.Time, b time.Duration) time.Duration {
	window := until.Sub(since)
	if b <= 0 {
		b = max((window / 24).Round(time.Minute), time.Minute)
	}
	if window > 0 && bucketCount(since.Truncate(b), until, b) > MaxBuckets {
		// With this width the window spans at most MaxBuckets-1 widths, and
		// the truncation of Since adds at most one bucket.
		b = ceilTo(ceilDiv(window, MaxBuckets-1), time.Minute)
	}
	return b
}

// ceilDiv returns ⌈d / n⌉ for d >= 0 and n > 0, without overflow.
func ceilDiv(d time.Duration, n int64) time.Duration {
	q := d / time.Duration(n)
	if d%time.Duration(n) != 0 {
		q++
	}
	return q
}

// ceilTo rounds d up to a multiple of m.
func ceilTo(d, m time.Duration) time.Duration {
	return ceilDiv(d, int64(m)) * m
}

// bucketCount returns how many buckets of width b, the first starting at
// start, it takes to reach until.
func bucketCount(start, until time.Time, b time.Duration) int64 {
	span := until.Sub(start)
	if span <= 0 {
		return 0
	}
	return int64(ceilDiv(span, int64(b)))
}

// buckets returns the empty throughput buckets of the window.
func buckets(since, until time.Time, width time.Duration) []Bucket {
	if !until.After(since) {
		return []Bucket{}
	}
	start := since.Truncate(width)
	n := bucketCount(start, until, width)
	out := make([]Bucket, n)
	for i := range out {
		out[i].Start = start.Add(time.Duration(i) * width)
	}
	return out
}

type templateKey struct{ namespace, name, version string }

type templateAcc struct {
	stats     TemplateStats
	durations []float64
}

// templateStats counts the tasks of the window per template, and adds them
// to the throughput buckets tp of the given width.
func templateStats(in Input, inWindow func(time.Time) bool, tp []Bucket, width time.Duration) []TemplateStats {
	accs := map[templateKey]*templateAcc{}
	for _, t := range in.Tasks {
		if t == nil || !t.State.Finished() || !inWindow(t.FinishedAt) {
			continue
		}
		k := templateKey{t.Namespace, t.Name, t.Version}
		a := accs[k]
		if a == nil {
			a = &templateAcc{stats: TemplateStats{Namespace: t.Namespace, Name: t.Name, Version: t.Version}}
			accs[k] = a
		}
		// inWindow guarantees Since <= FinishedAt < Until, so the index is
		// within the buckets, which start at or before Since.
		b := &tp[t.FinishedAt.Sub(tp[0].Start)/width]
		switch t.State {
		case tasker.TaskComplete:
			a.stats.Completed++
			b.Completed++
		case tasker.TaskError:
			a.stats.Failed++
			b.Failed++
		case tasker.TaskCancelled:
			a.stats.Cancelled++
			b.Cancelled++
		case tasker.TaskResolvedManually:
			a.stats.ResolvedManually++
		}
		if !t.StartedAt.IsZero() && !t.FinishedAt.Before(t.StartedAt) {
			a.durations = append(a.durations, float64(t.FinishedAt.Sub(t.StartedAt))/float64(time.Millisecond))
		}
	}
	minutes := in.Until.Sub(in.Since).Minutes()
	out := make([]TemplateStats, 0, len(accs))
	for _, a := range accs {
		s := a.stats
		s.ErrorRate = ratio(s.Failed, s.Completed+s.Failed+s.ResolvedManually)
		slices.Sort(a.durations)
		s.DurationMS = percentiles(a.durations)
		// minutes > 0: a task was counted, so the window is not empty.
		s.TasksPerMinute = float64(s.Completed+s.Failed+s.Cancelled+s.ResolvedManually) / minutes
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b TemplateStats) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
	})
	return out
}

type stepKey struct{ namespace, template, version, step string }

type stepAcc struct {
	stats     StepStats
	durations []float64
}

// unmeasuredClasses are the error classes of a step.failed written without
// running a handler, so without a duration (docs/events.md).
var unmeasuredClasses = map[string]bool{"lease_expired": true, "handler": true, "template": true}

// measuredAttempt reports whether the attempt outcome e ran a handler.
func measuredAttempt(e *tasker.Event) bool {
	return e.Name != tasker.EventStepFailed || !unmeasuredClasses[e.ErrorClass]
}

// stepStats counts the attempts of the window per step. It also returns
// the indexes in evs of the attempts of the window that ran a handler.
func stepStats(evs []tasker.Event, inWindow func(time.Time) bool) ([]StepStats, []int) {
	accs := map[stepKey]*stepAcc{}
	var measured []int
	for i := range evs {
		e := &evs[i]
		switch e.Name {
		case tasker.EventStepCompleted, tasker.EventStepAttemptFailed, tasker.EventStepFailed:
		default:
			continue
		}
		if !inWindow(e.OccurredAt) {
			continue
		}
		k := stepKey{e.Namespace, e.TaskName, e.Version, e.StepName}
		a := accs[k]
		if a == nil {
			a = &stepAcc{stats: StepStats{Namespace: e.Namespace, Template: e.TaskName, Version: e.Version, Step: e.StepName}}
			accs[k] = a
		}
		a.stats.Attempts++
		switch e.Name {
		case tasker.EventStepCompleted:
			a.stats.Succeeded++
		case tasker.EventStepAttemptFailed:
			a.stats.Retried++
		case tasker.EventStepFailed:
			a.stats.Failed++
		}
		if measuredAttempt(e) {
			a.durations = append(a.durations, float64(e.ExecutionDurationMS))
			measured = append(measured, i)
		}
	}
	out := make([]StepStats, 0, len(accs))
	for _, a := range accs {
		s := a.stats
		s.ErrorRate = ratio(s.Retried+s.Failed, s.Attempts)
		slices.Sort(a.durations)
		s.DurationMS = percentiles(a.durations)
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b StepStats) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Template, b.Template),
			cmp.Compare(a.Version, b.Version), cmp.Compare(a.Step, b.Step))
	})
	return out, measured
}

// slowestAttempts returns the n slowest of the attempts evs[i] for i in
// idx, slowest first (see Compute for the order of ties). It keeps the n
// slowest seen so far in a heap whose root is the fastest of them, in
// O(len(idx) × log n).
func slowestAttempts(evs []tasker.Event, idx []int, n int) []SlowAttempt {
	n = min(n, len(idx))
	if n <= 0 {
		return []SlowAttempt{}
	}
	// after reports whether evs[i] comes after evs[j] in the slowest list.
	after := func(i, j int) bool { return slowestOrder(&evs[i], &evs[j]) > 0 }
	h := make([]int, 0, n)
	for _, i := range idx {
		switch {
		case len(h) < n:
			h = append(h, i)
			siftUp(h, len(h)-1, after)
		case after(h[0], i):
			h[0] = i
			siftDown(h, 0, after)
		}
	}
	slices.SortFunc(h, func(i, j int) int { return slowestOrder(&evs[i], &evs[j]) })
	out := make([]SlowAttempt, len(h))
	for k, i := range h {
		e := &evs[i]
		out[k] = SlowAttempt{
			Namespace: e.Namespace, Template: e.TaskName, Version: e.Version, Step: e.StepName,
			TaskID: e.TaskID, StepID: e.StepID, Attempt: e.Attempt,
			DurationMS: e.ExecutionDurationMS, Outcome: outcome(e.Name), At: e.OccurredAt,
		}
	}
	return out
}

// slowestOrder orders attempts for the slowest list: by decreasing
// duration, then earlier OccurredAt, task id, step id and attempt number.
func slowestOrder(a, b *tasker.Event) int {
	if c := cmp.Compare(b.ExecutionDurationMS, a.ExecutionDurationMS); c != 0 {
		return c
	}
	if c := a.OccurredAt.Compare(b.OccurredAt); c != 0 {
		return c
	}
	if c := cmp.Compare(a.TaskID, b.TaskID); c != 0 {
		return c
	}
	if c := cmp.Compare(a.StepID, b.StepID); c != 0 {
		return c
	}
	return cmp.Compare(a.Attempt, b.Attempt)
}

// siftUp restores the heap property of h, whose root is the element that
// comes last in the order given by after, after h[k] was added.
func siftUp(h []int, k int, after func(i, j int) bool) {
	for k > 0 {
		p := (k - 1) / 2
		if !after(h[k], h[p]) {
			return
		}
		h[k], h[p] = h[p], h[k]
		k = p
	}
}

// siftDown restores the heap property of h after h[k] was replaced.
func siftDown(h []int, k int, after func(i, j int) bool) {
	for {
		c := 2*k + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && after(h[c+1], h[c]) {
			c++
		}
		if !after(h[c], h[k]) {
			return
		}
		h[k], h[c] = h[c], h[k]
		k = c
	}
}

// outcome names the outcome of an attempt event.
func outcome(name tasker.EventName) string {
	switch name {
	case tasker.EventStepCompleted:
		return OutcomeSuccess
	case tasker.EventStepAttemptFailed:
		return OutcomeRetry
	default:
		return OutcomeFailure
	}
}

// ratio returns num / den, or 0 when den is 0.
func ratio(num, den int) float64 {
	if den == 0 {
		return 0
	}
	return float64(num) / float64(den)
}

// percentiles summarizes sorted values with the nearest-rank method.
func percentiles(sorted []float64) Percentiles {
	if len(sorted) == 0 {
		return Percentiles{}
	}
	return Percentiles{
		P50: nearestRank(sorted, 50),
		P95: nearestRank(sorted, 95),
		P99: nearestRank(sorted, 99),
		Max: sorted[len(sorted)-1],
	}
}

// nearestRank returns the p-th percentile (0 < p <= 100) of sorted, which
// is not empty: the value at the 1-based rank ⌈p/100 × n⌉, computed in
// integers to avoid rounding errors.
func nearestRank(sorted []float64, p int) float64 {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}
