package telemetry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasker-go/tasker"
)

// TaskReader reads a task, for the start time of its span. A
// *tasker.Client satisfies it.
type TaskReader interface {
	Task(ctx context.Context, id string) (*tasker.Task, error)
}

// instrumentationName names the tracer of the spans Tracer emits.
const instrumentationName = "github.com/tasker-go/tasker"

// readTimeout bounds the TaskReader call made for a task span.
const readTimeout = 5 * time.Second

// Span attribute keys.
const (
	attrTaskID       = attribute.Key("tasker.task_id")
	attrStepID       = attribute.Key("tasker.step_id")
	attrStepName     = attribute.Key("tasker.step_name")
	attrAttempt      = attribute.Key("tasker.attempt")
	attrRetryLimit   = attribute.Key("tasker.retry_limit")
	attrNamespace    = attribute.Key("tasker.namespace")
	attrTemplate     = attribute.Key("tasker.template")
	attrVersion      = attribute.Key("tasker.version")
	attrState        = attribute.Key("tasker.state")
	attrErrorClass   = attribute.Key("tasker.error_class")
	attrWorker       = attribute.Key("tasker.worker")
	attrReason       = attribute.Key("tasker.reason")
	attrFailedSteps  = attribute.Key("tasker.failed_steps")
	attrStepsTotal   = attribute.Key("tasker.steps_total")
	attrStepsDone    = attribute.Key("tasker.steps_done")
	attrPermanent    = attribute.Key("tasker.permanent")
	attrTimeInferred = attribute.Key("tasker.start_inferred")
)

// TaskTraceID returns the trace id of a task: the 16 bytes of its UUID, or,
// when the id is not a UUID, the first 16 bytes of SHA-256("trace:"+taskID).
func TaskTraceID(taskID string) trace.TraceID {
	if u, err := uuid.Parse(taskID); err == nil && u != uuid.Nil {
		return trace.TraceID(u)
	}
	var id trace.TraceID
	h := sha256.Sum256([]byte("trace:" + taskID))
	copy(id[:], h[:])
	if !id.IsValid() {
		id[len(id)-1] = 1
	}
	return id
}

// TaskSpanID returns the span id of a task's span: the first 8 bytes of
// SHA-256("task:"+taskID).
func TaskSpanID(taskID string) trace.SpanID {
	return hashSpanID("task:" + taskID)
}

// StepAttemptSpanID returns the span id of one attempt of a step: the first
// 8 bytes of SHA-256(stepID+":"+attempt), attempt in decimal.
func StepAttemptSpanID(stepID string, attempt int) trace.SpanID {
	return hashSpanID(stepID + ":" + strconv.Itoa(attempt))
}

func hashSpanID(s string) trace.SpanID {
	var id trace.SpanID
	h := sha256.Sum256([]byte(s))
	copy(id[:], h[:])
	if !id.IsValid() {
		id[len(id)-1] = 1
	}
	return id
}

// wantIDsKey is the context key under which Tracer passes the ids of the
// span it is about to start to the IDGenerator.
type wantIDsKey struct{}

type wantIDs struct {
	traceID trace.TraceID
	spanID  trace.SpanID
}

// NewIDGenerator returns the sdktrace.IDGenerator the TracerProvider given
// to NewTracer must use (sdktrace.WithIDGenerator): it gives the spans of
// Tracer their deterministic ids, and random ids to every other span.
// NewTracerProvider installs it.
func NewIDGenerator() sdktrace.IDGenerator { return idGenerator{} }

type idGenerator struct{}

// NewIDs returns the ids Tracer asked for in ctx, or random ids.
func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if w, ok := ctx.Value(wantIDsKey{}).(wantIDs); ok && w.traceID.IsValid() && w.spanID.IsValid() {
		return w.traceID, w.spanID
	}
	return randomTraceID(), randomSpanID()
}

// NewSpanID returns the span id Tracer asked for in ctx when the trace id
// matches, or a random span id.
func (idGenerator) NewSpanID(ctx context.Context, traceID trace.TraceID) trace.SpanID {
	if w, ok := ctx.Value(wantIDsKey{}).(wantIDs); ok && w.traceID == traceID && w.spanID.IsValid() {
		return w.spanID
	}
	return randomSpanID()
}

func randomTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		_, _ = rand.Read(id[:])
	}
	return id
}

func randomSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		_, _ = rand.Read(id[:])
	}
	return id
}

// Tracer turns events into OpenTelemetry spans: one span per task and a
// child span per step attempt. The spans are emitted after the fact, when
// the task or the attempt ends, with explicit timestamps and deterministic
// ids (TaskTraceID, TaskSpanID, StepAttemptSpanID), so that spans emitted by
// different processes for the same task form one trace without any context
// propagation. The TracerProvider must use NewIDGenerator for the ids to
// apply. Its methods are safe for concurrent use.
type Tracer struct {
	tracer trace.Tracer // nil: tracing off
	tasks  TaskReader
	log    *slog.Logger

	// starts remembers when each task started (task.start_requested), in
	// case the TaskReader cannot tell; claims remembers when each attempt
	// was claimed (step.execution_requested), for attempts that end without
	// a handler duration.
	starts *timeMap
	claims *timeMap

	warned atomic.Bool
}

// NewTracer returns a Tracer that emits spans through tp, reading task start
// times with tasks (which may be nil: the start is then the time of the
// task.start_requested event seen by this process, if any). A nil tp,
// including a nil *sdktrace.TracerProvider as returned by NewTracerProvider
// when tracing is off, gives a Tracer that does nothing.
func NewTracer(tp trace.TracerProvider, tasks TaskReader) *Tracer {
	t := &Tracer{
		tasks:  tasks,
		log:    slog.New(slog.DiscardHandler),
		starts: newTimeMap(maxTracked),
		claims: newTimeMap(maxTracked),
	}
	if sdk, ok := tp.(*sdktrace.TracerProvider); tp != nil && (!ok || sdk != nil) {
		t.tracer = tp.Tracer(instrumentationName)
	}
	return t
}

// WithLogger sets the logger (default: discard) and returns t. Call it
// before the Tracer is used.
func (t *Tracer) WithLogger(l *slog.Logger) *Tracer {
	if l != nil {
		t.log = l
	}
	return t
}

// Enabled reports whether the Tracer emits spans.
func (t *Tracer) Enabled() bool { return t.tracer != nil }

// EventNames returns the event name patterns Tracer uses, for
// tasker.SubscribeOpts.Names. Observe ignores every other event.
func (t *Tracer) EventNames() []string {
	return []string{
		string(tasker.EventTaskStartRequested), string(tasker.EventTaskCompleted),
		string(tasker.EventTaskFailed), string(tasker.EventTaskCancelled),
		string(tasker.EventStepExecutionRequested), string(tasker.EventStepCompleted),
		string(tasker.EventStepAttemptFailed), string(tasker.EventStepFailed),
		string(tasker.EventStepRescued), string(tasker.EventStepCancelled),
	}
}

// Run observes the events of sub until ctx is done or sub is closed.
func (t *Tracer) Run(ctx context.Context, sub <-chan tasker.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub:
			if !ok {
				return
			}
			t.observe(ctx, ev)
		}
	}
}

// Observe emits the span that ev ends, if any: a step attempt's span on
// step.completed, step.attempt_failed and step.failed (from in_progress),
// a task's span on task.completed, task.failed and task.cancelled.
func (t *Tracer) Observe(ev tasker.Event) { t.observe(context.Background(), ev) }

func (t *Tracer) observe(ctx context.Context, ev tasker.Event) {
	if t.tracer == nil {
		return
	}
	switch ev.Name {
	case tasker.EventTaskStartRequested:
		t.starts.set(ev.TaskID, ev.OccurredAt)
	case tasker.EventStepExecutionRequested:
		t.claims.set(attemptKey(ev), ev.OccurredAt)
	case tasker.EventStepCompleted, tasker.EventStepAttemptFailed:
		t.stepSpan(ctx, ev)
	case tasker.EventStepFailed:
		if ev.FromState == string(tasker.StepInProgress) {
			t.stepSpan(ctx, ev)
		}
	case tasker.EventStepRescued, tasker.EventStepCancelled:
		// The attempt ends without an outcome: no span, forget its claim.
		t.claims.take(attemptKey(ev))
	case tasker.EventTaskCompleted, tasker.EventTaskFailed, tasker.EventTaskCancelled:
		t.taskSpan(ctx, ev)
	}
}

func attemptKey(ev tasker.Event) string { return ev.StepID + ":" + strconv.Itoa(ev.Attempt) }

// stepSpan emits the span of the attempt that ev ends.
func (t *Tracer) stepSpan(ctx context.Context, ev tasker.Event) {
	if ev.StepID == "" {
		return
	}
	end := ev.OccurredAt
	start := end.Add(-time.Duration(ev.ExecutionDurationMS) * time.Millisecond)
	claimedAt, claimed := t.claims.take(attemptKey(ev))
	inferred := false
	if !handlerRan(ev) && ev.ExecutionDurationMS == 0 && claimed && claimedAt.Before(end) {
		// No handler duration (the lease expired): the attempt lasted from
		// its claim, when this process saw it.
		start, inferred = claimedAt, true
	}
	traceID := TaskTraceID(ev.TaskID)
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: TaskSpanID(ev.TaskID), TraceFlags: trace.FlagsSampled, Remote: true,
	})
	want := wantIDs{traceID: traceID, spanID: StepAttemptSpanID(ev.StepID, ev.Attempt)}
	ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	ctx = context.WithValue(ctx, wantIDsKey{}, want)

	attrs := []attribute.KeyValue{
		attrTaskID.String(ev.TaskID), attrStepID.String(ev.StepID), attrStepName.String(ev.StepName),
		attrAttempt.Int(ev.Attempt), attrNamespace.String(ev.Namespace), attrTemplate.String(ev.TaskName),
		attrVersion.String(ev.Version), attrState.String(ev.ToState),
	}
	if ev.RetryLimit > 0 {
		attrs = append(attrs, attrRetryLimit.Int(ev.RetryLimit))
	}
	if w, ok := ev.Data["worker"].(string); ok && w != "" {
		attrs = append(attrs, attrWorker.String(w))
	}
	if p, ok := ev.Data["permanent"].(bool); ok && p {
		attrs = append(attrs, attrPermanent.Bool(true))
	}
	if inferred {
		attrs = append(attrs, attrTimeInferred.Bool(true))
	}
	_, span := t.tracer.Start(ctx, "step "+ev.StepName,
		trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	t.checkIDs(span, want)
	if ev.Name != tasker.EventStepCompleted {
		t.setError(span, ev, end)
	}
	span.End(trace.WithTimestamp(end))
}

// taskSpan emits the span of the task that ev ends.
func (t *Tracer) taskSpan(ctx context.Context, ev tasker.Event) {
	end := ev.OccurredAt
	var task *tasker.Task
	if t.tasks != nil {
		rctx, cancel := context.WithTimeout(ctx, readTimeout)
		got, err := t.tasks.Task(rctx, ev.TaskID)
		cancel()
		if err != nil {
			t.log.WarnContext(ctx, "telemetry: read task for its span", "task_id", ev.TaskID, "err", err)
		} else {
			task = got
		}
	}
	seenStart, seen := t.starts.take(ev.TaskID)
	var start time.Time
	switch {
	case task != nil && !task.StartedAt.IsZero():
		start = task.StartedAt
	case task != nil && !task.CreatedAt.IsZero():
		start = task.CreatedAt // cancelled before it started
	case seen:
		start = seenStart
	default:
		start = end
	}
	if start.After(end) {
		start = end
	}
	want := wantIDs{traceID: TaskTraceID(ev.TaskID), spanID: TaskSpanID(ev.TaskID)}
	ctx = context.WithValue(ctx, wantIDsKey{}, want)

	attrs := []attribute.KeyValue{
		attrTaskID.String(ev.TaskID), attrNamespace.String(ev.Namespace), attrTemplate.String(ev.TaskName),
		attrVersion.String(ev.Version), attrState.String(ev.ToState),
	}
	if task != nil {
		attrs = append(attrs, attrStepsTotal.Int(task.StepsTotal), attrStepsDone.Int(task.StepsDone))
	}
	if steps, ok := ev.Data["failed_steps"].([]string); ok && len(steps) > 0 {
		attrs = append(attrs, attrFailedSteps.StringSlice(steps))
	}
	if r, ok := ev.Data["reason"].(string); ok && r != "" {
		attrs = append(attrs, attrReason.String(r))
	}
	_, span := t.tracer.Start(ctx, "task "+ev.Namespace+"/"+ev.TaskName, trace.WithNewRoot(),
		trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	t.checkIDs(span, want)
	if ev.Name == tasker.EventTaskFailed {
		t.setError(span, ev, end)
	}
	span.End(trace.WithTimestamp(end))
}

// setError marks span as failed with the event's error.
func (t *Tracer) setError(span trace.Span, ev tasker.Event, at time.Time) {
	msg := ev.ErrorMessage
	if msg == "" {
		msg = ev.ErrorClass
	}
	span.SetStatus(codes.Error, msg)
	if ev.ErrorClass != "" {
		span.SetAttributes(attrErrorClass.String(ev.ErrorClass))
	}
	if ev.ErrorMessage != "" {
		eattrs := []attribute.KeyValue{semconv.ExceptionMessage(ev.ErrorMessage)}
		if ev.ErrorClass != "" {
			eattrs = append(eattrs, semconv.ExceptionType(ev.ErrorClass))
		}
		span.AddEvent("exception", trace.WithTimestamp(at), trace.WithAttributes(eattrs...))
	}
}

// checkIDs warns once when a recording span (checked before it ends) did
// not get the ids asked for: the TracerProvider does not use
// NewIDGenerator. Non-recording spans (a no-op provider, sampled out) are
// not checked.
func (t *Tracer) checkIDs(span trace.Span, want wantIDs) {
	if !span.IsRecording() {
		return
	}
	if sc := span.SpanContext(); sc.TraceID() == want.traceID && sc.SpanID() == want.spanID {
		return
	}
	if t.warned.CompareAndSwap(false, true) {
		t.log.Warn("telemetry: the TracerProvider does not use telemetry.NewIDGenerator; " +
			"spans get random ids and the spans of other processes will not join their task's trace")
	}
}
