package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tasker-go/tasker/internal/lifecycle"
)

// This file holds the parts of the stores' write logic that do not depend
// on the database: validation of inputs and the records a change writes.

// ValidateTaskCreate checks the inputs of TaskCreate.
func ValidateTaskCreate(p *TaskCreateParams) error {
	if p.TemplateID == "" || p.Namespace == "" || p.Name == "" || p.Version == "" {
		return errors.New("create task: template id, namespace, name and version are required")
	}
	if len(p.Steps) == 0 {
		return errors.New("create task: a task needs at least one step")
	}
	for i, st := range p.Steps {
		if st.Name == "" || st.Handler == "" || st.MaxAttempts < 1 || st.Timeout <= 0 {
			return fmt.Errorf("create task: step %d: name, handler, max attempts and timeout are required", i)
		}
		for _, par := range st.Parents {
			if par < 0 || par >= len(p.Steps) || par == i {
				return fmt.Errorf("create task: step %q: bad parent index %d", st.Name, par)
			}
		}
	}
	if len(p.Context) == 0 {
		return errors.New("create task: context is required (use {} or null for none)")
	}
	return nil
}

// CreationEvents returns the log entries of a task's creation and start, in
// order: task.initialize_requested, one step.initialize_requested per step,
// task.start_requested; and the steps that are ready at once (the roots).
// The entries carry the task's identity but no cursor yet.
func CreationEvents(task *Task, steps []StepSpec, stepIDs []string, actor string) ([]*Event, Ready, error) {
	at := task.CreatedAt
	subject := func(e *Event) *Event {
		e.TaskID, e.Namespace, e.TaskName, e.Version, e.OccurredAt = task.ID, task.Namespace, task.Name, task.Version, at
		return e
	}
	events := make([]*Event, 0, len(steps)+2)
	d, err := lifecycle.Task("", lifecycle.TaskPending)
	if err != nil {
		return nil, Ready{}, err
	}
	events = append(events, subject(&Event{Name: d.Event, Seq: 1, To: string(lifecycle.TaskPending),
		Metadata: Metadata{StepCount: len(steps), Actor: actor}}))
	sd, err := lifecycle.Step("", lifecycle.StepPending)
	if err != nil {
		return nil, Ready{}, err
	}
	ready := Ready{TaskID: task.ID, At: at}
	for i, st := range steps {
		events = append(events, subject(&Event{StepID: stepIDs[i], StepName: st.Name, Name: sd.Event, Seq: 1,
			To: string(lifecycle.StepPending), Metadata: Metadata{RetryLimit: st.MaxAttempts}}))
		if len(st.Parents) == 0 {
			ready.Steps = append(ready.Steps, st.Name)
		}
	}
	d, err = lifecycle.Task(lifecycle.TaskPending, lifecycle.TaskInProgress)
	if err != nil {
		return nil, Ready{}, err
	}
	events = append(events, subject(&Event{Name: d.Event, Seq: 2, From: string(lifecycle.TaskPending),
		To: string(lifecycle.TaskInProgress)}))
	return events, ready, nil
}

// ClaimEvent is the log entry of a step's claim: from its state before to
// in_progress, for the step as it is once claimed (attempt, lease). It
// carries no task identity; the store's change adds it.
func ClaimEvent(st *Step, from lifecycle.StepState) (*Event, error) {
	d, err := lifecycle.Step(from, lifecycle.StepInProgress)
	if err != nil {
		return nil, err
	}
	return &Event{StepID: st.ID, StepName: st.Name, Name: d.Event, Seq: st.Seq, From: string(from),
		To: string(lifecycle.StepInProgress), Metadata: Metadata{Attempt: st.Attempts, RetryLimit: st.RetryLimit,
			Worker: st.LeaseOwner, LeaseToken: st.LeaseToken, LeaseExpiresAt: st.LeaseExpiresAt}}, nil
}

// CreationClaim is what a creation with TaskCreateParams.Claim claims: for
// each claimed step (its index in Steps), the step as stored, running under
// the claim's lease, and its claim's log entry, which follows the creation's.
type CreationClaim struct {
	Index   []int
	Steps   []*ClaimedStep
	Events  []*Event
	Expires time.Time
}

// Claimed reports whether step i is claimed.
func (c *CreationClaim) Claimed(i int) bool { return slices.Contains(c.Index, i) }

// ClaimAtCreation decides which roots of a new task p.Claim claims (none
// when p.Claim is nil), in step order, and returns them with their claim's
// log entries. task is the new task, stepIDs the ids of its steps.
func ClaimAtCreation(task *Task, p *TaskCreateParams, stepIDs []string) (*CreationClaim, error) {
	out := &CreationClaim{}
	cl := p.Claim
	if cl == nil || cl.Limit <= 0 || len(cl.TaskIDs) > 0 ||
		(len(cl.TemplateIDs) > 0 && !slices.Contains(cl.TemplateIDs, p.TemplateID)) ||
		slices.Contains(cl.ExcludeTemplateIDs, p.TemplateID) {
		return out, nil
	}
	if err := ValidateClaim(cl); err != nil {
		return nil, fmt.Errorf("create task: claim: %w", err)
	}
	now := task.CreatedAt.UTC().Truncate(time.Microsecond)
	out.Expires = now.Add(cl.LeaseTTL)
	for i, st := range p.Steps {
		if len(out.Index) == cl.Limit {
			break
		}
		if len(st.Parents) > 0 || (len(cl.Handlers) > 0 && !slices.Contains(cl.Handlers, st.Handler)) {
			continue
		}
		out.Index = append(out.Index, i)
		step := &Step{ID: stepIDs[i], TaskID: task.ID, Index: i, Name: st.Name, TemplateID: p.TemplateID, Handler: st.Handler,
			State: lifecycle.StepInProgress, Attempts: 1, MaxAttempts: st.MaxAttempts, RetryLimit: st.MaxAttempts,
			Timeout: st.Timeout, LeaseOwner: cl.Worker, LeaseToken: cl.LeaseToken, LeaseExpiresAt: out.Expires, Seq: 2,
			CreatedAt: now, UpdatedAt: now, StartedAt: now}
		out.Steps = append(out.Steps, &ClaimedStep{Step: step, Namespace: task.Namespace, TaskName: task.Name,
			Version: task.Version, Context: task.Context})
		e, err := ClaimEvent(step, lifecycle.StepPending)
		if err != nil {
			return nil, err
		}
		e.TaskID, e.Namespace, e.TaskName, e.Version, e.OccurredAt = task.ID, task.Namespace, task.Name, task.Version, now
		out.Events = append(out.Events, e)
	}
	return out, nil
}

// FailureMetadata is the metadata of the finalizer's task.failed, given the
// steps that are in error or cancelled.
func FailureMetadata(failed []string) Metadata {
	m := Metadata{FailedSteps: failed, ErrorClass: "blocked", Error: "steps not done: " + strings.Join(failed, ", ")}
	if len(failed) == 0 {
		m.Error = "no step can run"
	}
	return m
}

// StepOpen reports whether a step counts as open for its task's finalizer:
// ready, running or waiting for retry.
func StepOpen(state lifecycle.StepState, depsRemaining int) bool {
	switch state {
	case lifecycle.StepInProgress, lifecycle.StepWaitingForRetry:
		return true
	case lifecycle.StepPending:
		return depsRemaining == 0
	}
	return false
}

// StepDelta is how a step transition changes its task's counters.
func StepDelta(from, to lifecycle.StepState, depsRemaining int) (done, open int) {
	wasOpen, nowOpen := StepOpen(from, depsRemaining), StepOpen(to, depsRemaining)
	switch {
	case nowOpen && !wasOpen:
		open = 1
	case !nowOpen && wasOpen:
		open = -1
	}
	if to.SatisfiesDependents() && !from.SatisfiesDependents() {
		done = 1
	}
	return done, open
}

// StepAction is an operator action on one step.
type StepAction int

// Operator actions on a step.
const (
	// ActionReset is StepReset: error → pending with a fresh retry budget.
	ActionReset StepAction = iota + 1
	// ActionResolve is StepResolve: pending|waiting_for_retry|error → resolved_manually.
	ActionResolve
	// ActionCancel is StepCancel: any non-terminal state → cancelled.
	ActionCancel
)

func (a StepAction) String() string {
	switch a {
	case ActionReset:
		return "reset"
	case ActionResolve:
		return "resolve"
	case ActionCancel:
		return "cancel"
	}
	return fmt.Sprintf("StepAction(%d)", int(a))
}

// Target is the state the action moves a step to.
func (a StepAction) Target() lifecycle.StepState {
	switch a {
	case ActionReset:
		return lifecycle.StepPending
	case ActionResolve:
		return lifecycle.StepResolvedManually
	case ActionCancel:
		return lifecycle.StepCancelled
	}
	return ""
}

// StepActionPlan is what an operator action on a step writes.
type StepActionPlan struct {
	// NoOp reports that the step already is in the action's target state:
	// nothing is written and nothing is announced.
	NoOp bool
	// Resume reports that the task is in error and resumes around the step
	// change: error → pending before it, pending → in_progress after it.
	Resume bool
	// ResumeIfProgress reports that the task is in error and resumes after
	// the step change (error → pending → in_progress) only when
	// ResolveResumes says the change lets it make progress.
	ResumeIfProgress bool
}

// PlanStepAction decides an operator action on a step in state step of a
// task in state task. Asking for the state the step is already in is a
// no-op whatever the task's state. A transition the step's state machine
// does not allow, a reset of anything but a failed step, and an action on a
// task that is neither in progress nor in error (a cancel or resolve of a
// finished task's step, a reset in a task that is not running or failed)
// return an error wrapping lifecycle.ErrInvalidTransition. (A task is
// pending only inside the transaction that creates or retries it, so a
// pending task is rejected too.)
func PlanStepAction(a StepAction, step lifecycle.StepState, task lifecycle.TaskState) (StepActionPlan, error) {
	to := a.Target()
	if to == "" {
		return StepActionPlan{}, fmt.Errorf("unknown step action %d", int(a))
	}
	d, err := lifecycle.Step(step, to)
	if err != nil {
		return StepActionPlan{}, err
	}
	if d.NoOp {
		return StepActionPlan{NoOp: true}, nil
	}
	// in_progress → pending is the rescuer's transition, not an operator's.
	if a == ActionReset && step != lifecycle.StepError {
		return StepActionPlan{}, fmt.Errorf("step: reset of a %s step: only failed steps reset: %w", step, lifecycle.ErrInvalidTransition)
	}
	switch task {
	case lifecycle.TaskInProgress:
		return StepActionPlan{}, nil
	case lifecycle.TaskError:
		switch a {
		case ActionReset:
			return StepActionPlan{Resume: true}, nil
		case ActionResolve:
			return StepActionPlan{ResumeIfProgress: true}, nil
		}
		return StepActionPlan{}, nil
	}
	return StepActionPlan{}, fmt.Errorf("step %s in a task that is %s: %w", a, task, lifecycle.ErrInvalidTransition)
}

// ResolveResumes reports whether a task in error resumes after one of its
// steps was resolved manually: when the resolution made steps ready (ready
// is how many) or left every step done (then the finalizer completes the
// task at once). Otherwise nothing could run and the task stays in error.
func ResolveResumes(ready, done, total int) bool {
	return ready > 0 || done >= total
}

// NamePatterns splits EventListParams.Names into exact event names and
// prefixes: a pattern ending in ".*" matches every name that starts with
// what comes before the "*" ("step.*" keeps "step.completed"). A pattern
// that is empty, is "*" alone or holds a "*" anywhere else is an error.
func NamePatterns(patterns []string) (exact, prefixes []string, err error) {
	for _, p := range patterns {
		prefix, isPrefix := strings.CutSuffix(p, ".*")
		switch {
		case isPrefix && prefix != "" && !strings.Contains(prefix, "*"):
			prefixes = append(prefixes, prefix+".")
		case !isPrefix && p != "" && !strings.Contains(p, "*"):
			exact = append(exact, p)
		default:
			return nil, nil, fmt.Errorf("bad event name pattern %q: want a name or a prefix ending in .*", p)
		}
	}
	return exact, prefixes, nil
}

// EscapeLike escapes the wildcards of a LIKE pattern (% and _) and the
// escape character itself, for LIKE ... ESCAPE '\'.
func EscapeLike(s string) string {
	return likeEscaper.Replace(s)
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// ValidateTokenCreate checks the inputs of TokenCreate.
func ValidateTokenCreate(p *TokenCreateParams) error {
	if p.ID == "" || p.Name == "" || p.Role == "" || p.Hash == "" {
		return errors.New("create token: id, name, role and hash are required")
	}
	if p.Now.IsZero() {
		return errors.New("create token: the creation time is required")
	}
	return nil
}
