package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/handler"
	"github.com/tasker-go/tasker/internal/secret"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/template"
)

// attempt is one claimed step on its way through the executor and the completer.
type attempt struct {
	cs      *store.ClaimedStep
	tmpl    *template.Template
	outcome store.StepOutcome
	// release is set when the attempt was interrupted by Stop, or did not
	// run: the step is released instead of completed, with releaseReason
	// in its history ("worker stopping" if empty).
	release       bool
	releaseReason string
	// observed are observability events published once the outcome commits.
	observed []event.Event
	custom   customEvents
	// cancel interrupts the handler, for a step cancelled while it runs.
	cancel context.CancelFunc
	// leaseUntil is when the lease expires unless renewed; guarded by Engine.mu.
	leaseUntil time.Time
	// ended is when the attempt's execution returned, its handler run or
	// not (no template or handler for it, say); zero if it was released
	// before it began.
	ended time.Time
	// ran is how long the handler ran; 0 if it did not run.
	ran time.Duration
	// slotSince is when the attempt took its handler slot, zero while it
	// holds none; guarded by Engine.mu.
	slotSince time.Time
	// admitted: the attempt counts against its template's concurrency
	// limit (Engine.limitRunning).
	admitted bool
}

// customEvents collects the custom events a handler publishes.
type customEvents struct {
	mu     sync.Mutex
	tmpl   *template.Template
	red    *secret.Redactor
	events []store.CustomEvent
	closed bool
}

// redactedError is a handler error whose message had secrets masked; the
// cause keeps the retry instructions (Permanent, RetryAfter).
type redactedError struct {
	msg   string
	cause error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.cause }

// Publish validates a custom event against the template's declarations and
// keeps it for the attempt's outcome.
func (c *customEvents) Publish(name string, payload map[string]any) error {
	if payload == nil {
		payload = map[string]any{}
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("publish %s: payload is not JSON: %w", name, err)
	}
	if c.tmpl == nil {
		return fmt.Errorf("publish %s: template unavailable", name)
	}
	if err := c.tmpl.ValidateEvent(name, raw); err != nil {
		return fmt.Errorf("publish %s: %w", name, err)
	}
	if c.red != nil {
		if red := c.red.Bytes(raw); json.Valid(red) {
			raw = red
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("publish %s: the attempt is over", name)
	}
	c.events = append(c.events, store.CustomEvent{Name: name, Payload: raw})
	return nil
}

func (c *customEvents) take() []store.CustomEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.events
}

// startAttempt takes a slot and runs the step's handler in its own goroutine.
func (e *Engine) startAttempt(cs *store.ClaimedStep) {
	e.handlers.Add(1)
	e.launch(cs)
}

// launch runs a claimed step's handler in its own goroutine; the caller
// has counted it in e.handlers.
func (e *Engine) launch(cs *store.ClaimedStep) {
	a := &attempt{cs: cs, leaseUntil: cs.Step.LeaseExpiresAt}
	actx, cancel := context.WithCancel(e.runCtx)
	a.cancel = cancel
	e.mu.Lock()
	e.held++
	e.perTemplate[cs.Step.TemplateID]++
	e.inflight[a] = struct{}{}
	stop := e.stopWaiting
	e.mu.Unlock()
	go func() {
		defer e.handlers.Done()
		defer cancel()
		switch {
		case !e.takeSlot(a, stop):
			// Stop began while the step waited for a slot: give it back
			// uncharged, as a step claimed as the engine stops.
			a.outcome = store.StepOutcome{StepID: cs.Step.ID, LeaseToken: cs.Step.LeaseToken, Attempt: cs.Step.Attempts}
			a.release = true
		case actx.Err() != nil:
			// Cancelled, or its lease lost, while it waited: its handler
			// does not run. The release is refused if the lease is gone,
			// and gives the step back uncharged if it is not.
			a.outcome = store.StepOutcome{StepID: cs.Step.ID, LeaseToken: cs.Step.LeaseToken, Attempt: cs.Step.Attempts}
			a.release, a.releaseReason = true, "cancelled or lease lost before the step started"
			e.freeSlot(a)
		default:
			e.execute(e.runCtx, actx, a)
			a.ended = e.clock.Now()
			e.freeSlot(a)
		}
		e.mu.Lock()
		e.held--
		e.perTemplate[cs.Step.TemplateID]--
		delete(e.inflight, a)
		wake := e.freedSlotWakes(a)
		e.mu.Unlock()
		e.outcomes <- a
		if wake {
			e.Wake()
		}
	}()
}

// takeSlot waits for one of the Concurrency handler slots for a; it
// reports false, without a slot, if stop is closed first (or already).
func (e *Engine) takeSlot(a *attempt, stop <-chan struct{}) bool {
	select {
	case <-stop:
		return false
	default:
	}
	select {
	case e.runSlots <- struct{}{}:
	case <-stop:
		return false
	}
	e.mu.Lock()
	e.running++
	a.slotSince = e.clock.Now()
	e.mu.Unlock()
	return true
}

// freeSlot gives back the handler slot of an attempt, and folds its
// handler's duration into the mean that decides prefetching; if that
// makes room for more steps, it wakes the dispatcher to claim them.
func (e *Engine) freeSlot(a *attempt) {
	e.mu.Lock()
	e.running--
	a.slotSince = time.Time{}
	before := e.capacity()
	e.mu.Unlock()
	<-e.runSlots
	if a.ran > 0 {
		foldMean(&e.handlerTime, a.ran)
	}
	e.mu.Lock()
	grew := e.capacity() > before
	e.mu.Unlock()
	if grew {
		e.Wake()
	}
}

// foldMean folds d into the moving mean m of about the last 16 values.
func foldMean(m *atomic.Int64, d time.Duration) {
	for {
		old := m.Load()
		mean := int64(d)
		if old > 0 {
			mean = old + (int64(d)-old)/16
		}
		if m.CompareAndSwap(old, max(mean, 1)) {
			return
		}
	}
}

// capacity is how many steps this process may hold (running or waiting
// for a handler slot): Concurrency, plus what it prefetches while recent
// handlers were short and none running now has run for PrefetchBelow
// already. It prefetches as many steps as its handlers get through, on
// their recent mean, in the time of a claim (up to Prefetch): more would
// wait longer than another worker takes to claim them. The caller holds
// e.mu.
func (e *Engine) capacity() int {
	t := e.handlerTime.Load()
	if e.cfg.Prefetch <= 0 || t <= 0 || time.Duration(t) >= e.cfg.PrefetchBelow {
		return e.cfg.Concurrency
	}
	depth := e.cfg.Prefetch
	if c := e.claimTime.Load(); c > 0 {
		depth = int(min(int64(depth), int64(e.cfg.Concurrency)*c/t))
	}
	if depth <= 0 {
		return e.cfg.Concurrency
	}
	if e.running > 0 {
		long := e.clock.Now().Add(-e.cfg.PrefetchBelow)
		for a := range e.inflight {
			if !a.slotSince.IsZero() && a.slotSince.Before(long) {
				return e.cfg.Concurrency
			}
		}
	}
	return e.cfg.Concurrency + depth
}

// freedSlotWakes reports whether the slot a finished attempt frees wakes
// the dispatcher; the caller holds e.mu. The steps of a template with a
// concurrency limit are claimed by the dispatcher alone, so the end of one
// of its attempts always wakes it: the template's next step may wait for
// just this slot. Other slots wake a dispatcher that waits for one, unless
// the completion recording the outcome claims for it (fillOnCompletion;
// a completion that cannot use its reservation wakes the dispatcher in
// endClaim). An attempt released at Stop frees a slot nobody claims.
func (e *Engine) freedSlotWakes(a *attempt) bool {
	if a.release {
		return e.blocked
	}
	if a.tmpl != nil && a.tmpl.Concurrency > 0 {
		return true
	}
	return e.blocked && !e.fillOnCompletion
}

// admit counts the attempt against its template's concurrency limit, and
// reports false if the limit is reached: that only happens when a claim
// raced past the limit (a template the engine had not seen yet when it
// claimed). Such an attempt is given back uncharged (released), and the
// dispatcher claims it again when the template has a free slot; waiting
// for one instead would hold a handler slot, and with several attempts
// over the limit none might ever run.
func (e *Engine) admit(a *attempt) bool {
	if a.tmpl == nil || a.tmpl.Concurrency <= 0 {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id := a.cs.Step.TemplateID
	if e.limitRunning[id] >= a.tmpl.Concurrency {
		return false
	}
	e.limitRunning[id]++
	a.admitted = true
	return true
}

// unadmit ends what admit counted.
func (e *Engine) unadmit(a *attempt) {
	if !a.admitted {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id := a.cs.Step.TemplateID
	if e.limitRunning[id]--; e.limitRunning[id] <= 0 {
		delete(e.limitRunning, id)
	}
	a.admitted = false
}

// execute runs the handler of one attempt and decides its outcome. ctx is
// the engine's run context (cancelled on stop); actx is the attempt's own
// (also cancelled when the step is cancelled while it runs).
func (e *Engine) execute(ctx, actx context.Context, a *attempt) {
	st := a.cs.Step
	a.outcome = store.StepOutcome{StepID: st.ID, LeaseToken: st.LeaseToken, Attempt: st.Attempts}
	if ctx.Err() != nil {
		// Claimed as the engine stopped: give it back uncharged.
		a.release = true
		return
	}
	tmpl, err := e.tmpl.get(ctx, st.TemplateID)
	if err != nil {
		e.fail(a, true, "template", fmt.Errorf("load template of step %s: %w", st.Name, err), 0)
		return
	}
	a.tmpl = tmpl
	a.custom.tmpl = tmpl
	if st.Index < 0 || st.Index >= len(tmpl.Steps) {
		e.fail(a, true, "template", fmt.Errorf("step %s has no definition in template %s", st.Name, tmpl.Key()), 0)
		return
	}
	def := tmpl.Steps[st.Index]
	h := e.cfg.Handlers[st.Handler]
	if h == nil {
		// The claim filters on handler names, so this only happens if the
		// handler set changed under a running engine.
		e.fail(a, true, "handler", fmt.Errorf("no handler named %q is registered", st.Handler), 0)
		return
	}
	// Secrets are resolved now, for this attempt only, and redacted from
	// everything the attempt produces.
	config, values, err := e.cfg.Secrets.Resolve(def.Config)
	if err != nil {
		e.fail(a, true, "secret", err, 0)
		return
	}
	red := secret.NewRedactor(values)
	log := slog.New(withLazyAttrs(red.Handler(e.log.Handler()), slog.String("task_id", st.TaskID), slog.String("step", st.Name),
		slog.Int("attempt", st.Attempts)))
	a.custom.red = red
	if !e.admit(a) {
		a.release, a.releaseReason = true, "claimed past its template's concurrency limit"
		log.InfoContext(ctx, "engine: step claimed past its template's concurrency limit; releasing it")
		return
	}
	defer e.unadmit(a)
	in := handler.Input{
		TaskID: st.TaskID, StepID: st.ID, StepName: st.Name,
		Namespace: a.cs.Namespace, TaskName: a.cs.TaskName, Version: a.cs.Version,
		Attempt: st.Attempts, RetryLimit: st.RetryLimit,
		Context: a.cs.Context, Config: config, Dependencies: a.cs.Dependencies,
		Logger: log,
	}.WithPublisher(&a.custom)
	if in.Dependencies == nil {
		in.Dependencies = map[string]json.RawMessage{}
	}
	hctx, cancel := context.WithTimeout(actx, def.Timeout)
	defer cancel()
	start := e.clock.Now()
	e.stats.handlerRuns.Add(1)
	result, herr := e.call(hctx, h, in)
	if herr != nil && red != nil {
		herr = &redactedError{msg: red.String(herr.Error()), cause: herr}
	}
	dur := e.clock.Now().Sub(start)
	a.ran = max(dur, time.Nanosecond)
	a.outcome.DurationMS = dur.Milliseconds()
	a.outcome.CustomEvents = a.custom.take()

	switch {
	case herr == nil:
		raw, err := encodeResult(result, e.cfg.MaxResultBytes)
		if err != nil {
			e.fail(a, true, "result", err, dur)
			return
		}
		if red != nil {
			if raw = red.Bytes(raw); !json.Valid(raw) {
				raw = json.RawMessage(`{"redacted":"the result held a secret in a form that could not be masked"}`)
			}
		}
		a.outcome.Kind = store.OutcomeComplete
		a.outcome.Result = raw
		if e.wanted(event.StepHandled) {
			a.observed = append(a.observed, e.observation(a, event.StepHandled, dur, nil, map[string]any{"outcome": "success"}))
		}
		log.DebugContext(ctx, "engine: step succeeded", slog.Duration("duration", dur))
	case ctx.Err() != nil:
		// The worker is stopping: give the step back without charging it.
		a.release = true
		log.InfoContext(ctx, "engine: step interrupted by stop; releasing it", slog.Any("error", herr))
	default:
		class := "retryable"
		cl := handler.Classify(herr)
		switch {
		case errors.Is(herr, errPanic):
			class = "panic"
		case hctx.Err() != nil && errors.Is(herr, context.DeadlineExceeded):
			class = "timeout"
			herr = fmt.Errorf("step timed out after %s: %w", def.Timeout, herr)
		case cl.Permanent:
			class = "permanent"
		}
		if cl.Permanent || !def.Retryable {
			if !cl.Permanent {
				class = "not_retryable"
			}
			e.fail(a, cl.Permanent, class, herr, dur)
			return
		}
		if st.Attempts >= st.RetryLimit {
			e.fail(a, false, class, herr, dur)
			a.observed = append(a.observed, e.observation(a, event.StepMaxRetriesReached, 0, herr, nil))
			return
		}
		delay := def.Retry.Delay(st.Attempts-(st.RetryLimit-st.MaxAttempts), e.cfg.Rand())
		kind := "exponential"
		if cl.Requested {
			delay, kind = def.Retry.Requested(cl.Delay), "requested"
		}
		next := e.clock.Now().Add(delay)
		a.outcome.Kind = store.OutcomeRetry
		a.outcome.NextAttemptAt = next
		a.outcome.Error, a.outcome.ErrorClass = herr.Error(), class
		a.observed = append(a.observed,
			e.observation(a, event.StepHandled, dur, herr, map[string]any{"outcome": "retry"}),
			e.observation(a, event.StepBackoff, 0, herr, map[string]any{"backoff_ms": delay.Milliseconds(), "backoff_type": kind, "next_attempt_at": next.UTC()}))
		log.InfoContext(ctx, "engine: step failed; retrying", slog.Any("error", herr), slog.Duration("backoff", delay))
	}
}

// fail records a failure that ends the step in error.
func (e *Engine) fail(a *attempt, permanent bool, class string, err error, dur time.Duration) {
	a.outcome.Kind = store.OutcomeFail
	a.outcome.Permanent = permanent
	a.outcome.Error, a.outcome.ErrorClass = err.Error(), class
	a.observed = append(a.observed, e.observation(a, event.StepHandled, dur, err, map[string]any{"outcome": "failure"}))
	e.log.Warn("engine: step failed", slog.String("task_id", a.cs.Step.TaskID), slog.String("step", a.cs.Step.Name),
		slog.Int("attempt", a.cs.Step.Attempts), slog.String("class", class), slog.Any("error", err))
}

var errPanic = errors.New("handler panicked")

// call runs the handler, recovering panics. If the handler ignores its
// cancelled context for longer than AbandonAfter, the attempt is given up
// and the handler's eventual return is ignored.
func (e *Engine) call(ctx context.Context, h handler.Handler, in *handler.Input) (any, error) {
	type ret struct {
		v   any
		err error
	}
	done := make(chan ret, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- ret{err: fmt.Errorf("%w: %v\n%s", errPanic, r, debug.Stack())}
			}
		}()
		v, err := h.Handle(ctx, in)
		done <- ret{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
	}
	abandon := e.clock.NewTimer(e.cfg.AbandonAfter)
	defer abandon.Stop()
	select {
	case r := <-done:
		if r.err == nil {
			// A result that arrives after the deadline does not count.
			return nil, ctx.Err()
		}
		return r.v, r.err
	case <-abandon.C():
		e.log.Warn("engine: handler ignored cancellation; abandoning it", slog.String("step", in.StepName), slog.String("task_id", in.TaskID))
		return nil, ctx.Err()
	}
}

func encodeResult(v any, maxBytes int) (json.RawMessage, error) {
	var raw []byte
	switch r := v.(type) {
	case nil:
		raw = []byte("null")
	case json.RawMessage:
		if len(r) == 0 {
			raw = []byte("null")
		} else if !json.Valid(r) {
			return nil, errors.New("result is not valid JSON")
		} else {
			raw = r
		}
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("result cannot be encoded as JSON: %w", err)
		}
		raw = b
	}
	if len(raw) > maxBytes {
		return nil, fmt.Errorf("result is %d bytes, over the limit of %d", len(raw), maxBytes)
	}
	return raw, nil
}
