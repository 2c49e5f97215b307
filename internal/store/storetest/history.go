// Package storetest is the conformance suite of the storage seam. Every
// store implementation runs Exercise against a real database; new store
// semantics land here first.
package storetest

import (
	"errors"
	"fmt"

	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

// CheckHistory verifies a set of transitions (as read from the event log):
// for every task and step, sequence numbers run 1, 2, 3... without gaps, each
// transition starts where the previous one ended, the first one creates the
// entity, and every transition is one the state machine allows, with the
// event it names. Custom events are ignored.
func CheckHistory(events []*store.Event) error {
	type key struct{ task, step string }
	last := map[key]*store.Event{}
	var errs []error
	for _, e := range events {
		if !e.IsTransition() {
			continue
		}
		k := key{e.TaskID, e.StepID}
		prev := last[k]
		wantSeq, wantFrom := 1, ""
		if prev != nil {
			wantSeq, wantFrom = prev.Seq+1, prev.To
			if e.Cursor <= prev.Cursor {
				errs = append(errs, fmt.Errorf("%s: cursor %d not after %d", describe(e), e.Cursor, prev.Cursor))
			}
		}
		if e.Seq != wantSeq {
			errs = append(errs, fmt.Errorf("%s: seq %d, want %d", describe(e), e.Seq, wantSeq))
		}
		if e.From != wantFrom {
			errs = append(errs, fmt.Errorf("%s: from %q, but the previous transition ended in %q", describe(e), e.From, wantFrom))
		}
		var (
			d   lifecycle.Decision
			err error
		)
		if e.StepID == "" {
			d, err = lifecycle.Task(lifecycle.TaskState(e.From), lifecycle.TaskState(e.To))
		} else {
			d, err = lifecycle.Step(lifecycle.StepState(e.From), lifecycle.StepState(e.To))
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", describe(e), err))
		case d.NoOp:
			errs = append(errs, fmt.Errorf("%s: a no-op was recorded", describe(e)))
		case d.Event != e.Name:
			errs = append(errs, fmt.Errorf("%s: event %s, the state machine says %s", describe(e), e.Name, d.Event))
		}
		last[k] = e
	}
	return errors.Join(errs...)
}

func describe(e *store.Event) string {
	who := "task " + e.TaskID
	if e.StepID != "" {
		who = fmt.Sprintf("step %s (%s) of task %s", e.StepName, e.StepID, e.TaskID)
	}
	return fmt.Sprintf("%s: transition %d %s → %s", who, e.Cursor, e.From, e.To)
}
