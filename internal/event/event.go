// Package event defines the catalog of events Tasker publishes and the one
// place where their payloads are built.
//
// Every event has the same envelope (Event) with the same keys everywhere;
// which keys an event sets, and which extra Data keys it carries, is listed
// in Catalog and documented in docs/events.md (a test keeps the two equal).
package event

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Event is one published fact. Lifecycle events (task.* and step.*) and custom
// events are also stored in the durable event log; Cursor is their position
// there. Workflow and observability events exist only in process (Cursor 0).
type Event struct {
	// Cursor is the event's position in the durable event log, 0 if it is not stored.
	Cursor int64 `json:"cursor,omitempty"`
	// Name is the event name, such as "step.completed".
	Name Name `json:"name"`
	// TaskID is the task the event is about.
	TaskID string `json:"task_id"`
	// StepID and StepName identify the step, for step events.
	StepID   string `json:"step_id,omitempty"`
	StepName string `json:"step_name,omitempty"`
	// TaskName, Namespace and Version identify the task's template.
	TaskName  string `json:"task_name"`
	Namespace string `json:"namespace"`
	Version   string `json:"version"`
	// Attempt is the step's attempt number (1 for the first run).
	Attempt int `json:"attempt,omitempty"`
	// RetryLimit is the step's maximum number of attempts.
	RetryLimit int `json:"retry_limit,omitempty"`
	// FromState and ToState are set for lifecycle events; FromState is empty for creation.
	FromState string `json:"from_state,omitempty"`
	ToState   string `json:"to_state,omitempty"`
	// ExecutionDurationMS is how long the handler ran, in milliseconds.
	ExecutionDurationMS int64 `json:"execution_duration_ms,omitempty"`
	// ErrorMessage and ErrorClass describe a failure.
	ErrorMessage string `json:"error_message,omitempty"`
	ErrorClass   string `json:"error_class,omitempty"`
	// OccurredAt is when the fact happened (UTC).
	OccurredAt time.Time `json:"occurred_at"`
	// Data holds the event's extra keys (see Catalog), or a custom event's payload.
	Data map[string]any `json:"data,omitempty"`
}

// Kind groups events.
type Kind string

// Event kinds.
const (
	KindTaskLifecycle Kind = "task lifecycle"
	KindStepLifecycle Kind = "step lifecycle"
	KindWorkflow      Kind = "workflow"
	KindObservability Kind = "observability"
	KindCustom        Kind = "custom"
)

// Spec documents one event of the catalog.
type Spec struct {
	Name Name
	Kind Kind
	// Durable reports whether the event is stored in the durable event log.
	Durable bool
	// Keys lists the envelope keys the event sets, besides name, task_id,
	// task_name, namespace, version and occurred_at which every event sets.
	Keys []string
	// Data lists the keys of Event.Data.
	Data []string
	// Description says what happened.
	Description string
}

// Catalog returns every event the engine publishes, in documentation order.
func Catalog() []Spec {
	step := []string{"step_id", "step_name", "attempt", "retry_limit"}
	trans := []string{"from_state", "to_state"}
	withErr := []string{"error_message", "error_class"}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	return []Spec{
		{TaskInitializeRequested, KindTaskLifecycle, true, trans, []string{"step_count"}, "A task was created in state pending."},
		{TaskStartRequested, KindTaskLifecycle, true, trans, []string{"reason", "actor"}, "pending → in_progress: the task started (at creation, or again after a retry); its ready steps can run."},
		{TaskCompleted, KindTaskLifecycle, true, trans, []string{"reason", "actor"}, "in_progress → complete: every step is complete or resolved manually."},
		{TaskFailed, KindTaskLifecycle, true, cat(trans, withErr), []string{"failed_steps", "reason", "actor"}, "in_progress → error: nothing can run any more and some step is not done."},
		{TaskCancelled, KindTaskLifecycle, true, trans, []string{"reason", "actor"}, "pending|in_progress → cancelled: the task and its unfinished steps were cancelled."},
		{TaskRetryRequested, KindTaskLifecycle, true, trans, []string{"reason", "actor"}, "error → pending: an operator asked to retry the failed steps."},
		{TaskResolvedManually, KindTaskLifecycle, true, trans, []string{"reason", "actor"}, "error → resolved_manually: an operator closed the task by hand."},

		{StepInitializeRequested, KindStepLifecycle, true, cat(step, trans), nil, "A step was created in state pending."},
		{StepExecutionRequested, KindStepLifecycle, true, cat(step, trans), []string{"worker", "lease_token", "lease_expires_at"}, "pending|waiting_for_retry → in_progress: a worker claimed the step under a lease."},
		{StepCompleted, KindStepLifecycle, true, cat(step, trans, []string{"execution_duration_ms"}), []string{"worker", "lease_token"}, "in_progress → complete: the handler succeeded; its result is stored."},
		{StepAttemptFailed, KindStepLifecycle, true, cat(step, trans, []string{"execution_duration_ms"}, withErr), []string{"worker", "lease_token", "next_attempt_at"}, "in_progress → waiting_for_retry: a retryable failure; the next attempt is due at next_attempt_at."},
		{StepFailed, KindStepLifecycle, true, cat(step, trans, []string{"execution_duration_ms"}, withErr), []string{"worker", "lease_token", "permanent", "reason", "actor"}, "in_progress → error: a permanent failure, the last allowed attempt failed, or its lease expired on the last allowed attempt (reason set)."},
		{StepRescued, KindStepLifecycle, true, cat(step, trans), []string{"worker", "lease_token", "reason", "actor"}, "in_progress → pending: the step's lease expired or its worker died (the attempt counts), or its worker stopped and released it (the attempt is refunded); it is claimable again."},
		{StepRetryRequested, KindStepLifecycle, true, cat(step, trans), []string{"reason", "actor"}, "error → pending: an operator reset the step for another attempt."},
		{StepResolvedManually, KindStepLifecycle, true, cat(step, trans), []string{"reason", "actor"}, "pending|waiting_for_retry|error → resolved_manually: the step counts as done without running."},
		{StepCancelled, KindStepLifecycle, true, cat(step, trans), []string{"reason", "actor"}, "any non-terminal state → cancelled."},

		{WorkflowViableStepsDiscovered, KindWorkflow, false, nil, []string{"steps"}, "Steps of the task became ready to run (roots at start, children when their last dependency completed)."},
		{WorkflowNoViableSteps, KindWorkflow, false, nil, []string{"steps_done", "steps_total"}, "The task has nothing ready, running or waiting for retry; the finalizer decides its end state."},
		{WorkflowTaskFinalized, KindWorkflow, false, []string{"to_state"}, []string{"steps_done", "steps_total"}, "The finalizer moved the task to complete or error (exactly once)."},

		{StepHandled, KindObservability, false, cat(step, []string{"execution_duration_ms"}, withErr), []string{"outcome"}, "A handler returned or timed out; outcome is success, retry or failure."},
		{StepBackoff, KindObservability, false, cat(step, withErr), []string{"backoff_ms", "backoff_type", "next_attempt_at"}, "A retry delay was chosen: backoff_type is exponential or requested (the handler asked for it)."},
		{StepMaxRetriesReached, KindObservability, false, cat(step, withErr), nil, "A retryable failure happened on the last allowed attempt; the step fails."},
		{StepResultDiscarded, KindObservability, false, step, []string{"worker", "lease_token"}, "A result arrived from a worker that no longer held the step's lease; it was discarded."},
	}
}

// Lookup returns the catalog entry for name.
func Lookup(name Name) (Spec, bool) {
	for _, s := range Catalog() {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

var customNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)

// reservedPrefixes are the namespaces of engine events.
var reservedPrefixes = []string{"task.", "step.", "workflow.", "tasker."}

// ValidateCustomName reports whether name can be used for a custom event: at
// least two dot-separated lowercase words, outside the engine's namespaces.
func ValidateCustomName(name string) error {
	if len(name) > 128 {
		return fmt.Errorf("event name %q is longer than 128 characters", name)
	}
	if !customNameRE.MatchString(name) {
		return fmt.Errorf("event name %q must be dot-separated lowercase words such as \"order.placed\"", name)
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("event name %q uses the reserved namespace %q", name, strings.TrimSuffix(p, "."))
		}
	}
	return nil
}
