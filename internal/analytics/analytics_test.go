package analytics

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	tasker "github.com/tasker-go/tasker"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// at returns t0 + d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// task returns a task of template ns/name/version that ran for dur and
// finished at finished; dur < 0 leaves StartedAt zero.
func task(ns, name, version string, state tasker.TaskState, finished time.Time, dur time.Duration) *tasker.Task {
	t := &tasker.Task{ID: fmt.Sprintf("task-%s-%s", name, finished.Format(time.RFC3339Nano)),
		Namespace: ns, Name: name, Version: version, State: state, FinishedAt: finished}
	if dur >= 0 {
		t.StartedAt = finished.Add(-dur)
	}
	return t
}

// attempt describes one attempt event.
type attempt struct {
	name                    tasker.EventName
	ns, tmpl, version, step string
	taskID, stepID          string
	n                       int
	durMS                   int64
	class                   string
	occurred                time.Time
}

func (a attempt) event() tasker.Event {
	return tasker.Event{
		Name: a.name, Namespace: a.ns, TaskName: a.tmpl, Version: a.version, StepName: a.step,
		TaskID: a.taskID, StepID: a.stepID, Attempt: a.n, ExecutionDurationMS: a.durMS,
		ErrorClass: a.class, OccurredAt: a.occurred,
	}
}

func events(as ...attempt) []tasker.Event {
	out := make([]tasker.Event, len(as))
	for i, a := range as {
		out[i] = a.event()
	}
	return out
}

// zeroBuckets returns n empty buckets of the given width from start.
func zeroBuckets(start time.Time, width time.Duration, n int) []Bucket {
	out := make([]Bucket, n)
	for i := range out {
		out[i].Start = start.Add(time.Duration(i) * width)
	}
	return out
}

// withBuckets returns zeroBuckets with some buckets replaced.
func withBuckets(start time.Time, width time.Duration, n int, set map[int]Bucket) []Bucket {
	out := zeroBuckets(start, width, n)
	for i, b := range set {
		b.Start = out[i].Start
		out[i] = b
	}
	return out
}

func same(v float64) Percentiles { return Percentiles{P50: v, P95: v, P99: v, Max: v} }

func TestCompute(t *testing.T) {
	const (
		completed = tasker.EventStepCompleted
		retried   = tasker.EventStepAttemptFailed
		failed    = tasker.EventStepFailed
	)

	// Window edges: [10:07:30, 10:20) with 5m buckets from 10:05.
	edgeSince, edgeUntil := at(7*time.Minute+30*time.Second), at(20*time.Minute)
	edgeTask := func(state tasker.TaskState, finished time.Time, dur time.Duration) *tasker.Task {
		return task("ns", "edge", "1.0.0", state, finished, dur)
	}
	edgeAttempt := func(name tasker.EventName, n int, durMS int64, occurred time.Time) attempt {
		return attempt{name: name, ns: "ns", tmpl: "edge", version: "1.0.0", step: "s", taskID: "t", stepID: "st", n: n, durMS: durMS, occurred: occurred}
	}

	// Ties: five attempts of 100 ms, given out of order.
	tie := func(taskID, stepID string, n int, occurred time.Time) attempt {
		return attempt{name: completed, ns: "ns", tmpl: "tie", version: "1", step: "s", taskID: taskID, stepID: stepID, n: n, durMS: 100, occurred: occurred}
	}
	tieE1 := tie("t2", "s1", 1, at(2*time.Minute))
	tieE2 := tie("t9", "s1", 1, at(time.Minute))
	tieE3 := tie("t1", "s9", 1, at(2*time.Minute))
	tieE4 := tie("t1", "s9", 2, at(2*time.Minute))
	tieE5 := tie("t1", "s2", 1, at(2*time.Minute))
	slow := func(a attempt) SlowAttempt {
		e := a.event()
		return SlowAttempt{Namespace: e.Namespace, Template: e.TaskName, Version: e.Version, Step: e.StepName,
			TaskID: e.TaskID, StepID: e.StepID, Attempt: e.Attempt, DurationMS: e.ExecutionDurationMS,
			Outcome: outcome(e.Name), At: e.OccurredAt}
	}
	tieSteps := []StepStats{{Namespace: "ns", Template: "tie", Version: "1", Step: "s", Attempts: 5, Succeeded: 5, DurationMS: same(100)}}
	tieSlowest := []SlowAttempt{slow(tieE2), slow(tieE5), slow(tieE3), slow(tieE4)}

	// Mixed templates and steps over one hour (default buckets of 3m).
	ayFetch1 := attempt{name: retried, ns: "a", tmpl: "y", version: "2.0.0", step: "fetch", taskID: "t1", stepID: "s1", n: 1, durMS: 500, class: "timeout", occurred: at(time.Minute)}
	ayFetch2 := attempt{name: retried, ns: "a", tmpl: "y", version: "2.0.0", step: "fetch", taskID: "t1", stepID: "s1", n: 2, durMS: 700, class: "retryable", occurred: at(2 * time.Minute)}
	ayFetch3 := attempt{name: failed, ns: "a", tmpl: "y", version: "2.0.0", step: "fetch", taskID: "t1", stepID: "s1", n: 3, class: "lease_expired", occurred: at(3 * time.Minute)}
	ayCharge1 := attempt{name: completed, ns: "a", tmpl: "y", version: "2.0.0", step: "charge", taskID: "t2", stepID: "s2", n: 1, durMS: 0, occurred: at(5 * time.Minute)}
	ayCharge2 := attempt{name: failed, ns: "a", tmpl: "y", version: "2.0.0", step: "charge", taskID: "t3", stepID: "s3", n: 1, durMS: 50, class: "permanent", occurred: at(6 * time.Minute)}
	bxFetch := attempt{name: completed, ns: "b", tmpl: "x", version: "1.0.0", step: "fetch", taskID: "t4", stepID: "s4", n: 1, durMS: 500, occurred: at(10 * time.Minute)}
	ignored := []attempt{
		{name: tasker.EventStepHandled, ns: "a", tmpl: "y", version: "2.0.0", step: "fetch", taskID: "t1", stepID: "s1", n: 1, durMS: 9999, occurred: at(time.Minute)},
		{name: tasker.EventTaskCompleted, ns: "a", tmpl: "y", version: "2.0.0", taskID: "t1", occurred: at(time.Minute)},
		{name: tasker.EventStepExecutionRequested, ns: "a", tmpl: "y", version: "2.0.0", step: "fetch", taskID: "t1", stepID: "s1", n: 1, occurred: at(time.Minute)},
		{name: "order.placed", ns: "a", tmpl: "y", version: "2.0.0", step: "fetch", taskID: "t1", stepID: "s1", occurred: at(time.Minute)},
	}

	tests := []struct {
		name    string
		in      Input
		slowest int
		want    Report
	}{
		{
			name: "empty input",
			in:   Input{Since: t0, Until: at(6 * time.Minute)},
			want: Report{Since: t0, Until: at(6 * time.Minute), Bucket: "1m0s",
				Throughput: zeroBuckets(t0, time.Minute, 6),
				Templates:  []TemplateStats{}, Steps: []StepStats{}, SlowestSteps: []SlowAttempt{}},
			slowest: 10,
		},
		{
			name: "empty window ignores everything",
			in: Input{Since: t0, Until: t0,
				Tasks:    []*tasker.Task{task("ns", "n", "1", tasker.TaskComplete, t0, time.Second)},
				Attempts: events(attempt{name: completed, ns: "ns", tmpl: "n", version: "1", step: "s", durMS: 5, occurred: t0})},
			slowest: 10,
			want: Report{Since: t0, Until: t0, Bucket: "1m0s",
				Throughput: []Bucket{}, Templates: []TemplateStats{}, Steps: []StepStats{}, SlowestSteps: []SlowAttempt{}},
		},
		{
			name: "single value",
			in: Input{Since: t0, Until: at(time.Hour), Bucket: 30 * time.Minute,
				Tasks: []*tasker.Task{task("shop", "order", "1.0.0", tasker.TaskComplete, at(10*time.Minute), 1500*time.Millisecond)},
				Attempts: events(attempt{name: completed, ns: "shop", tmpl: "order", version: "1.0.0", step: "charge",
					taskID: "t1", stepID: "s1", n: 1, durMS: 1200, occurred: at(10 * time.Minute)})},
			slowest: 5,
			want: Report{Since: t0, Until: at(time.Hour), Bucket: "30m0s",
				Throughput: withBuckets(t0, 30*time.Minute, 2, map[int]Bucket{0: {Completed: 1}}),
				Templates: []TemplateStats{{Namespace: "shop", Name: "order", Version: "1.0.0", Completed: 1,
					DurationMS: same(1500), TasksPerMinute: 1.0 / 60}},
				Steps: []StepStats{{Namespace: "shop", Template: "order", Version: "1.0.0", Step: "charge",
					Attempts: 1, Succeeded: 1, DurationMS: same(1200)}},
				SlowestSteps: []SlowAttempt{{Namespace: "shop", Template: "order", Version: "1.0.0", Step: "charge",
					TaskID: "t1", StepID: "s1", Attempt: 1, DurationMS: 1200, Outcome: OutcomeSuccess, At: at(10 * time.Minute)}},
			},
		},
		{
			name: "window edges",
			in: Input{Since: edgeSince, Until: edgeUntil, Bucket: 5 * time.Minute,
				Tasks: []*tasker.Task{
					edgeTask(tasker.TaskComplete, edgeSince, 2*time.Second),                      // first instant: counted
					edgeTask(tasker.TaskError, edgeSince.Add(-time.Nanosecond), time.Second),     // before: ignored
					edgeTask(tasker.TaskCancelled, edgeUntil.Add(-time.Nanosecond), time.Second), // last instant: counted
					edgeTask(tasker.TaskComplete, edgeUntil, time.Second),                        // Until: ignored
					edgeTask(tasker.TaskComplete, at(10*time.Minute), 3*time.Second),             // bucket boundary: later bucket
					edgeTask(tasker.TaskResolvedManually, at(16*time.Minute), 4*time.Second),     // no bucket
					edgeTask(tasker.TaskError, at(12*time.Minute), 5*time.Second),
					edgeTask(tasker.TaskInProgress, time.Time{}, -1), // not finished: ignored
					nil,
				},
				Attempts: events(
					edgeAttempt(completed, 1, 10, edgeSince),
					edgeAttempt(completed, 9, 1000, edgeSince.Add(-time.Nanosecond)),
					edgeAttempt(retried, 2, 20, edgeUntil.Add(-time.Nanosecond)),
					edgeAttempt(failed, 9, 2000, edgeUntil),
				)},
			slowest: 10,
			want: Report{Since: edgeSince, Until: edgeUntil, Bucket: "5m0s",
				Throughput: []Bucket{
					{Start: at(5 * time.Minute), Completed: 1},
					{Start: at(10 * time.Minute), Completed: 1, Failed: 1},
					{Start: at(15 * time.Minute), Cancelled: 1},
				},
				Templates: []TemplateStats{{Namespace: "ns", Name: "edge", Version: "1.0.0",
					Completed: 2, Failed: 1, Cancelled: 1, ResolvedManually: 1,
					ErrorRate: 0.25, // 1 / (2 + 1 + 1)
					// durations 1, 2, 3, 4, 5 s: ranks ⌈2.5⌉ = 3, ⌈4.75⌉ = 5, ⌈4.95⌉ = 5
					DurationMS:     Percentiles{P50: 3000, P95: 5000, P99: 5000, Max: 5000},
					TasksPerMinute: 0.4, // 5 tasks / 12.5 minutes
				}},
				Steps: []StepStats{{Namespace: "ns", Template: "edge", Version: "1.0.0", Step: "s",
					Attempts: 2, Succeeded: 1, Retried: 1, ErrorRate: 0.5,
					DurationMS: Percentiles{P50: 10, P95: 20, P99: 20, Max: 20}}},
				SlowestSteps: []SlowAttempt{
					slow(edgeAttempt(retried, 2, 20, edgeUntil.Add(-time.Nanosecond))),
					slow(edgeAttempt(completed, 1, 10, edgeSince)),
				},
			},
		},
		{
			name:    "ties in slowest",
			in:      Input{Since: t0, Until: at(3 * time.Minute), Bucket: time.Hour, Attempts: events(tieE1, tieE2, tieE3, tieE4, tieE5)},
			slowest: 4,
			want: Report{Since: t0, Until: at(3 * time.Minute), Bucket: "1h0m0s",
				Throughput: zeroBuckets(t0, time.Hour, 1), Templates: []TemplateStats{},
				Steps: tieSteps, SlowestSteps: tieSlowest},
		},
		{
			name:    "ties in slowest, other input order",
			in:      Input{Since: t0, Until: at(3 * time.Minute), Bucket: time.Hour, Attempts: events(tieE5, tieE4, tieE3, tieE2, tieE1)},
			slowest: 4,
			want: Report{Since: t0, Until: at(3 * time.Minute), Bucket: "1h0m0s",
				Throughput: zeroBuckets(t0, time.Hour, 1), Templates: []TemplateStats{},
				Steps: tieSteps, SlowestSteps: tieSlowest},
		},
		{
			name: "templates and steps",
			in: Input{Since: t0, Until: at(time.Hour),
				Tasks: []*tasker.Task{
					task("b", "x", "1.0.0", tasker.TaskComplete, at(time.Minute), 100*time.Millisecond),
					task("a", "y", "2.0.0", tasker.TaskError, at(4*time.Minute), 300*time.Millisecond),
					task("a", "y", "10.0.0", tasker.TaskComplete, at(4*time.Minute+30*time.Second), 200*time.Millisecond),
					task("a", "x", "1.0.0", tasker.TaskCancelled, at(59*time.Minute+59*time.Second), -1), // never started
					task("b", "x", "1.0.0", tasker.TaskPending, time.Time{}, -1),
				},
				Attempts: events(append([]attempt{bxFetch, ayCharge2, ayFetch3, ayFetch1, ayCharge1, ayFetch2}, ignored...)...),
			},
			slowest: 3,
			want: Report{Since: t0, Until: at(time.Hour), Bucket: "3m0s", // 60m / 24 = 2m30s, rounded
				Throughput: withBuckets(t0, 3*time.Minute, 20, map[int]Bucket{
					0:  {Completed: 1},
					1:  {Completed: 1, Failed: 1},
					19: {Cancelled: 1},
				}),
				Templates: []TemplateStats{ // versions sort as strings
					{Namespace: "a", Name: "x", Version: "1.0.0", Cancelled: 1, TasksPerMinute: 1.0 / 60},
					{Namespace: "a", Name: "y", Version: "10.0.0", Completed: 1, DurationMS: same(200), TasksPerMinute: 1.0 / 60},
					{Namespace: "a", Name: "y", Version: "2.0.0", Failed: 1, ErrorRate: 1, DurationMS: same(300), TasksPerMinute: 1.0 / 60},
					{Namespace: "b", Name: "x", Version: "1.0.0", Completed: 1, DurationMS: same(100), TasksPerMinute: 1.0 / 60},
				},
				Steps: []StepStats{
					{Namespace: "a", Template: "y", Version: "2.0.0", Step: "charge", Attempts: 2, Succeeded: 1, Failed: 1,
						ErrorRate: 0.5, DurationMS: Percentiles{P50: 0, P95: 50, P99: 50, Max: 50}},
					// the lease_expired failure counts as an attempt but has no duration
					{Namespace: "a", Template: "y", Version: "2.0.0", Step: "fetch", Attempts: 3, Retried: 2, Failed: 1,
						ErrorRate: 1, DurationMS: Percentiles{P50: 500, P95: 700, P99: 700, Max: 700}},
					{Namespace: "b", Template: "x", Version: "1.0.0", Step: "fetch", Attempts: 1, Succeeded: 1,
						DurationMS: same(500)},
				},
				SlowestSteps: []SlowAttempt{slow(ayFetch2), slow(ayFetch1), slow(bxFetch)},
			},
		},
		{
			name: "no slowest list",
			in: Input{Since: t0, Until: at(time.Minute),
				Attempts: events(attempt{name: failed, ns: "n", tmpl: "t", version: "1", step: "s", taskID: "t1", stepID: "s1", n: 1, durMS: 7, class: "permanent", occurred: t0})},
			slowest: 0,
			want: Report{Since: t0, Until: at(time.Minute), Bucket: "1m0s",
				Throughput: zeroBuckets(t0, time.Minute, 1), Templates: []TemplateStats{},
				Steps:        []StepStats{{Namespace: "n", Template: "t", Version: "1", Step: "s", Attempts: 1, Failed: 1, ErrorRate: 1, DurationMS: same(7)}},
				SlowestSteps: []SlowAttempt{}},
		},
		{
			name: "only unmeasured attempts",
			in: Input{Since: t0, Until: at(time.Minute),
				Attempts: events(
					attempt{name: failed, ns: "n", tmpl: "t", version: "1", step: "s", taskID: "t1", stepID: "s1", n: 1, class: "handler", occurred: t0},
					attempt{name: failed, ns: "n", tmpl: "t", version: "1", step: "s", taskID: "t2", stepID: "s2", n: 1, class: "template", occurred: t0},
				)},
			slowest: 5,
			want: Report{Since: t0, Until: at(time.Minute), Bucket: "1m0s",
				Throughput: zeroBuckets(t0, time.Minute, 1), Templates: []TemplateStats{},
				Steps:        []StepStats{{Namespace: "n", Template: "t", Version: "1", Step: "s", Attempts: 2, Failed: 2, ErrorRate: 1}},
				SlowestSteps: []SlowAttempt{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compute(tt.in, tt.slowest)
			if diff := gocmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Compute() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBucketWidth(t *testing.T) {
	tests := []struct {
		name         string
		since, until time.Time
		bucket       time.Duration
		wantWidth    string
		wantFirst    time.Time
		wantBuckets  int
	}{
		{"default of a day", t0, at(24 * time.Hour), 0, "1h0m0s", t0, 24},
		{"default rounds to the minute", t0, at(time.Hour), 0, "3m0s", t0, 20},
		{"default rounds up", t0, at(70 * time.Minute), 0, "3m0s", t0, 24},   // 2m55s
		{"default rounds down", t0, at(80 * time.Minute), 0, "3m0s", t0, 27}, // 3m20s
		{"default is at least a minute", t0, at(6 * time.Minute), 0, "1m0s", t0, 6},
		{"negative is the default", t0, at(24 * time.Hour), -time.Hour, "1h0m0s", t0, 24},
		{"unaligned since", at(7*time.Minute + 30*time.Second), at(20 * time.Minute), 5 * time.Minute, "5m0s", at(5 * time.Minute), 3},
		{"unaligned until", t0, at(10*time.Minute + time.Second), 5 * time.Minute, "5m0s", t0, 3},
		{"bucket wider than the window", at(time.Hour), at(2 * time.Hour), 2 * time.Hour, "2h0m0s", t0, 1},
		{"too many buckets: whole minutes", t0, at(24 * time.Hour), time.Second, "1m0s", t0, 1440},
		{"too many buckets: a week", t0, at(7 * 24 * time.Hour), time.Millisecond, "2m0s", t0, 5040}, // 604800 s / 9999 ≈ 60.5 s, up to 2m
		{"exactly MaxBuckets", t0, at(MaxBuckets * time.Second), time.Second, "1s", t0, MaxBuckets},
		{"empty window", t0, t0, 0, "1m0s", time.Time{}, 0},
		{"until before since", t0, at(-time.Hour), 0, "1m0s", time.Time{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Compute(Input{Since: tt.since, Until: tt.until, Bucket: tt.bucket}, 0)
			if r.Bucket != tt.wantWidth || len(r.Throughput) != tt.wantBuckets {
				t.Fatalf("bucket %s × %d, want %s × %d", r.Bucket, len(r.Throughput), tt.wantWidth, tt.wantBuckets)
			}
			if len(r.Throughput) > MaxBuckets {
				t.Fatalf("%d buckets, more than MaxBuckets", len(r.Throughput))
			}
			if tt.wantBuckets == 0 {
				return
			}
			if !r.Throughput[0].Start.Equal(tt.wantFirst) {
				t.Errorf("first bucket at %v, want %v", r.Throughput[0].Start, tt.wantFirst)
			}
			width, _ := time.ParseDuration(r.Bucket)
			last := r.Throughput[len(r.Throughput)-1].Start
			if last.After(tt.until.Add(-time.Nanosecond)) || !last.Add(width).After(tt.until.Add(-time.Nanosecond)) {
				t.Errorf("last bucket [%v, %v) does not hold until−1ns %v", last, last.Add(width), tt.until.Add(-time.Nanosecond))
			}
			for i := 1; i < len(r.Throughput); i++ {
				if d := r.Throughput[i].Start.Sub(r.Throughput[i-1].Start); d != width {
					t.Fatalf("bucket %d starts %v after the previous one, want %v", i, d, width)
				}
			}
		})
	}
}

func TestPercentiles(t *testing.T) {
	seq := func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = float64(i + 1)
		}
		return out
	}
	tests := []struct {
		name   string
		sorted []float64
		want   Percentiles
	}{
		{"none", nil, Percentiles{}},
		{"one", []float64{42}, same(42)},
		{"1 to 4", seq(4), Percentiles{P50: 2, P95: 4, P99: 4, Max: 4}},
		{"1 to 10", seq(10), Percentiles{P50: 5, P95: 10, P99: 10, Max: 10}},
		{"1 to 11", seq(11), Percentiles{P50: 6, P95: 11, P99: 11, Max: 11}}, // ranks ⌈5.5⌉, ⌈10.45⌉, ⌈10.89⌉
		{"1 to 16", seq(16), Percentiles{P50: 8, P95: 16, P99: 16, Max: 16}}, // ranks 8, ⌈15.2⌉, ⌈15.84⌉
		{"1 to 20", seq(20), Percentiles{P50: 10, P95: 19, P99: 20, Max: 20}},
		{"1 to 100", seq(100), Percentiles{P50: 50, P95: 95, P99: 99, Max: 100}},
		{"1 to 1000", seq(1000), Percentiles{P50: 500, P95: 950, P99: 990, Max: 1000}},
		{"ties", []float64{3, 3, 3, 9}, Percentiles{P50: 3, P95: 9, P99: 9, Max: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := gocmp.Diff(tt.want, percentiles(tt.sorted)); diff != "" {
				t.Errorf("percentiles() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReportJSON(t *testing.T) {
	r := Compute(Input{Since: t0, Until: at(time.Hour), Bucket: time.Hour,
		Tasks: []*tasker.Task{task("shop", "order", "1.0.0", tasker.TaskComplete, at(time.Minute), 2*time.Second)},
		Attempts: events(attempt{name: tasker.EventStepAttemptFailed, ns: "shop", tmpl: "order", version: "1.0.0", step: "charge",
			taskID: "t1", stepID: "s1", n: 1, durMS: 30, class: "timeout", occurred: at(time.Minute)}),
	}, 1)
	got, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"since":"2026-03-01T10:00:00Z","until":"2026-03-01T11:00:00Z","bucket":"1h0m0s",` +
		`"throughput":[{"start":"2026-03-01T10:00:00Z","completed":1,"failed":0,"cancelled":0}],` +
		`"templates":[{"namespace":"shop","name":"order","version":"1.0.0","completed":1,"failed":0,"cancelled":0,"resolved_manually":0,` +
		`"error_rate":0,"duration_ms":{"p50":2000,"p95":2000,"p99":2000,"max":2000},"tasks_per_minute":0.016666666666666666}],` +
		`"steps":[{"namespace":"shop","template":"order","version":"1.0.0","step":"charge","attempts":1,"succeeded":0,"retried":1,"failed":0,` +
		`"error_rate":1,"duration_ms":{"p50":30,"p95":30,"p99":30,"max":30}}],` +
		`"slowest_steps":[{"namespace":"shop","template":"order","version":"1.0.0","step":"charge","task_id":"t1","step_id":"s1",` +
		`"attempt":1,"duration_ms":30,"outcome":"retry","at":"2026-03-01T10:01:00Z"}]}`
	if diff := gocmp.Diff(want, string(got)); diff != "" {
		t.Errorf("JSON mismatch (-want +got):\n%s", diff)
	}

	empty, err := json.Marshal(Compute(Input{Since: t0, Until: t0}, 5))
	if err != nil {
		t.Fatal(err)
	}
	wantEmpty := `{"since":"2026-03-01T10:00:00Z","until":"2026-03-01T10:00:00Z","bucket":"1m0s",` +
		`"throughput":[],"templates":[],"steps":[],"slowest_steps":[]}`
	if diff := gocmp.Diff(wantEmpty, string(empty)); diff != "" {
		t.Errorf("empty JSON mismatch (-want +got):\n%s", diff)
	}
}

// TestComputeDoesNotReorderInput checks that Compute leaves its input as it
// was, since callers may reuse it.
func TestComputeDoesNotReorderInput(t *testing.T) {
	in := benchInput(1000)
	before := append([]tasker.Event(nil), in.Attempts...)
	Compute(in, 10)
	if diff := gocmp.Diff(before, in.Attempts); diff != "" {
		t.Errorf("Compute changed the attempts (-before +after):\n%s", diff)
	}
}

// benchInput returns n attempts and n/10 tasks over a day, spread over 20
// templates of 10 steps.
func benchInput(n int) Input {
	in := Input{Since: t0, Until: at(24 * time.Hour)}
	window := int64(24 * time.Hour)
	names := []tasker.EventName{tasker.EventStepCompleted, tasker.EventStepCompleted, tasker.EventStepCompleted, tasker.EventStepAttemptFailed, tasker.EventStepFailed}
	states := []tasker.TaskState{tasker.TaskComplete, tasker.TaskComplete, tasker.TaskComplete, tasker.TaskError, tasker.TaskCancelled, tasker.TaskResolvedManually}
	in.Attempts = make([]tasker.Event, n)
	for i := range in.Attempts {
		// A cheap deterministic spread: multiplicative hashing of i.
		h := uint64(i) * 0x9E3779B97F4A7C15
		in.Attempts[i] = tasker.Event{
			Name: names[h%uint64(len(names))], Namespace: fmt.Sprintf("ns%d", h%4), TaskName: fmt.Sprintf("tmpl%d", h%20),
			Version: "1.0.0", StepName: fmt.Sprintf("step%d", (h>>8)%10),
			TaskID: fmt.Sprintf("task%d", i/5), StepID: fmt.Sprintf("step%d", i), Attempt: int(h>>16)%3 + 1,
			ExecutionDurationMS: int64((h >> 20) % 60_000), OccurredAt: t0.Add(time.Duration(int64(h>>24) % window)),
		}
	}
	in.Tasks = make([]*tasker.Task, n/10)
	for i := range in.Tasks {
		h := uint64(i) * 0x9E3779B97F4A7C15
		finished := t0.Add(time.Duration(int64(h>>24) % window))
		in.Tasks[i] = task(fmt.Sprintf("ns%d", h%4), fmt.Sprintf("tmpl%d", h%20), "1.0.0", states[h%uint64(len(states))],
			finished, time.Duration((h>>20)%600_000)*time.Millisecond)
	}
	return in
}

func BenchmarkCompute(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		in := benchInput(n)
		b.Run(fmt.Sprintf("attempts=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Compute(in, 20)
			}
		})
	}
}

// TestSlowestMatchesSort checks the slowest list against a full sort, on
// input with many ties.
func TestSlowestMatchesSort(t *testing.T) {
	in := benchInput(3000)
	for i := range in.Attempts {
		in.Attempts[i].ExecutionDurationMS %= 50 // many ties
		if i%7 == 0 {
			in.Attempts[i].OccurredAt = t0.Add(time.Hour) // ties on At too
		}
	}
	var all []SlowAttempt
	for _, e := range in.Attempts {
		if e.OccurredAt.Before(in.Since) || !e.OccurredAt.Before(in.Until) || !measuredAttempt(&e) {
			continue
		}
		all = append(all, SlowAttempt{Namespace: e.Namespace, Template: e.TaskName, Version: e.Version, Step: e.StepName,
			TaskID: e.TaskID, StepID: e.StepID, Attempt: e.Attempt, DurationMS: e.ExecutionDurationMS,
			Outcome: outcome(e.Name), At: e.OccurredAt})
	}
	slices.SortFunc(all, func(a, b SlowAttempt) int {
		return cmp.Or(cmp.Compare(b.DurationMS, a.DurationMS), a.At.Compare(b.At),
			cmp.Compare(a.TaskID, b.TaskID), cmp.Compare(a.StepID, b.StepID), cmp.Compare(a.Attempt, b.Attempt))
	})
	for _, k := range []int{1, 2, 7, 100, len(all), len(all) + 10} {
		got := Compute(in, k).SlowestSteps
		if diff := gocmp.Diff(all[:min(k, len(all))], got); diff != "" {
			t.Errorf("slowest %d mismatch (-want +got):\n%s", k, diff)
		}
	}
}
