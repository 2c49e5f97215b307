package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

// This file holds the conformance tests of the operator actions: StepReset,
// StepResolve, StepCancel, and the actor of TaskCancel and TaskRetry.

const (
	opReason = "ticket OPS-42"
	opActor  = "alice"
)

type stepAction func(context.Context, *store.StepActionParams) (*store.ChangeResult, error)

// act runs an operator action as alice and checks what every action
// guarantees: the events are stored as returned, and every transition
// carries the operator's reason and actor.
func (b *bundle) act(t *testing.T, fn stepAction, stepID string) *store.ChangeResult {
	t.Helper()
	r, err := fn(b.ctx, &store.StepActionParams{StepID: stepID, Reason: opReason, Actor: opActor, Now: b.now})
	if err != nil {
		t.Fatalf("step action on %s: %v", stepID, err)
	}
	b.checkOperatorEvents(t, r.Events, opReason, opActor)
	return r
}

// checkOperatorEvents checks that every transition of an operator's change
// carries its reason and actor, and that the log holds the events as the
// change returned them.
func (b *bundle) checkOperatorEvents(t *testing.T, evs []*store.Event, reason, actor string) {
	t.Helper()
	for _, e := range evs {
		if e.IsTransition() && (e.Metadata.Reason != reason || e.Metadata.Actor != actor) {
			t.Errorf("%s of %q: reason %q actor %q; want %q %q", e.Name, e.StepName, e.Metadata.Reason, e.Metadata.Actor, reason, actor)
		}
	}
	if len(evs) == 0 {
		return
	}
	var stored []*store.Event
	for _, e := range b.history(t, evs[0].TaskID) {
		if e.Cursor >= evs[0].Cursor && e.Cursor <= evs[len(evs)-1].Cursor {
			stored = append(stored, e)
		}
	}
	if diff := cmpDiff(evs, stored); diff != "" {
		t.Errorf("stored events differ from returned ones (-returned +stored):\n%s", diff)
	}
}

// noOp checks that an action changed nothing: no count, no events, nothing ready.
func noOp(t *testing.T, r *store.ChangeResult) {
	t.Helper()
	if r.Count != 0 || len(r.Events) != 0 || len(r.Ready) != 0 || len(r.Finalized) != 0 {
		t.Fatalf("repeated action = %+v; want a no-op", r)
	}
}

// drive claims the ready steps of a task and applies an outcome of the
// given kind to each claimed step named in kinds (failures are permanent,
// retries due in an hour); the others keep running. It returns the claimed
// steps by name.
func (b *bundle) drive(t *testing.T, taskID string, kinds map[string]store.OutcomeKind) map[string]*store.ClaimedStep {
	t.Helper()
	c := b.claim(t, store.StepClaimParams{TaskIDs: []string{taskID}})
	by := map[string]*store.ClaimedStep{}
	var outs []store.StepOutcome
	for _, cs := range c.Steps {
		by[cs.Step.Name] = cs
		kind, ok := kinds[cs.Step.Name]
		if !ok {
			continue
		}
		o := outcome(cs, kind)
		switch kind {
		case store.OutcomeFail:
			o.Error, o.ErrorClass, o.Permanent = "boom", "permanent", true
		case store.OutcomeRetry:
			o.Error, o.NextAttemptAt = "flaky", b.now.Add(time.Hour)
		}
		outs = append(outs, o)
	}
	for name := range kinds {
		if by[name] == nil {
			t.Fatalf("step %s was not claimable", name)
		}
	}
	if len(outs) > 0 {
		b.complete(t, outs...)
	}
	return by
}

func wantEvents(t *testing.T, what string, r *store.ChangeResult, want ...string) {
	t.Helper()
	if diff := cmpDiff(want, names(r.Events)); diff != "" {
		t.Fatalf("%s events (-want +got):\n%s", what, diff)
	}
}

func wantReady(t *testing.T, what string, r *store.ChangeResult, taskID string, steps ...string) {
	t.Helper()
	var want []store.Ready
	if len(steps) > 0 {
		want = []store.Ready{{TaskID: taskID, Steps: steps, At: r.Events[0].OccurredAt}}
	}
	if diff := cmpDiff(want, r.Ready); diff != "" {
		t.Fatalf("%s ready (-want +got):\n%s", what, diff)
	}
}

func (b *bundle) wantTask(t *testing.T, id string, state lifecycle.TaskState, done, open int) *store.Task {
	t.Helper()
	task := b.task(t, id)
	if task.State != state || task.StepsDone != done || task.StepsOpen != open {
		t.Fatalf("task = %s done %d open %d; want %s done %d open %d", task.State, task.StepsDone, task.StepsOpen, state, done, open)
	}
	return task
}

func testTaskCancelRetryActor(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"a", "b", "c"}, parents: map[string][]string{"b": {"a"}}, max: map[string]int{"a": 1}}, createOpts{})
	b.drive(t, res.Task.ID, map[string]store.OutcomeKind{"a": store.OutcomeFail, "c": store.OutcomeComplete})
	b.wantTask(t, res.Task.ID, lifecycle.TaskError, 1, 0)
	r, err := b.s.TaskRetry(b.ctx, &store.TaskRetryParams{TaskID: res.Task.ID, Reason: "upstream fixed", Actor: "bob", Now: b.tick(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "retry", r, "task:task.retry_requested", "a:step.retry_requested", "task:task.start_requested")
	b.checkOperatorEvents(t, r.Events, "upstream fixed", "bob")

	r, err = b.s.TaskCancel(b.ctx, &store.TaskCancelParams{TaskID: res.Task.ID, Reason: "not needed", Actor: "carol", Now: b.tick(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "cancel", r, "a:step.cancelled", "b:step.cancelled", "task:task.cancelled")
	b.checkOperatorEvents(t, r.Events, "not needed", "carol")
}

func testStepResetTaskInError(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"a", "b"}, parents: map[string][]string{"b": {"a"}}, max: map[string]int{"a": 1}}, createOpts{})
	id := res.Task.ID
	b.drive(t, id, map[string]store.OutcomeKind{"a": store.OutcomeFail})
	failedAt := b.wantTask(t, id, lifecycle.TaskError, 0, 0).FinishedAt
	if failedAt.IsZero() {
		t.Fatal("failed task has no finish time")
	}
	a := b.steps(t, id)["a"]

	r := b.act(t, b.s.StepReset, a.ID)
	wantEvents(t, "reset", r, "task:task.retry_requested", "a:step.retry_requested", "task:task.start_requested")
	wantReady(t, "reset", r, id, "a")
	if r.Count != 1 || len(r.Finalized) != 0 {
		t.Fatalf("reset = count %d finalized %v", r.Count, r.Finalized)
	}
	if m := r.Events[1].Metadata; m.Attempt != 1 || m.RetryLimit != 2 {
		t.Fatalf("step.retry_requested metadata = %+v; want attempt 1, retry limit 2", m)
	}
	task := b.wantTask(t, id, lifecycle.TaskInProgress, 0, 1)
	if !task.FinishedAt.IsZero() {
		t.Fatalf("resumed task keeps finish time %v", task.FinishedAt)
	}
	a = b.steps(t, id)["a"]
	if a.State != lifecycle.StepPending || a.RetryLimit != a.Attempts+a.MaxAttempts || a.RetryLimit != 2 || !a.RunAt.Equal(b.now) ||
		!a.FinishedAt.IsZero() {
		t.Fatalf("reset step = %+v; want pending, ready now, with a fresh budget", a)
	}
	// Asking again is a no-op.
	noOp(t, b.act(t, b.s.StepReset, a.ID))

	// The reset step runs with its fresh budget and the task completes.
	c := b.drive(t, id, map[string]store.OutcomeKind{"a": store.OutcomeComplete})
	if c["a"].Step.Attempts != 2 {
		t.Fatalf("attempt after reset = %d, want 2", c["a"].Step.Attempts)
	}
	b.drive(t, id, map[string]store.OutcomeKind{"b": store.OutcomeComplete})
	b.wantTask(t, id, lifecycle.TaskComplete, 2, 0)
}

func testStepResetTaskInProgress(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"x", "y"}, max: map[string]int{"x": 1}}, createOpts{})
	id := res.Task.ID
	running := b.drive(t, id, map[string]store.OutcomeKind{"x": store.OutcomeFail})
	b.wantTask(t, id, lifecycle.TaskInProgress, 0, 1)
	x := b.steps(t, id)["x"]

	r := b.act(t, b.s.StepReset, x.ID)
	wantEvents(t, "reset", r, "x:step.retry_requested")
	wantReady(t, "reset", r, id, "x")
	if r.Count != 1 {
		t.Fatalf("count = %d", r.Count)
	}
	b.wantTask(t, id, lifecycle.TaskInProgress, 0, 2)
	noOp(t, b.act(t, b.s.StepReset, x.ID))

	b.drive(t, id, map[string]store.OutcomeKind{"x": store.OutcomeComplete})
	done := b.complete(t, outcome(running["y"], store.OutcomeComplete))
	if len(done.Finalized) != 1 || done.Finalized[0].State != lifecycle.TaskComplete {
		t.Fatalf("finalized = %+v", done.Finalized)
	}
}

func testStepResetRejected(t *testing.T, b *bundle) {
	if _, err := b.s.StepReset(b.ctx, &store.StepActionParams{StepID: "00000000-0000-0000-0000-000000000000", Now: b.now}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("reset of an unknown step err = %v, want ErrNotFound", err)
	}
	res := b.create(t, shape{steps: []string{"x", "y", "z"}}, createOpts{})
	id := res.Task.ID
	b.drive(t, id, map[string]store.OutcomeKind{"x": store.OutcomeComplete, "z": store.OutcomeRetry})
	before := len(b.history(t, id))
	steps := b.steps(t, id)
	for _, name := range []string{"x", "y", "z"} {
		_, err := b.s.StepReset(b.ctx, &store.StepActionParams{StepID: steps[name].ID, Actor: opActor, Now: b.now})
		if !errors.Is(err, lifecycle.ErrInvalidTransition) {
			t.Errorf("reset of a %s step err = %v, want ErrInvalidTransition", steps[name].State, err)
		}
	}
	if after := len(b.history(t, id)); after != before {
		t.Fatalf("rejected resets wrote %d events", after-before)
	}
	// A cancelled task's steps are cancelled: nothing to reset.
	cancelled := b.create(t, single("w"), createOpts{})
	if _, err := b.s.TaskCancel(b.ctx, &store.TaskCancelParams{TaskID: cancelled.Task.ID, Now: b.now}); err != nil {
		t.Fatal(err)
	}
	w := b.steps(t, cancelled.Task.ID)["w"]
	if _, err := b.s.StepReset(b.ctx, &store.StepActionParams{StepID: w.ID, Now: b.now}); !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Fatalf("reset of a cancelled task's step err = %v, want ErrInvalidTransition", err)
	}
}

func testStepResolveInProgress(t *testing.T, b *bundle) {
	res := b.create(t, diamond(), createOpts{})
	id := res.Task.ID
	steps := b.steps(t, id)

	// a is ready: resolving it releases b and c like a completion.
	r := b.act(t, b.s.StepResolve, steps["a"].ID)
	wantEvents(t, "resolve a", r, "a:step.resolved_manually")
	wantReady(t, "resolve a", r, id, "b", "c")
	if r.Count != 1 || len(r.Finalized) != 0 {
		t.Fatalf("resolve a = count %d finalized %v", r.Count, r.Finalized)
	}
	b.wantTask(t, id, lifecycle.TaskInProgress, 1, 2)
	a := b.steps(t, id)["a"]
	if a.State != lifecycle.StepResolvedManually || !a.RunAt.IsZero() || a.FinishedAt.IsZero() || a.Attempts != 0 {
		t.Fatalf("resolved step = %+v", a)
	}
	noOp(t, b.act(t, b.s.StepResolve, a.ID))

	// b waits for a retry; resolving it does not release d, which also
	// waits for c.
	running := b.drive(t, id, map[string]store.OutcomeKind{"b": store.OutcomeRetry})
	r = b.act(t, b.s.StepResolve, steps["b"].ID)
	wantEvents(t, "resolve b", r, "b:step.resolved_manually")
	wantReady(t, "resolve b", r, id)
	b.wantTask(t, id, lifecycle.TaskInProgress, 2, 1)

	r2 := b.complete(t, outcome(running["c"], store.OutcomeComplete))
	if len(r2.Ready) != 1 || !slices.Equal(r2.Ready[0].Steps, []string{"d"}) {
		t.Fatalf("ready after c = %+v", r2.Ready)
	}
	// A resolved step gives its dependents a null result.
	c := b.drive(t, id, nil)
	deps := c["d"].Dependencies
	if string(deps["b"]) != "null" || string(deps["c"]) != `{"step":"c"}` || len(deps) != 2 {
		t.Fatalf("dependencies of d = %v", deps)
	}
	done := b.complete(t, outcome(c["d"], store.OutcomeComplete))
	if len(done.Finalized) != 1 || done.Finalized[0].State != lifecycle.TaskComplete || done.Finalized[0].StepsDone != 4 {
		t.Fatalf("finalized = %+v", done.Finalized)
	}
}

func testStepResolveCompletesTask(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"x", "y"}}, createOpts{})
	id := res.Task.ID
	b.drive(t, id, map[string]store.OutcomeKind{"x": store.OutcomeComplete, "y": store.OutcomeRetry})
	r := b.act(t, b.s.StepResolve, b.steps(t, id)["y"].ID)
	wantEvents(t, "resolve", r, "y:step.resolved_manually", "task:task.completed")
	want := []store.Finalized{{TaskID: id, State: lifecycle.TaskComplete, StepsDone: 2, StepsTotal: 2}}
	if diff := cmpDiff(want, r.Finalized); diff != "" {
		t.Fatalf("finalized (-want +got):\n%s", diff)
	}
	b.wantTask(t, id, lifecycle.TaskComplete, 2, 0)
	if claimed := b.claim(t, store.StepClaimParams{Now: b.now.Add(2 * time.Hour)}); len(claimed.Steps) != 0 {
		t.Fatalf("the resolved step's retry was claimed: %v", claimedNames(claimed))
	}
	// The task is complete: its steps are done, nothing more to resolve.
	noOp(t, b.act(t, b.s.StepResolve, b.steps(t, id)["y"].ID))
}

func testStepResolveResumesTask(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"a", "b"}, parents: map[string][]string{"b": {"a"}}, max: map[string]int{"a": 1}}, createOpts{})
	id := res.Task.ID
	b.drive(t, id, map[string]store.OutcomeKind{"a": store.OutcomeFail})
	b.wantTask(t, id, lifecycle.TaskError, 0, 0)

	r := b.act(t, b.s.StepResolve, b.steps(t, id)["a"].ID)
	wantEvents(t, "resolve", r, "a:step.resolved_manually", "task:task.retry_requested", "task:task.start_requested")
	wantReady(t, "resolve", r, id, "b")
	if r.Count != 1 || len(r.Finalized) != 0 {
		t.Fatalf("resolve = count %d finalized %v", r.Count, r.Finalized)
	}
	task := b.wantTask(t, id, lifecycle.TaskInProgress, 1, 1)
	if !task.FinishedAt.IsZero() {
		t.Fatalf("resumed task keeps finish time %v", task.FinishedAt)
	}
	b.drive(t, id, map[string]store.OutcomeKind{"b": store.OutcomeComplete})
	b.wantTask(t, id, lifecycle.TaskComplete, 2, 0)
}

func testStepResolveResumesAndCompletes(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"x", "y"}, max: map[string]int{"x": 1}}, createOpts{})
	id := res.Task.ID
	b.drive(t, id, map[string]store.OutcomeKind{"x": store.OutcomeFail, "y": store.OutcomeComplete})
	b.wantTask(t, id, lifecycle.TaskError, 1, 0)

	r := b.act(t, b.s.StepResolve, b.steps(t, id)["x"].ID)
	wantEvents(t, "resolve", r, "x:step.resolved_manually", "task:task.retry_requested", "task:task.start_requested", "task:task.completed")
	want := []store.Finalized{{TaskID: id, State: lifecycle.TaskComplete, StepsDone: 2, StepsTotal: 2}}
	if diff := cmpDiff(want, r.Finalized); diff != "" {
		t.Fatalf("finalized (-want +got):\n%s", diff)
	}
	if task := b.wantTask(t, id, lifecycle.TaskComplete, 2, 0); task.FinishedAt.IsZero() {
		t.Fatal("completed task has no finish time")
	}
}

func testStepResolveStaysInError(t *testing.T, b *bundle) {
	sh := shape{steps: []string{"a", "b", "c"}, parents: map[string][]string{"c": {"a", "b"}}, max: map[string]int{"a": 1, "b": 1}}
	res := b.create(t, sh, createOpts{})
	id := res.Task.ID
	b.drive(t, id, map[string]store.OutcomeKind{"a": store.OutcomeFail, "b": store.OutcomeFail})
	failed := b.wantTask(t, id, lifecycle.TaskError, 0, 0)
	steps := b.steps(t, id)

	// c still waits for b: nothing can run, the task stays in error.
	r := b.act(t, b.s.StepResolve, steps["a"].ID)
	wantEvents(t, "resolve a", r, "a:step.resolved_manually")
	wantReady(t, "resolve a", r, id)
	if r.Count != 1 || len(r.Finalized) != 0 {
		t.Fatalf("resolve a = count %d finalized %v", r.Count, r.Finalized)
	}
	task := b.wantTask(t, id, lifecycle.TaskError, 1, 0)
	if !task.FinishedAt.Equal(failed.FinishedAt) {
		t.Fatalf("finish time moved from %v to %v", failed.FinishedAt, task.FinishedAt)
	}
	if c := b.steps(t, id)["c"]; c.DepsRemaining != 1 || !c.RunAt.IsZero() {
		t.Fatalf("step c = %+v; want one dependency left, not ready", c)
	}
	noOp(t, b.act(t, b.s.StepResolve, steps["a"].ID))

	// Resolving b releases c: the task resumes.
	r = b.act(t, b.s.StepResolve, steps["b"].ID)
	wantEvents(t, "resolve b", r, "b:step.resolved_manually", "task:task.retry_requested", "task:task.start_requested")
	wantReady(t, "resolve b", r, id, "c")
	b.wantTask(t, id, lifecycle.TaskInProgress, 2, 1)
	b.drive(t, id, map[string]store.OutcomeKind{"c": store.OutcomeComplete})
	b.wantTask(t, id, lifecycle.TaskComplete, 3, 0)
}

func testStepResolveRejected(t *testing.T, b *bundle) {
	if _, err := b.s.StepResolve(b.ctx, &store.StepActionParams{StepID: "00000000-0000-0000-0000-000000000000", Now: b.now}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("resolve of an unknown step err = %v, want ErrNotFound", err)
	}
	res := b.create(t, shape{steps: []string{"x", "y", "z"}}, createOpts{})
	id := res.Task.ID
	b.drive(t, id, map[string]store.OutcomeKind{"x": store.OutcomeComplete})
	steps := b.steps(t, id)
	if _, err := b.s.StepCancel(b.ctx, &store.StepActionParams{StepID: steps["z"].ID, Now: b.now}); err != nil {
		t.Fatal(err)
	}
	before := len(b.history(t, id))
	for _, name := range []string{"x", "y", "z"} {
		_, err := b.s.StepResolve(b.ctx, &store.StepActionParams{StepID: steps[name].ID, Now: b.now})
		if !errors.Is(err, lifecycle.ErrInvalidTransition) {
			t.Errorf("resolve of step %s err = %v, want ErrInvalidTransition", name, err)
		}
	}
	if after := len(b.history(t, id)); after != before {
		t.Fatalf("rejected resolves wrote %d events", after-before)
	}
}

func testStepCancelRunning(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"x", "y"}}, createOpts{})
	id := res.Task.ID
	running := b.drive(t, id, nil)
	x := running["x"]

	r := b.act(t, b.s.StepCancel, x.Step.ID)
	wantEvents(t, "cancel", r, "x:step.cancelled")
	if e := r.Events[0]; e.From != string(lifecycle.StepInProgress) || e.Metadata.Attempt != 1 {
		t.Fatalf("step.cancelled = %+v", e)
	}
	if r.Count != 1 || len(r.Finalized) != 0 || len(r.Ready) != 0 {
		t.Fatalf("cancel = %+v", r)
	}
	b.wantTask(t, id, lifecycle.TaskInProgress, 0, 1)
	st := b.steps(t, id)["x"]
	if st.State != lifecycle.StepCancelled || st.LeaseOwner != "" || st.LeaseToken != 0 || !st.LeaseExpiresAt.IsZero() || st.FinishedAt.IsZero() {
		t.Fatalf("cancelled step = %+v; want its lease dropped", st)
	}
	// The worker has lost its lease, and its late outcome is stale.
	lease := store.Lease{StepID: x.Step.ID, LeaseToken: x.Step.LeaseToken, Attempt: x.Step.Attempts}
	renew, err := b.s.StepLeaseRenew(b.ctx, &store.StepLeaseRenewParams{Worker: "w1", Leases: []store.Lease{lease}, Now: b.now, TTL: time.Minute})
	if err != nil || len(renew.Lost) != 1 {
		t.Fatalf("renew of a cancelled step's lease = %+v, %v; want lost", renew, err)
	}
	if late := b.complete(t, outcome(x, store.OutcomeComplete)); !slices.Equal(late.Stale, []int{0}) || len(late.Events) != 0 {
		t.Fatalf("late outcome = %+v; want stale", late)
	}
	noOp(t, b.act(t, b.s.StepCancel, x.Step.ID))

	// When y completes, nothing is open and x is not done: the task fails.
	done := b.complete(t, outcome(running["y"], store.OutcomeComplete))
	if len(done.Finalized) != 1 || done.Finalized[0].State != lifecycle.TaskError {
		t.Fatalf("finalized = %+v", done.Finalized)
	}
	if last := done.Events[len(done.Events)-1]; last.Name != event.TaskFailed || !slices.Equal(last.Metadata.FailedSteps, []string{"x"}) {
		t.Fatalf("task.failed = %+v", last)
	}
}

func testStepCancelLastOpen(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"x", "y"}, parents: map[string][]string{"y": {"x"}}}, createOpts{})
	id := res.Task.ID
	r := b.act(t, b.s.StepCancel, b.steps(t, id)["x"].ID)
	wantEvents(t, "cancel", r, "x:step.cancelled", "task:task.failed")
	want := []store.Finalized{{TaskID: id, State: lifecycle.TaskError, StepsDone: 0, StepsTotal: 2}}
	if diff := cmpDiff(want, r.Finalized); diff != "" {
		t.Fatalf("finalized (-want +got):\n%s", diff)
	}
	if m := r.Events[1].Metadata; !slices.Equal(m.FailedSteps, []string{"x"}) || m.ErrorClass != "blocked" {
		t.Fatalf("task.failed metadata = %+v", m)
	}
	b.wantTask(t, id, lifecycle.TaskError, 0, 0)
	if n, err := b.s.StepCountReady(b.ctx, b.now); err != nil || n != 0 {
		t.Fatalf("ready after cancel = %d, %v", n, err)
	}
}

func testStepCancelWaitingAndBlocked(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"a", "b", "c"}, parents: map[string][]string{"b": {"a"}}}, createOpts{})
	id := res.Task.ID
	running := b.drive(t, id, map[string]store.OutcomeKind{"c": store.OutcomeRetry})
	steps := b.steps(t, id)

	r := b.act(t, b.s.StepCancel, steps["c"].ID)
	wantEvents(t, "cancel waiting c", r, "c:step.cancelled")
	b.wantTask(t, id, lifecycle.TaskInProgress, 0, 1)
	if c := b.steps(t, id)["c"]; !c.RunAt.IsZero() {
		t.Fatalf("cancelled step keeps its retry time %v", c.RunAt)
	}
	r = b.act(t, b.s.StepCancel, steps["b"].ID)
	wantEvents(t, "cancel blocked b", r, "b:step.cancelled")
	b.wantTask(t, id, lifecycle.TaskInProgress, 0, 1)

	// a completes; b, cancelled, is not released; the task fails.
	done := b.complete(t, outcome(running["a"], store.OutcomeComplete))
	if len(done.Ready) != 0 || len(done.Finalized) != 1 || done.Finalized[0].State != lifecycle.TaskError {
		t.Fatalf("complete a = ready %+v finalized %+v", done.Ready, done.Finalized)
	}
	if last := done.Events[len(done.Events)-1]; !slices.Equal(last.Metadata.FailedSteps, []string{"b", "c"}) {
		t.Fatalf("task.failed = %+v", last.Metadata)
	}
	b.wantTask(t, id, lifecycle.TaskError, 1, 0)
}

func testStepCancelTaskInError(t *testing.T, b *bundle) {
	sh := shape{steps: []string{"a", "b", "c"}, parents: map[string][]string{"b": {"a"}}, max: map[string]int{"a": 1}}
	res := b.create(t, sh, createOpts{})
	id := res.Task.ID
	b.drive(t, id, map[string]store.OutcomeKind{"a": store.OutcomeFail, "c": store.OutcomeComplete})
	failed := b.wantTask(t, id, lifecycle.TaskError, 1, 0)
	steps := b.steps(t, id)

	r := b.act(t, b.s.StepCancel, steps["b"].ID)
	wantEvents(t, "cancel pending b", r, "b:step.cancelled")
	r = b.act(t, b.s.StepCancel, steps["a"].ID)
	wantEvents(t, "cancel failed a", r, "a:step.cancelled")
	if len(r.Finalized) != 0 {
		t.Fatalf("finalized = %+v", r.Finalized)
	}
	task := b.wantTask(t, id, lifecycle.TaskError, 1, 0)
	if task.Seq != failed.Seq || !task.FinishedAt.Equal(failed.FinishedAt) {
		t.Fatalf("task changed: seq %d → %d, finished %v → %v", failed.Seq, task.Seq, failed.FinishedAt, task.FinishedAt)
	}
	noOp(t, b.act(t, b.s.StepCancel, steps["a"].ID))
	// A cancelled step cannot be reset or resolved.
	for _, fn := range []stepAction{b.s.StepReset, b.s.StepResolve} {
		if _, err := fn(b.ctx, &store.StepActionParams{StepID: steps["a"].ID, Now: b.now}); !errors.Is(err, lifecycle.ErrInvalidTransition) {
			t.Fatalf("action on a cancelled step err = %v, want ErrInvalidTransition", err)
		}
	}
}

func testStepCancelRejected(t *testing.T, b *bundle) {
	if _, err := b.s.StepCancel(b.ctx, &store.StepActionParams{StepID: "00000000-0000-0000-0000-000000000000", Now: b.now}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cancel of an unknown step err = %v, want ErrNotFound", err)
	}
	res := b.create(t, shape{steps: []string{"x", "y", "z"}}, createOpts{})
	id := res.Task.ID
	b.drive(t, id, map[string]store.OutcomeKind{"x": store.OutcomeComplete, "y": store.OutcomeRetry, "z": store.OutcomeRetry})
	steps := b.steps(t, id)
	b.act(t, b.s.StepResolve, steps["y"].ID)
	before := len(b.history(t, id))
	for _, name := range []string{"x", "y"} {
		if _, err := b.s.StepCancel(b.ctx, &store.StepActionParams{StepID: steps[name].ID, Now: b.now}); !errors.Is(err, lifecycle.ErrInvalidTransition) {
			t.Errorf("cancel of step %s err = %v, want ErrInvalidTransition", name, err)
		}
	}
	if after := len(b.history(t, id)); after != before {
		t.Fatalf("rejected cancels wrote %d events", after-before)
	}
	// A complete task's steps are done: cancelling one is rejected.
	r := b.act(t, b.s.StepResolve, steps["z"].ID)
	if len(r.Finalized) != 1 || r.Finalized[0].State != lifecycle.TaskComplete {
		t.Fatalf("finalized = %+v", r.Finalized)
	}
	if _, err := b.s.StepCancel(b.ctx, &store.StepActionParams{StepID: steps["z"].ID, Now: b.now}); !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Fatalf("cancel of a complete task's step err = %v, want ErrInvalidTransition", err)
	}
}

func testStepActionsAnnounced(t *testing.T, b *bundle) {
	var (
		mu      sync.Mutex
		changes []*store.ChangeResult
	)
	b.s.OnCommit(func(c *store.ChangeResult) {
		mu.Lock()
		changes = append(changes, c)
		mu.Unlock()
	})
	defer b.s.OnCommit(nil)
	take := func() []*store.ChangeResult {
		mu.Lock()
		defer mu.Unlock()
		out := changes
		changes = nil
		return out
	}
	res := b.create(t, shape{steps: []string{"x", "y", "z"}, max: map[string]int{"x": 1}}, createOpts{})
	b.drive(t, res.Task.ID, map[string]store.OutcomeKind{"x": store.OutcomeFail})
	take()
	steps := b.steps(t, res.Task.ID)
	for _, tc := range []struct {
		name string
		fn   stepAction
		step string
	}{
		{"reset", b.s.StepReset, "x"},
		{"resolve", b.s.StepResolve, "x"},
		{"cancel", b.s.StepCancel, "y"},
	} {
		r := b.act(t, tc.fn, steps[tc.step].ID)
		got := take()
		if len(got) != 1 {
			t.Fatalf("%s: %d changes announced, want 1 before the call returned", tc.name, len(got))
		}
		if diff := cmpDiff(r, got[0]); diff != "" {
			t.Fatalf("%s: announced change differs from the returned one (-returned +announced):\n%s", tc.name, diff)
		}
		noOp(t, b.act(t, tc.fn, steps[tc.step].ID))
		if got := take(); len(got) != 0 {
			t.Fatalf("%s: the no-op was announced", tc.name)
		}
	}
	// Rejected actions announce nothing either.
	if _, err := b.s.StepReset(b.ctx, &store.StepActionParams{StepID: steps["z"].ID, Now: b.now}); !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Fatalf("reset of a running step err = %v", err)
	}
	if got := take(); len(got) != 0 {
		t.Fatal("a rejected action was announced")
	}
}

// A cancel racing the step's completion and its sibling's: exactly one of
// the cancel and the completion wins, and the task is finalized once.
func testStepCancelRacesCompletion(t *testing.T, b *bundle) {
	b.template(t, "t1")
	const n = 12
	for range n {
		res := b.create(t, shape{steps: []string{"x", "y"}}, createOpts{})
		running := b.drive(t, res.Task.ID, nil)
		var (
			wg         sync.WaitGroup
			cancelErr  error
			cancelled  *store.ChangeResult
			completeX  *store.StepCompleteManyResult
			completeY  *store.StepCompleteManyResult
			errX, errY error
		)
		wg.Add(3)
		go func() {
			defer wg.Done()
			cancelled, cancelErr = b.s.StepCancel(b.ctx, &store.StepActionParams{StepID: running["x"].Step.ID, Actor: opActor, Now: b.now})
		}()
		go func() {
			defer wg.Done()
			completeX, errX = b.s.StepCompleteMany(b.ctx, &store.StepCompleteManyParams{Worker: "w1", Now: b.now,
				Outcomes: []store.StepOutcome{outcome(running["x"], store.OutcomeComplete)}})
		}()
		go func() {
			defer wg.Done()
			completeY, errY = b.s.StepCompleteMany(b.ctx, &store.StepCompleteManyParams{Worker: "w1", Now: b.now,
				Outcomes: []store.StepOutcome{outcome(running["y"], store.OutcomeComplete)}})
		}()
		wg.Wait()
		if errX != nil || errY != nil {
			t.Fatalf("completions: %v, %v", errX, errY)
		}
		x := b.steps(t, res.Task.ID)["x"]
		task := b.task(t, res.Task.ID)
		switch {
		case cancelErr == nil:
			if cancelled.Count != 1 || len(completeX.Stale) != 1 || x.State != lifecycle.StepCancelled || task.State != lifecycle.TaskError {
				t.Fatalf("cancel won: cancel %+v, completion stale %v, x %s, task %s", cancelled, completeX.Stale, x.State, task.State)
			}
		case errors.Is(cancelErr, lifecycle.ErrInvalidTransition):
			if len(completeX.Stale) != 0 || x.State != lifecycle.StepComplete || task.State != lifecycle.TaskComplete {
				t.Fatalf("completion won: stale %v, x %s, task %s", completeX.Stale, x.State, task.State)
			}
		default:
			t.Fatalf("cancel: %v", cancelErr)
		}
		finalized := 0
		for _, r := range []*store.ChangeResult{cancelled, &completeX.ChangeResult, &completeY.ChangeResult} {
			if r != nil {
				finalized += len(r.Finalized)
			}
		}
		if finalized != 1 {
			t.Fatalf("task finalized %d times", finalized)
		}
	}
}
