package telemetry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tasker-go/tasker"
)

const (
	taskID   = "01936f5e-7c3a-7b2c-8d4e-5f6a7b8c9d0e" // a UUIDv7
	fetchID  = "01936f5e-7c3a-7b2c-8d4e-000000000001"
	notifyID = "01936f5e-7c3a-7b2c-8d4e-000000000002"
)

type fakeTasks struct {
	mu    sync.Mutex
	tasks map[string]*tasker.Task
	calls int
}

func (f *fakeTasks) Task(ctx context.Context, id string) (*tasker.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("Task called without a deadline")
	}
	if t, ok := f.tasks[id]; ok {
		return t, nil
	}
	return nil, errors.New("task not found")
}

func newRecorder() (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithIDGenerator(NewIDGenerator()))
	return rec, tp
}

// taskEvents is the life of a task of two steps: fetch fails once and
// succeeds on its retry, then notify succeeds, then the task completes.
// The events are split by the process that publishes them: the worker
// process "a" claims and runs fetch, the worker process "b" runs notify and
// finalizes the task.
func taskEvents() (a, b []tasker.Event) {
	ms := time.Millisecond
	a = []tasker.Event{
		ev(tasker.EventTaskInitializeRequested, taskID, 0, states("", "pending")),
		ev(tasker.EventStepInitializeRequested, taskID, 0, step(fetchID, "fetch", 0), states("", "pending")),
		ev(tasker.EventStepInitializeRequested, taskID, 0, step(notifyID, "notify", 0), states("", "pending")),
		ev(tasker.EventTaskStartRequested, taskID, 0, states("pending", "in_progress")),
		ev(tasker.EventWorkflowViableStepsDiscovered, taskID, 0),
		ev(tasker.EventStepExecutionRequested, taskID, 10*ms, step(fetchID, "fetch", 1), states("pending", "in_progress"),
			func(e *tasker.Event) { e.Data = map[string]any{"worker": "host-a/1/x", "lease_token": int64(1)} }),
		ev(tasker.EventStepAttemptFailed, taskID, 1000*ms, step(fetchID, "fetch", 1), states("in_progress", "waiting_for_retry"),
			dur(800), fail("retryable", "connection refused"),
			func(e *tasker.Event) { e.Data = map[string]any{"worker": "host-a/1/x", "lease_token": int64(1)} }),
		ev(tasker.EventStepHandled, taskID, 1000*ms, step(fetchID, "fetch", 1), dur(800), fail("retryable", "connection refused")),
		ev(tasker.EventStepBackoff, taskID, 1000*ms, step(fetchID, "fetch", 1), fail("retryable", "connection refused")),
		ev(tasker.EventStepExecutionRequested, taskID, 3000*ms, step(fetchID, "fetch", 2), states("waiting_for_retry", "in_progress")),
		ev(tasker.EventStepCompleted, taskID, 3500*ms, step(fetchID, "fetch", 2), states("in_progress", "complete"), dur(450),
			func(e *tasker.Event) { e.Data = map[string]any{"worker": "host-a/1/x", "lease_token": int64(2)} }),
		ev(tasker.EventWorkflowViableStepsDiscovered, taskID, 3500*ms),
	}
	b = []tasker.Event{
		ev(tasker.EventStepExecutionRequested, taskID, 3600*ms, step(notifyID, "notify", 1), states("pending", "in_progress")),
		ev(tasker.EventStepCompleted, taskID, 3900*ms, step(notifyID, "notify", 1), states("in_progress", "complete"), dur(250)),
		ev(tasker.EventWorkflowNoViableSteps, taskID, 3900*ms),
		ev(tasker.EventTaskCompleted, taskID, 3900*ms, states("in_progress", "complete")),
		ev(tasker.EventWorkflowTaskFinalized, taskID, 3900*ms),
	}
	return a, b
}

func theTask() *tasker.Task {
	return &tasker.Task{ID: taskID, Namespace: "shop", Name: "order", Version: "1.0.0", State: tasker.TaskComplete,
		StepsTotal: 2, StepsDone: 2, CreatedAt: t0, StartedAt: t0, FinishedAt: t0.Add(3900 * time.Millisecond)}
}

// spanView is what the tests check of a span.
type spanView struct {
	Name          string
	TraceID       trace.TraceID
	SpanID        trace.SpanID
	Parent        trace.SpanID
	ParentRemote  bool
	Start, End    time.Time
	Status        codes.Code
	StatusMessage string
	Attrs         map[string]any
	Events        []string
}

func view(s sdktrace.ReadOnlySpan) spanView {
	v := spanView{
		Name: s.Name(), TraceID: s.SpanContext().TraceID(), SpanID: s.SpanContext().SpanID(),
		Parent: s.Parent().SpanID(), ParentRemote: s.Parent().IsRemote(),
		Start: s.StartTime(), End: s.EndTime(), Status: s.Status().Code, StatusMessage: s.Status().Description,
		Attrs: map[string]any{},
	}
	for _, kv := range s.Attributes() {
		v.Attrs[string(kv.Key)] = kv.Value.AsInterface()
	}
	for _, e := range s.Events() {
		parts := []string{e.Name, e.Time.Sub(t0).String()}
		for _, kv := range e.Attributes {
			parts = append(parts, string(kv.Key)+"="+kv.Value.String())
		}
		v.Events = append(v.Events, strings.Join(parts, " "))
	}
	return v
}

func views(rec *tracetest.SpanRecorder) []spanView {
	var out []spanView
	for _, s := range rec.Ended() {
		out = append(out, view(s))
	}
	return out
}

func TestTracerSpans(t *testing.T) {
	rec, tp := newRecorder()
	tasks := &fakeTasks{tasks: map[string]*tasker.Task{taskID: theTask()}}
	tr := NewTracer(tp, tasks)
	a, b := taskEvents()
	sub := make(chan tasker.Event, len(a)+len(b))
	for _, e := range slices.Concat(a, b) {
		sub <- e
	}
	close(sub)
	tr.Run(context.Background(), sub)

	traceID := trace.TraceID(uuid.MustParse(taskID))
	taskSpan := TaskSpanID(taskID)
	ms := time.Millisecond
	stepAttrs := func(stepID, name string, attempt int, state string) map[string]any {
		return map[string]any{
			"tasker.task_id": taskID, "tasker.step_id": stepID, "tasker.step_name": name,
			"tasker.attempt": int64(attempt), "tasker.retry_limit": int64(3),
			"tasker.namespace": "shop", "tasker.template": "order", "tasker.version": "1.0.0",
			"tasker.state": state,
		}
	}
	withAttrs := func(m map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	want := []spanView{
		{
			Name: "step fetch", TraceID: traceID, SpanID: StepAttemptSpanID(fetchID, 1), Parent: taskSpan, ParentRemote: true,
			Start: t0.Add(200 * ms), End: t0.Add(1000 * ms), Status: codes.Error, StatusMessage: "connection refused",
			Attrs: withAttrs(stepAttrs(fetchID, "fetch", 1, "waiting_for_retry"),
				"tasker.worker", "host-a/1/x", "tasker.error_class", "retryable"),
			Events: []string{"exception 1s exception.message=connection refused exception.type=retryable"},
		},
		{
			Name: "step fetch", TraceID: traceID, SpanID: StepAttemptSpanID(fetchID, 2), Parent: taskSpan, ParentRemote: true,
			Start: t0.Add(3050 * ms), End: t0.Add(3500 * ms),
			Attrs: withAttrs(stepAttrs(fetchID, "fetch", 2, "complete"), "tasker.worker", "host-a/1/x"),
		},
		{
			Name: "step notify", TraceID: traceID, SpanID: StepAttemptSpanID(notifyID, 1), Parent: taskSpan, ParentRemote: true,
			Start: t0.Add(3650 * ms), End: t0.Add(3900 * ms),
			Attrs: stepAttrs(notifyID, "notify", 1, "complete"),
		},
		{
			Name: "task shop/order", TraceID: traceID, SpanID: taskSpan,
			Start: t0, End: t0.Add(3900 * ms),
			Attrs: map[string]any{
				"tasker.task_id": taskID, "tasker.namespace": "shop", "tasker.template": "order", "tasker.version": "1.0.0",
				"tasker.state": "complete", "tasker.steps_total": int64(2), "tasker.steps_done": int64(2),
			},
		},
	}
	if diff := cmp.Diff(want, views(rec)); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
	if tasks.calls != 1 {
		t.Errorf("TaskReader called %d times, want 1", tasks.calls)
	}
	if n := tr.claims.len() + tr.starts.len(); n != 0 {
		t.Errorf("%d claims or starts still remembered, want 0", n)
	}
	// The ids are the documented hashes.
	h := sha256.Sum256([]byte("task:" + taskID))
	if !bytes.Equal(taskSpan[:], h[:8]) {
		t.Errorf("TaskSpanID = %x, want %x", taskSpan, h[:8])
	}
	h = sha256.Sum256([]byte(fetchID + ":2"))
	if id := StepAttemptSpanID(fetchID, 2); !bytes.Equal(id[:], h[:8]) {
		t.Errorf("StepAttemptSpanID = %x, want %x", id, h[:8])
	}
}

// Two processes each see their own share of a task's events; their spans
// form one trace without any propagation.
func TestTracerTwoProcessesAgree(t *testing.T) {
	a, b := taskEvents()
	tasks := &fakeTasks{tasks: map[string]*tasker.Task{taskID: theTask()}}
	recA, tpA := newRecorder()
	recB, tpB := newRecorder()
	trA, trB := NewTracer(tpA, tasks), NewTracer(tpB, tasks)
	for _, e := range a {
		trA.Observe(e)
	}
	for _, e := range b {
		trB.Observe(e)
	}
	spansA, spansB := recA.Ended(), recB.Ended()
	if len(spansA) != 2 || len(spansB) != 2 {
		t.Fatalf("process a emitted %d spans, b %d; want 2 and 2", len(spansA), len(spansB))
	}
	taskSpan := spansB[1] // b finalized the task
	if taskSpan.Name() != "task shop/order" {
		t.Fatalf("b's last span is %q, want the task span", taskSpan.Name())
	}
	for _, s := range slices.Concat(spansA, spansB[:1]) {
		if s.SpanContext().TraceID() != taskSpan.SpanContext().TraceID() {
			t.Errorf("%s: trace id %s, want the task's %s", s.Name(), s.SpanContext().TraceID(), taskSpan.SpanContext().TraceID())
		}
		if s.Parent().SpanID() != taskSpan.SpanContext().SpanID() {
			t.Errorf("%s: parent %s, want the task span %s", s.Name(), s.Parent().SpanID(), taskSpan.SpanContext().SpanID())
		}
	}

	// Replaying every event in a third process gives the same ids.
	recC, tpC := newRecorder()
	trC := NewTracer(tpC, tasks)
	for _, e := range slices.Concat(a, b) {
		trC.Observe(e)
	}
	ids := func(spans ...sdktrace.ReadOnlySpan) []string {
		var out []string
		for _, s := range spans {
			out = append(out, s.SpanContext().TraceID().String()+"/"+s.SpanContext().SpanID().String()+"<"+s.Parent().SpanID().String())
		}
		return out
	}
	if diff := cmp.Diff(ids(slices.Concat(spansA, spansB)...), ids(recC.Ended()...)); diff != "" {
		t.Errorf("ids differ between processes (-a,b +c):\n%s", diff)
	}
}

func TestTracerFailures(t *testing.T) {
	rec, tp := newRecorder()
	// The TaskReader fails: the task span starts at the task.start_requested
	// this process saw.
	tr := NewTracer(tp, &fakeTasks{})
	const id = "01936f5e-7c3a-7b2c-8d4e-5f6a7b8c9dff"
	events := []tasker.Event{
		ev(tasker.EventTaskStartRequested, id, time.Second),
		// The lease of the last attempt expired: no duration, the span
		// starts at the claim.
		ev(tasker.EventStepExecutionRequested, id, 2*time.Second, step(fetchID, "fetch", 3)),
		ev(tasker.EventStepFailed, id, 9*time.Second, step(fetchID, "fetch", 3), states("in_progress", "error"),
			fail("lease_expired", "lease expired"),
			func(e *tasker.Event) { e.Data = map[string]any{"reason": "lease expired"} }),
		// A permanent failure whose claim this process did not see.
		ev(tasker.EventStepFailed, id, 9*time.Second, step(notifyID, "notify", 1), states("in_progress", "error"),
			dur(30), fail("permanent", "card declined"),
			func(e *tasker.Event) { e.Data = map[string]any{"permanent": true} }),
		// step.failed not from in_progress is not an attempt (none is written today).
		ev(tasker.EventStepFailed, id, 9*time.Second, step(notifyID, "other", 1), states("pending", "error")),
		ev(tasker.EventTaskFailed, id, 10*time.Second, states("in_progress", "error"), fail("blocked", "steps failed: fetch, notify"),
			func(e *tasker.Event) { e.Data = map[string]any{"failed_steps": []string{"fetch", "notify"}} }),
	}
	var logs bytes.Buffer
	tr.WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	for _, e := range events {
		tr.Observe(e)
	}
	got := views(rec)
	if len(got) != 3 {
		t.Fatalf("%d spans, want 3: %+v", len(got), got)
	}
	lease, perm, task := got[0], got[1], got[2]
	if !lease.Start.Equal(t0.Add(2*time.Second)) || !lease.End.Equal(t0.Add(9*time.Second)) ||
		lease.Status != codes.Error || lease.StatusMessage != "lease expired" ||
		lease.Attrs["tasker.error_class"] != "lease_expired" || lease.Attrs["tasker.start_inferred"] != true {
		t.Errorf("lease-expired attempt span: %+v", lease)
	}
	if !perm.Start.Equal(t0.Add(9*time.Second-30*time.Millisecond)) || perm.Status != codes.Error ||
		perm.Attrs["tasker.permanent"] != true || perm.Attrs["tasker.error_class"] != "permanent" {
		t.Errorf("permanent failure span: %+v", perm)
	}
	wantTask := spanView{
		Name: "task shop/order", TraceID: TaskTraceID(id), SpanID: TaskSpanID(id),
		Start: t0.Add(time.Second), End: t0.Add(10 * time.Second),
		Status: codes.Error, StatusMessage: "steps failed: fetch, notify",
		Attrs: map[string]any{
			"tasker.task_id": id, "tasker.namespace": "shop", "tasker.template": "order", "tasker.version": "1.0.0",
			"tasker.state": "error", "tasker.error_class": "blocked", "tasker.failed_steps": []string{"fetch", "notify"},
		},
		Events: []string{"exception 10s exception.message=steps failed: fetch, notify exception.type=blocked"},
	}
	if diff := cmp.Diff(wantTask, task); diff != "" {
		t.Errorf("task span (-want +got):\n%s", diff)
	}
	if !strings.Contains(logs.String(), "read task for its span") {
		t.Errorf("the TaskReader error was not logged: %q", logs.String())
	}
}

func TestTracerCancelledBeforeStart(t *testing.T) {
	rec, tp := newRecorder()
	const id = "01936f5e-7c3a-7b2c-8d4e-5f6a7b8c9d01"
	tasks := &fakeTasks{tasks: map[string]*tasker.Task{id: {ID: id, CreatedAt: t0, State: tasker.TaskCancelled}}}
	tr := NewTracer(tp, tasks)
	tr.Observe(ev(tasker.EventStepExecutionRequested, id, time.Second, step(fetchID, "fetch", 1)))
	tr.Observe(ev(tasker.EventStepCancelled, id, 2*time.Second, step(fetchID, "fetch", 1), states("in_progress", "cancelled")))
	tr.Observe(ev(tasker.EventTaskCancelled, id, 2*time.Second, states("pending", "cancelled"),
		func(e *tasker.Event) { e.Data = map[string]any{"reason": "operator"} }))
	got := views(rec)
	if len(got) != 1 {
		t.Fatalf("%d spans, want only the task's: %+v", len(got), got)
	}
	if s := got[0]; !s.Start.Equal(t0) || s.Status != codes.Unset || s.Attrs["tasker.reason"] != "operator" || s.Attrs["tasker.state"] != "cancelled" {
		t.Errorf("cancelled task span: %+v", s)
	}
	if n := tr.claims.len(); n != 0 {
		t.Errorf("%d claims remembered after the cancellation, want 0", n)
	}
}

func TestTaskTraceIDNotUUID(t *testing.T) {
	h := sha256.Sum256([]byte("trace:not-a-uuid"))
	if id := TaskTraceID("not-a-uuid"); !bytes.Equal(id[:], h[:16]) {
		t.Errorf("TaskTraceID(not-a-uuid) = %s, want %x", id, h[:16])
	}
	if id := TaskTraceID(uuid.Nil.String()); !id.IsValid() {
		t.Error("TaskTraceID of the nil UUID is invalid")
	}
	if id := TaskTraceID(taskID); id.String() != strings.ReplaceAll(taskID, "-", "") {
		t.Errorf("TaskTraceID(%s) = %s", taskID, id)
	}
}

// Spans started by other code on the same provider get random ids.
func TestIDGeneratorFallsBackToRandom(t *testing.T) {
	rec, tp := newRecorder()
	tracer := tp.Tracer("other")
	ctx, root := tracer.Start(context.Background(), "root")
	_, child := tracer.Start(ctx, "child")
	child.End()
	root.End()
	_, again := tracer.Start(context.Background(), "root2")
	again.End()
	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	child0, root0, root2 := spans[0].SpanContext(), spans[1].SpanContext(), spans[2].SpanContext()
	if !root0.IsValid() || !child0.IsValid() || child0.TraceID() != root0.TraceID() || child0.SpanID() == root0.SpanID() {
		t.Errorf("root %v child %v", root0, child0)
	}
	if root2.TraceID() == root0.TraceID() {
		t.Error("two roots got the same trace id")
	}

	// Asked-for ids for another trace are not used for a child span.
	gen := NewIDGenerator()
	want := wantIDs{traceID: TaskTraceID(taskID), spanID: TaskSpanID(taskID)}
	wctx := context.WithValue(context.Background(), wantIDsKey{}, want)
	if sid := gen.NewSpanID(wctx, TaskTraceID("other")); sid == want.spanID || !sid.IsValid() {
		t.Errorf("NewSpanID for another trace = %s", sid)
	}
	if tid, sid := gen.NewIDs(wctx); tid != want.traceID || sid != want.spanID {
		t.Errorf("NewIDs = %s %s, want %s %s", tid, sid, want.traceID, want.spanID)
	}
}

func TestTracerOff(t *testing.T) {
	var nilSDK *sdktrace.TracerProvider
	for name, tp := range map[string]trace.TracerProvider{"nil": nil, "nil sdk": nilSDK} {
		tr := NewTracer(tp, nil)
		if tr.Enabled() {
			t.Errorf("%s: tracer enabled", name)
		}
		a, b := taskEvents()
		for _, e := range slices.Concat(a, b) {
			tr.Observe(e) // must not panic
		}
	}
	// A no-op provider is not warned about.
	var logs bytes.Buffer
	tr := NewTracer(noop.NewTracerProvider(), nil).WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	a, b := taskEvents()
	for _, e := range slices.Concat(a, b) {
		tr.Observe(e)
	}
	if logs.Len() != 0 {
		t.Errorf("logs with a no-op provider: %s", logs.String())
	}
}

func TestTracerWarnsWithoutIDGenerator(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)) // random ids
	var logs bytes.Buffer
	tr := NewTracer(tp, nil).WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	a, b := taskEvents()
	for _, e := range slices.Concat(a, b) {
		tr.Observe(e)
	}
	if n := strings.Count(logs.String(), "does not use telemetry.NewIDGenerator"); n != 1 {
		t.Errorf("warned %d times, want once: %s", n, logs.String())
	}
	if len(rec.Ended()) != 4 {
		t.Errorf("%d spans, want 4", len(rec.Ended()))
	}
}

func TestTracerInMemoryExporter(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithIDGenerator(NewIDGenerator()))
	tr := NewTracer(tp, &fakeTasks{tasks: map[string]*tasker.Task{taskID: theTask()}})
	a, b := taskEvents()
	for _, e := range slices.Concat(a, b) {
		tr.Observe(e)
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	stubs := exp.GetSpans()
	if len(stubs) != 4 {
		t.Fatalf("%d spans exported, want 4", len(stubs))
	}
	want := map[string]bool{}
	for _, s := range stubs {
		want[s.SpanContext.SpanID().String()] = true
		if s.SpanContext.TraceID() != TaskTraceID(taskID) {
			t.Errorf("%s: trace id %s", s.Name, s.SpanContext.TraceID())
		}
	}
	for _, id := range []trace.SpanID{TaskSpanID(taskID), StepAttemptSpanID(fetchID, 1), StepAttemptSpanID(fetchID, 2), StepAttemptSpanID(notifyID, 1)} {
		if !want[id.String()] {
			t.Errorf("span %s not exported", id)
		}
	}
	if got := attribute.NewSet(stubs[3].Attributes...); got.Len() == 0 {
		t.Error("task span has no attributes")
	}
}
