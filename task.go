package tasker

import (
	"encoding/json"
	"time"

	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

// TaskState is the state of a task: pending, in_progress, complete, error,
// cancelled or resolved_manually (see docs/state-machines.md).
type TaskState = lifecycle.TaskState

// Task states.
const (
	TaskPending          = lifecycle.TaskPending
	TaskInProgress       = lifecycle.TaskInProgress
	TaskComplete         = lifecycle.TaskComplete
	TaskError            = lifecycle.TaskError
	TaskCancelled        = lifecycle.TaskCancelled
	TaskResolvedManually = lifecycle.TaskResolvedManually
)

// StepState is the state of a step: pending, in_progress,
// waiting_for_retry, complete, error, cancelled or resolved_manually.
type StepState = lifecycle.StepState

// Step states.
const (
	StepPending          = lifecycle.StepPending
	StepInProgress       = lifecycle.StepInProgress
	StepWaitingForRetry  = lifecycle.StepWaitingForRetry
	StepComplete         = lifecycle.StepComplete
	StepError            = lifecycle.StepError
	StepCancelled        = lifecycle.StepCancelled
	StepResolvedManually = lifecycle.StepResolvedManually
)

// Task is one run of a task template.
type Task struct {
	ID        string    `json:"id"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Version   string    `json:"version"`
	State     TaskState `json:"state"`
	// Context is the task's input, as JSON.
	Context json.RawMessage `json:"context"`
	// IdempotencyKey is the key the request carried, if any.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// StepsTotal and StepsDone count all steps and those complete or resolved manually.
	StepsTotal int       `json:"steps_total"`
	StepsDone  int       `json:"steps_done"`
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Steps are filled by Client.Task, in template order.
	Steps []*Step `json:"steps,omitempty"`
}

// Finished reports whether the task will not run anything by itself any
// more: complete, error, cancelled or resolved manually.
func (t *Task) Finished() bool { return t.State.Finished() }

// Step is one node of a task's DAG.
type Step struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Handler string    `json:"handler"`
	State   StepState `json:"state"`
	// Attempts counts the attempts made; RetryLimit is how many are allowed.
	Attempts   int `json:"attempts"`
	RetryLimit int `json:"retry_limit"`
	// Results is the handler's result, once the step is complete.
	Results json.RawMessage `json:"results,omitempty"`
	// LastError and ErrorClass describe the last failed attempt.
	LastError  string `json:"last_error,omitempty"`
	ErrorClass string `json:"error_class,omitempty"`
	// NextAttemptAt is when a step waiting for retry runs again.
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	// Ready reports, for a pending step, that its dependencies are done and
	// it waits only for a worker.
	Ready bool `json:"ready,omitempty"`
	// LeaseOwner and LeaseExpiresAt describe the claim of a running step.
	LeaseOwner     string    `json:"lease_owner,omitempty"`
	LeaseExpiresAt time.Time `json:"lease_expires_at,omitzero"`
	StartedAt      time.Time `json:"started_at,omitzero"`
	FinishedAt     time.Time `json:"finished_at,omitzero"`
}

// Transition is one entry of a task's audit trail: a state change of the
// task (StepID empty) or of one of its steps, with its metadata.
type Transition struct {
	// Cursor is the entry's position in the durable event log.
	Cursor   int64  `json:"cursor"`
	StepID   string `json:"step_id,omitempty"`
	StepName string `json:"step_name,omitempty"`
	// Seq numbers the transitions of one task or step from 1.
	Seq   int    `json:"seq"`
	From  string `json:"from_state"`
	To    string `json:"to_state"`
	Event string `json:"event"`
	// Metadata holds the reason, attempt, error, worker, lease token and duration.
	Metadata   TransitionMetadata `json:"metadata"`
	OccurredAt time.Time          `json:"occurred_at"`
}

// TransitionMetadata is what a transition records besides its states.
type TransitionMetadata = store.Metadata

func taskFromStore(t *store.Task) *Task {
	return &Task{
		ID: t.ID, Namespace: t.Namespace, Name: t.Name, Version: t.Version, State: t.State, Context: t.Context,
		IdempotencyKey: t.IdempotencyKey, StepsTotal: t.StepsTotal, StepsDone: t.StepsDone,
		CreatedAt: t.CreatedAt, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt,
	}
}

func stepFromStore(s *store.Step) *Step {
	out := &Step{
		ID: s.ID, Name: s.Name, Handler: s.Handler, State: s.State, Attempts: s.Attempts, RetryLimit: s.RetryLimit,
		Results: s.Results, LastError: s.LastError, ErrorClass: s.ErrorClass,
		StartedAt: s.StartedAt, FinishedAt: s.FinishedAt,
	}
	if s.State == lifecycle.StepWaitingForRetry {
		out.NextAttemptAt = s.RunAt
	}
	if s.State == lifecycle.StepPending && s.DepsRemaining == 0 {
		out.Ready = true
	}
	if s.State == lifecycle.StepInProgress {
		out.LeaseOwner, out.LeaseExpiresAt = s.LeaseOwner, s.LeaseExpiresAt
	}
	return out
}

func transitionFromStore(e *store.Event) *Transition {
	return &Transition{
		Cursor: e.Cursor, StepID: e.StepID, StepName: e.StepName, Seq: e.Seq, From: e.From, To: e.To,
		Event: string(e.Name), Metadata: e.Metadata, OccurredAt: e.OccurredAt,
	}
}
