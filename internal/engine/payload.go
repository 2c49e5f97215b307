package engine

import (
	"context"
	"encoding/json"
	"time"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/eventbus"
	"github.com/tasker-go/tasker/internal/store"
)

// This file is the one place where event payloads are built.

// EventFromLog builds the event for a row of the durable event log.
func EventFromLog(e *store.Event) event.Event {
	ev := event.Event{
		Cursor: e.Cursor, Name: e.Name, TaskID: e.TaskID, StepID: e.StepID, StepName: e.StepName,
		TaskName: e.TaskName, Namespace: e.Namespace, Version: e.Version,
		FromState: e.From, ToState: e.To, OccurredAt: e.OccurredAt.UTC(),
	}
	if !e.IsTransition() {
		if len(e.Payload) > 0 {
			var data map[string]any
			if err := json.Unmarshal(e.Payload, &data); err == nil {
				ev.Data = data
			} else {
				ev.Data = map[string]any{"value": json.RawMessage(e.Payload)}
			}
		}
		return ev
	}
	m := e.Metadata
	if e.StepID != "" {
		ev.Attempt, ev.RetryLimit = m.Attempt, m.RetryLimit
	}
	ev.ExecutionDurationMS = m.DurationMS
	ev.ErrorMessage, ev.ErrorClass = m.Error, m.ErrorClass
	data := map[string]any{}
	set := func(k string, v any, ok bool) {
		if ok {
			data[k] = v
		}
	}
	set("worker", m.Worker, m.Worker != "")
	set("lease_token", m.LeaseToken, m.LeaseToken != 0)
	set("lease_expires_at", m.LeaseExpiresAt, !m.LeaseExpiresAt.IsZero())
	set("next_attempt_at", m.NextAttemptAt, !m.NextAttemptAt.IsZero())
	set("permanent", m.Permanent, m.Permanent)
	set("reason", m.Reason, m.Reason != "")
	set("actor", m.Actor, m.Actor != "")
	set("step_count", m.StepCount, m.StepCount != 0)
	set("failed_steps", m.FailedSteps, len(m.FailedSteps) > 0)
	if len(data) > 0 {
		ev.Data = data
	}
	return ev
}

// observation builds an observability event about an attempt.
func (e *Engine) observation(a *attempt, name event.Name, dur time.Duration, err error, data map[string]any) event.Event {
	st := a.cs.Step
	ev := event.Event{
		Name: name, TaskID: st.TaskID, StepID: st.ID, StepName: st.Name,
		TaskName: a.cs.TaskName, Namespace: a.cs.Namespace, Version: a.cs.Version,
		Attempt: st.Attempts, RetryLimit: st.RetryLimit, ExecutionDurationMS: dur.Milliseconds(),
		OccurredAt: e.clock.Now().UTC(), Data: data,
	}
	if err != nil {
		ev.ErrorMessage = err.Error()
		ev.ErrorClass = a.outcome.ErrorClass
	}
	return ev
}

// publishChange publishes, after commit, the log entries of a change with
// the orchestration events they imply, then the observations.
//
// Order: every log entry in commit order; "workflow.no_viable_steps" right
// before the finalizing task transition and "workflow.task_finalized" right
// after it; "workflow.viable_steps_discovered" after the entries of the
// change; observations last.
//
// An event that no subscription names (eventbus.SubscribeOpts.Interest) is
// not built at all: with narrow subscriptions, or none, most log entries
// need no event.
func (e *Engine) publishChange(ctx context.Context, res *store.ChangeResult, observed []event.Event) {
	if res == nil {
		res = &store.ChangeResult{}
	}
	finalized := map[string]store.Finalized{}
	for _, f := range res.Finalized {
		finalized[f.TaskID] = f
	}
	wantReady := len(res.Ready) > 0 && e.wanted(event.WorkflowViableStepsDiscovered)
	var subjects map[string]*store.Event
	if wantReady {
		subjects = map[string]*store.Event{}
	}
	for _, le := range res.Events {
		if wantReady {
			subjects[le.TaskID] = le
		}
		f, isFinal := finalized[le.TaskID]
		isFinal = isFinal && le.StepID == "" && le.To == string(f.State)
		if isFinal && e.wanted(event.WorkflowNoViableSteps) {
			e.publish(ctx, workflowEvent(le, event.WorkflowNoViableSteps, map[string]any{"steps_done": f.StepsDone, "steps_total": f.StepsTotal}))
		}
		if e.wanted(le.Name) {
			e.publish(ctx, EventFromLog(le))
		}
		if isFinal && e.wanted(event.WorkflowTaskFinalized) {
			ev := workflowEvent(le, event.WorkflowTaskFinalized, map[string]any{"steps_done": f.StepsDone, "steps_total": f.StepsTotal})
			ev.ToState = string(f.State)
			e.publish(ctx, ev)
		}
	}
	if wantReady {
		for _, r := range res.Ready {
			subj := subjects[r.TaskID]
			if subj == nil {
				continue
			}
			ev := workflowEvent(subj, event.WorkflowViableStepsDiscovered, map[string]any{"steps": r.Steps})
			ev.OccurredAt = r.At.UTC()
			e.publish(ctx, ev)
		}
	}
	for _, ev := range observed {
		e.publish(ctx, ev)
	}
}

// wanted reports whether some subscription may want events of this name.
func (e *Engine) wanted(name event.Name) bool {
	return e.bus != nil && eventbus.Interested[event.Event](e.bus, string(name))
}

func workflowEvent(subject *store.Event, name event.Name, data map[string]any) event.Event {
	return event.Event{Name: name, TaskID: subject.TaskID, TaskName: subject.TaskName, Namespace: subject.Namespace,
		Version: subject.Version, OccurredAt: subject.OccurredAt.UTC(), Data: data}
}
