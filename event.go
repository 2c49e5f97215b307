package tasker

import (
	"strings"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/eventbus"
)

// Event is a published fact, such as "step.completed". Every event has the
// same keys (see docs/events.md); Data carries the event's extra keys or a
// custom event's payload.
type Event = event.Event

// EventName is the name of an event.
type EventName = event.Name

// EventSpec documents one event of the catalog.
type EventSpec = event.Spec

// EventCatalog returns every event the engine publishes.
func EventCatalog() []EventSpec { return event.Catalog() }

// Event names. See docs/events.md for their payloads.
const (
	EventTaskInitializeRequested = event.TaskInitializeRequested
	EventTaskStartRequested      = event.TaskStartRequested
	EventTaskCompleted           = event.TaskCompleted
	EventTaskFailed              = event.TaskFailed
	EventTaskCancelled           = event.TaskCancelled
	EventTaskRetryRequested      = event.TaskRetryRequested
	EventTaskResolvedManually    = event.TaskResolvedManually

	EventStepInitializeRequested = event.StepInitializeRequested
	EventStepExecutionRequested  = event.StepExecutionRequested
	EventStepCompleted           = event.StepCompleted
	EventStepAttemptFailed       = event.StepAttemptFailed
	EventStepFailed              = event.StepFailed
	EventStepRescued             = event.StepRescued
	EventStepRetryRequested      = event.StepRetryRequested
	EventStepResolvedManually    = event.StepResolvedManually
	EventStepCancelled           = event.StepCancelled

	EventWorkflowViableStepsDiscovered = event.WorkflowViableStepsDiscovered
	EventWorkflowNoViableSteps         = event.WorkflowNoViableSteps
	EventWorkflowTaskFinalized         = event.WorkflowTaskFinalized

	EventStepHandled           = event.StepHandled
	EventStepBackoff           = event.StepBackoff
	EventStepMaxRetriesReached = event.StepMaxRetriesReached
	EventStepResultDiscarded   = event.StepResultDiscarded
)

// SubscribeOpts choose the events of a subscription.
type SubscribeOpts struct {
	// Names are event name patterns: an exact name ("task.completed"), a
	// prefix ending in ".*" ("step.*"), or "*". Empty means every event.
	Names []string
	// TaskID, when set, keeps only the events of one task.
	TaskID string
	// Buffer is the subscription's queue length. Default 1024.
	Buffer int
	// Block makes the engine wait for room in a full queue instead of
	// dropping the event for this subscriber. It slows the engine down to
	// the subscriber's pace: use it only for consumers that must see every
	// event, such as tests. For durable, resumable consumption read the
	// event log with Client.Events instead.
	Block bool
}

// Subscription receives events published in this process, after the
// changes they describe are committed.
type Subscription struct {
	sub *eventbus.Subscription[event.Event]
}

// Events returns the channel of events; it is closed by Close.
func (s *Subscription) Events() <-chan Event { return s.sub.Events() }

// Dropped counts events dropped because the queue was full.
func (s *Subscription) Dropped() uint64 { return s.sub.Dropped() }

// Close ends the subscription.
func (s *Subscription) Close() { s.sub.Close() }

func subscribe(bus *eventbus.Bus, opts *SubscribeOpts) *Subscription {
	if opts == nil {
		opts = &SubscribeOpts{}
	}
	names := append([]string(nil), opts.Names...)
	taskID := opts.TaskID
	policy := eventbus.DropNewest
	if opts.Block {
		policy = eventbus.Block
	}
	sub := eventbus.Subscribe(bus, eventbus.SubscribeOpts[event.Event]{
		Buffer: opts.Buffer,
		Policy: policy,
		Filter: func(e event.Event) bool {
			if taskID != "" && e.TaskID != taskID {
				return false
			}
			return MatchEventName(names, string(e.Name))
		},
		// The engine builds only the events some subscription names.
		Interest: func(name string) bool { return MatchEventName(names, name) },
	})
	return &Subscription{sub: sub}
}

// MatchEventName reports whether name matches one of the patterns: an exact
// name, a prefix ending in ".*", or "*". No patterns match every name.
func MatchEventName(patterns []string, name string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		switch {
		case p == "*" || p == name:
			return true
		case strings.HasSuffix(p, ".*") && strings.HasPrefix(name, strings.TrimSuffix(p, "*")):
			return true
		}
	}
	return false
}
