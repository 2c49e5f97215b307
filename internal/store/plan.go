package store

import (
	"errors"
	"fmt"
	"strings"

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
func CreationEvents(task *Task, steps []StepSpec, stepIDs []string) ([]*Event, Ready, error) {
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
		Metadata: Metadata{StepCount: len(steps)}}))
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
