package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

// StepReset moves a failed step back to pending with a fresh retry budget;
// a task in error resumes in the same transaction.
func (s *Store) StepReset(ctx context.Context, p *store.StepActionParams) (*store.ChangeResult, error) {
	return s.stepAction(ctx, store.ActionReset, p)
}

// StepResolve marks a step resolved_manually and releases its children; a
// task in error resumes when that lets it progress.
func (s *Store) StepResolve(ctx context.Context, p *store.StepActionParams) (*store.ChangeResult, error) {
	return s.stepAction(ctx, store.ActionResolve, p)
}

// StepCancel cancels an unfinished step, dropping its lease if it runs.
func (s *Store) StepCancel(ctx context.Context, p *store.StepActionParams) (*store.ChangeResult, error) {
	return s.stepAction(ctx, store.ActionCancel, p)
}

// stepAction applies an operator action to one step, with the task
// transitions store.PlanStepAction asks for, and runs the finalizer. It
// locks the task, then the step, like every write.
func (s *Store) stepAction(ctx context.Context, a store.StepAction, p *store.StepActionParams) (*store.ChangeResult, error) {
	c, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, c *change) error {
		byID, err := c.lockForSteps(ctx, tx, []string{p.StepID})
		if err != nil {
			return err
		}
		st := byID[p.StepID]
		if st == nil {
			return fmt.Errorf("step %s: %w", p.StepID, store.ErrNotFound)
		}
		t, err := c.task(st.TaskID)
		if err != nil {
			return err
		}
		plan, err := store.PlanStepAction(a, st.State, t.State)
		if err != nil || plan.NoOp {
			return err
		}
		meta := store.Metadata{Reason: p.Reason, Actor: p.Actor}
		c.operator = meta
		if plan.Resume {
			if err := c.transitionTask(t, lifecycle.TaskPending, meta); err != nil {
				return err
			}
		}
		if err := c.applyStep(t, st, stepChange{to: a.Target(), meta: meta, raiseLimit: a == store.ActionReset}); err != nil {
			return err
		}
		// A resolve decides after the fact, from what the step's release
		// made ready: its event comes first, then the task's resumption.
		if plan.ResumeIfProgress {
			// What the release made ready is known once it is sent.
			if err := c.sync(ctx, tx); err != nil {
				return err
			}
			done := t.StepsDone
			if d := c.deltas[t.ID]; d != nil {
				done += d.done
			}
			if store.ResolveResumes(c.readyCount(t.ID), done, t.StepsTotal) {
				if err := c.transitionTask(t, lifecycle.TaskPending, meta); err != nil {
					return err
				}
				plan.Resume = true
			}
		}
		if plan.Resume {
			if err := c.transitionTask(t, lifecycle.TaskInProgress, meta); err != nil {
				return err
			}
		}
		c.count = 1
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s step %s: %w", a, p.StepID, err)
	}
	return c.result(), nil
}

// readyCount is how many steps of a task this change made ready.
func (c *change) readyCount(taskID string) int {
	for _, r := range c.ready {
		if r.TaskID == taskID {
			return len(r.Steps)
		}
	}
	return 0
}

// countReadySQL counts claimable steps (steps_claim).
const countReadySQL = "SELECT COUNT(*) FROM steps WHERE run_at IS NOT NULL AND run_at <= $1"

// StepCountReady counts steps claimable at now.
func (s *Store) StepCountReady(ctx context.Context, now time.Time) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, countReadySQL, now.UTC()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count ready steps: %w", err)
	}
	return n, nil
}

// StateCounts counts tasks and steps by state.
func (s *Store) StateCounts(ctx context.Context, namespace string) (*store.StateCounts, error) {
	out := &store.StateCounts{Tasks: map[lifecycle.TaskState]int{}, Steps: map[lifecycle.StepState]int{}}
	taskQ, stepQ := "SELECT state, COUNT(*) FROM tasks GROUP BY state", "SELECT state, COUNT(*) FROM steps GROUP BY state"
	var args []any
	if namespace != "" {
		taskQ = "SELECT state, COUNT(*) FROM tasks WHERE namespace = $1 GROUP BY state"
		stepQ = "SELECT s.state, COUNT(*) FROM steps s JOIN tasks t ON t.id = s.task_id WHERE t.namespace = $1 GROUP BY s.state"
		args = append(args, namespace)
	}
	count := func(q string, add func(state string, n int)) error {
		rows, err := s.pool.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var state string
			var n int
			if err := rows.Scan(&state, &n); err != nil {
				return err
			}
			add(state, n)
		}
		return rows.Err()
	}
	if err := count(taskQ, func(st string, n int) { out.Tasks[lifecycle.TaskState(st)] = n }); err != nil {
		return nil, fmt.Errorf("count tasks: %w", err)
	}
	if err := count(stepQ, func(st string, n int) { out.Steps[lifecycle.StepState(st)] = n }); err != nil {
		return nil, fmt.Errorf("count steps: %w", err)
	}
	return out, nil
}
