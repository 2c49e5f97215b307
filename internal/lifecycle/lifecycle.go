// Package lifecycle holds the task and step state machines: the states, the
// allowed transitions and the event each transition publishes.
//
// It is pure: no I/O, no clock, no goroutines. Stores apply its decisions
// inside the transaction that changes a state and repeat the guard in SQL.
package lifecycle

import (
	"errors"
	"fmt"

	"github.com/tasker-go/tasker/internal/event"
)

// ErrInvalidTransition is returned for a transition the state machine does not allow.
var ErrInvalidTransition = errors.New("invalid transition")

// TaskState is the state of a task.
type TaskState string

// Task states.
const (
	TaskPending          TaskState = "pending"
	TaskInProgress       TaskState = "in_progress"
	TaskComplete         TaskState = "complete"
	TaskError            TaskState = "error"
	TaskCancelled        TaskState = "cancelled"
	TaskResolvedManually TaskState = "resolved_manually"
)

// TaskStates returns every task state.
func TaskStates() []TaskState {
	return []TaskState{TaskPending, TaskInProgress, TaskComplete, TaskError, TaskCancelled, TaskResolvedManually}
}

// Valid reports whether s is a task state.
func (s TaskState) Valid() bool {
	switch s {
	case TaskPending, TaskInProgress, TaskComplete, TaskError, TaskCancelled, TaskResolvedManually:
		return true
	}
	return false
}

// Terminal reports whether no transition leaves s.
func (s TaskState) Terminal() bool {
	return s == TaskComplete || s == TaskCancelled || s == TaskResolvedManually
}

// Finished reports whether the task is not going to run anything by itself:
// a terminal state or error.
func (s TaskState) Finished() bool { return s.Terminal() || s == TaskError }

// StepState is the state of a step.
type StepState string

// Step states.
const (
	StepPending          StepState = "pending"
	StepInProgress       StepState = "in_progress"
	StepWaitingForRetry  StepState = "waiting_for_retry"
	StepComplete         StepState = "complete"
	StepError            StepState = "error"
	StepCancelled        StepState = "cancelled"
	StepResolvedManually StepState = "resolved_manually"
)

// StepStates returns every step state.
func StepStates() []StepState {
	return []StepState{StepPending, StepInProgress, StepWaitingForRetry, StepComplete, StepError, StepCancelled, StepResolvedManually}
}

// Valid reports whether s is a step state.
func (s StepState) Valid() bool {
	switch s {
	case StepPending, StepInProgress, StepWaitingForRetry, StepComplete, StepError, StepCancelled, StepResolvedManually:
		return true
	}
	return false
}

// Terminal reports whether no transition leaves s.
func (s StepState) Terminal() bool {
	return s == StepComplete || s == StepCancelled || s == StepResolvedManually
}

// SatisfiesDependents reports whether a step in state s lets its dependents
// run: complete and resolved_manually do, nothing else (cancelled does not).
func (s StepState) SatisfiesDependents() bool {
	return s == StepComplete || s == StepResolvedManually
}

// Decision is the outcome of asking for a transition.
type Decision struct {
	// Event is the event the transition publishes; empty for a no-op.
	Event event.Name
	// NoOp reports that the entity is already in the requested state: nothing
	// is written and nothing is published.
	NoOp bool
}

// taskEdges lists every allowed task transition and its event.
func taskEdge(from, to TaskState) (event.Name, bool) {
	switch from {
	case "":
		if to == TaskPending {
			return event.TaskInitializeRequested, true
		}
	case TaskPending:
		switch to {
		case TaskInProgress:
			return event.TaskStartRequested, true
		case TaskCancelled:
			return event.TaskCancelled, true
		}
	case TaskInProgress:
		switch to {
		case TaskComplete:
			return event.TaskCompleted, true
		case TaskError:
			return event.TaskFailed, true
		case TaskCancelled:
			return event.TaskCancelled, true
		}
	case TaskError:
		switch to {
		case TaskPending:
			return event.TaskRetryRequested, true
		case TaskResolvedManually:
			return event.TaskResolvedManually, true
		}
	}
	return "", false
}

func stepEdge(from, to StepState) (event.Name, bool) {
	switch from {
	case "":
		if to == StepPending {
			return event.StepInitializeRequested, true
		}
	case StepPending:
		switch to {
		case StepInProgress:
			return event.StepExecutionRequested, true
		case StepResolvedManually:
			return event.StepResolvedManually, true
		case StepCancelled:
			return event.StepCancelled, true
		}
	case StepInProgress:
		switch to {
		case StepComplete:
			return event.StepCompleted, true
		case StepWaitingForRetry:
			return event.StepAttemptFailed, true
		case StepError:
			return event.StepFailed, true
		case StepPending:
			return event.StepRescued, true
		case StepCancelled:
			return event.StepCancelled, true
		}
	case StepWaitingForRetry:
		switch to {
		case StepInProgress:
			return event.StepExecutionRequested, true
		case StepResolvedManually:
			return event.StepResolvedManually, true
		case StepCancelled:
			return event.StepCancelled, true
		}
	case StepError:
		switch to {
		case StepPending:
			return event.StepRetryRequested, true
		case StepResolvedManually:
			return event.StepResolvedManually, true
		case StepCancelled:
			return event.StepCancelled, true
		}
	}
	return "", false
}

// Task decides the task transition from → to. from is empty for creation.
// Asking for the current state is a no-op, not an error; a transition the
// machine does not allow returns an error wrapping ErrInvalidTransition.
func Task(from, to TaskState) (Decision, error) {
	if from != "" && !from.Valid() {
		return Decision{}, fmt.Errorf("task: unknown state %q: %w", from, ErrInvalidTransition)
	}
	if !to.Valid() {
		return Decision{}, fmt.Errorf("task: unknown state %q: %w", to, ErrInvalidTransition)
	}
	if from == to {
		return Decision{NoOp: true}, nil
	}
	ev, ok := taskEdge(from, to)
	if !ok {
		return Decision{}, fmt.Errorf("task: %s → %s: %w", stateName(string(from)), to, ErrInvalidTransition)
	}
	return Decision{Event: ev}, nil
}

// Step decides the step transition from → to. from is empty for creation.
// Asking for the current state is a no-op, not an error; a transition the
// machine does not allow returns an error wrapping ErrInvalidTransition.
func Step(from, to StepState) (Decision, error) {
	if from != "" && !from.Valid() {
		return Decision{}, fmt.Errorf("step: unknown state %q: %w", from, ErrInvalidTransition)
	}
	if !to.Valid() {
		return Decision{}, fmt.Errorf("step: unknown state %q: %w", to, ErrInvalidTransition)
	}
	if from == to {
		return Decision{NoOp: true}, nil
	}
	ev, ok := stepEdge(from, to)
	if !ok {
		return Decision{}, fmt.Errorf("step: %s → %s: %w", stateName(string(from)), to, ErrInvalidTransition)
	}
	return Decision{Event: ev}, nil
}

// TaskSources returns the states from which a task may move to to: the
// machine's allowed predecessors, for guards and documentation.
func TaskSources(to TaskState) []TaskState {
	var out []TaskState
	for _, from := range TaskStates() {
		if _, ok := taskEdge(from, to); ok {
			out = append(out, from)
		}
	}
	return out
}

// StepSources returns the states from which a step may move to to.
func StepSources(to StepState) []StepState {
	var out []StepState
	for _, from := range StepStates() {
		if _, ok := stepEdge(from, to); ok {
			out = append(out, from)
		}
	}
	return out
}

func stateName(s string) string {
	if s == "" {
		return "(new)"
	}
	return s
}

// Finalize decides the end state of an in-progress task from its step
// counts: total steps, steps done (complete or resolved manually) and open
// steps (ready, running or waiting for retry). It returns false while
// something is still open. With nothing open, the task is complete when every
// step is done and in error otherwise (a step failed or was cancelled, so its
// dependents can never run).
func Finalize(total, done, open int) (TaskState, bool) {
	if open > 0 {
		return "", false
	}
	if done >= total {
		return TaskComplete, true
	}
	return TaskError, true
}
