package event

// Name is the name of an event, such as "step.completed". Every name the
// engine publishes is a constant below; custom events declared by task
// templates use names of their own (see ValidateCustomName).
type Name string

// Task lifecycle events: one per task transition.
const (
	// TaskInitializeRequested: a task was created in state pending.
	TaskInitializeRequested Name = "task.initialize_requested"
	// TaskStartRequested: pending → in_progress; the task's root steps are ready.
	TaskStartRequested Name = "task.start_requested"
	// TaskCompleted: in_progress → complete; every step is complete or resolved manually.
	TaskCompleted Name = "task.completed"
	// TaskFailed: in_progress → error; nothing can run and some step is not done.
	TaskFailed Name = "task.failed"
	// TaskCancelled: pending|in_progress → cancelled.
	TaskCancelled Name = "task.cancelled"
	// TaskRetryRequested: error → pending; an operator asked to retry the failed steps.
	TaskRetryRequested Name = "task.retry_requested"
	// TaskResolvedManually: error → resolved_manually.
	TaskResolvedManually Name = "task.resolved_manually"
)

// Step lifecycle events: one per step transition.
const (
	// StepInitializeRequested: a step was created in state pending.
	StepInitializeRequested Name = "step.initialize_requested"
	// StepExecutionRequested: pending|waiting_for_retry → in_progress; a worker claimed the step under a lease.
	StepExecutionRequested Name = "step.execution_requested"
	// StepCompleted: in_progress → complete.
	StepCompleted Name = "step.completed"
	// StepAttemptFailed: in_progress → waiting_for_retry; a retryable failure, the next attempt is scheduled.
	StepAttemptFailed Name = "step.attempt_failed"
	// StepFailed: in_progress → error; a permanent failure or the retry limit is reached.
	StepFailed Name = "step.failed"
	// StepRescued: in_progress → pending; the lease expired (or its owner died) and the step is claimable again.
	StepRescued Name = "step.rescued"
	// StepRetryRequested: error → pending; an operator reset the step.
	StepRetryRequested Name = "step.retry_requested"
	// StepResolvedManually: pending|waiting_for_retry|error → resolved_manually.
	StepResolvedManually Name = "step.resolved_manually"
	// StepCancelled: any non-terminal state → cancelled.
	StepCancelled Name = "step.cancelled"
)

// Orchestration events: facts about the engine's decisions, not state changes.
const (
	// WorkflowViableStepsDiscovered: steps of a task became ready to run.
	WorkflowViableStepsDiscovered Name = "workflow.viable_steps_discovered"
	// WorkflowNoViableSteps: a task has nothing ready, running or waiting for retry.
	WorkflowNoViableSteps Name = "workflow.no_viable_steps"
	// WorkflowTaskFinalized: the finalizer moved a task to complete or error.
	WorkflowTaskFinalized Name = "workflow.task_finalized"
)

// Observability events.
const (
	// StepHandled: a handler returned (or timed out); carries its duration.
	StepHandled Name = "step.handled"
	// StepBackoff: a retry delay was chosen for a failed attempt.
	StepBackoff Name = "step.backoff"
	// StepMaxRetriesReached: a retryable failure happened on the last allowed attempt.
	StepMaxRetriesReached Name = "step.max_retries_reached"
	// StepResultDiscarded: a completion arrived from a worker that no longer held the step's lease.
	StepResultDiscarded Name = "step.result_discarded"
)
