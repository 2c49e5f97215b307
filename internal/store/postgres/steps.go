package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

const stepColumns = `id, task_id, idx, name, template_id, handler, state, attempts, max_attempts, retry_limit, timeout_us,
	deps_remaining, run_at, lease_owner, lease_token, lease_expires_at, results::text, last_error, error_class, seq,
	created_at, updated_at, started_at, finished_at`

func scanStep(row pgx.Row) (*store.Step, error) {
	var (
		s                                 store.Step
		state                             string
		timeout                           int64
		runAt, expires, started, finished *time.Time
		owner, results, lastErr, errClass *string
		token                             *int64
	)
	if err := row.Scan(&s.ID, &s.TaskID, &s.Index, &s.Name, &s.TemplateID, &s.Handler, &state, &s.Attempts, &s.MaxAttempts,
		&s.RetryLimit, &timeout, &s.DepsRemaining, &runAt, &owner, &token, &expires, &results, &lastErr, &errClass, &s.Seq,
		&s.CreatedAt, &s.UpdatedAt, &started, &finished); err != nil {
		return nil, err
	}
	s.State = lifecycle.StepState(state)
	s.Timeout = time.Duration(timeout) * time.Microsecond
	s.RunAt, s.LeaseExpiresAt = utc(runAt), utc(expires)
	s.LeaseOwner, s.LeaseToken = deref(owner), deref(token)
	if results != nil {
		s.Results = json.RawMessage(*results)
	}
	s.LastError, s.ErrorClass = deref(lastErr), deref(errClass)
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	s.StartedAt, s.FinishedAt = utc(started), utc(finished)
	return &s, nil
}

func collectSteps(rows pgx.Rows, err error) ([]*store.Step, error) {
	if err != nil {
		return nil, fmt.Errorf("load steps: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Step, error) { return scanStep(r) })
	if err != nil {
		return nil, fmt.Errorf("load steps: %w", err)
	}
	return out, nil
}

// lockSteps locks the steps matching where FOR UPDATE, in id order.
func lockSteps(ctx context.Context, tx pgx.Tx, where string, args ...any) ([]*store.Step, error) {
	return collectSteps(tx.Query(ctx, "SELECT "+stepColumns+" FROM steps WHERE "+where+" ORDER BY id FOR UPDATE", args...))
}

// StepListByTask returns a task's steps in template order.
func (s *Store) StepListByTask(ctx context.Context, taskID string) ([]*store.Step, error) {
	steps, err := collectSteps(s.pool.Query(ctx, "SELECT "+stepColumns+" FROM steps WHERE task_id = $1 ORDER BY idx", taskID))
	if err != nil {
		return nil, fmt.Errorf("steps of task %s: %w", taskID, err)
	}
	return steps, nil
}

// StepGet returns one step.
func (s *Store) StepGet(ctx context.Context, id string) (*store.Step, error) {
	st, err := scanStep(s.pool.QueryRow(ctx, "SELECT "+stepColumns+" FROM steps WHERE id = $1", id))
	if err != nil {
		return nil, notFound(err, "step "+id)
	}
	return st, nil
}

// stepChange describes the columns a step transition sets besides its state.
type stepChange struct {
	to               lifecycle.StepState
	meta             store.Metadata
	results          json.RawMessage
	runAt            time.Time
	errMsg, errClass string
	raiseLimit       bool
	refund           bool
}

// applyStep moves a locked step to a new state, guarded in SQL by its
// current state (and lease, when in progress), records the transition,
// keeps its task's counters, and releases its children when it satisfies
// them. The step's task must be locked by this transaction.
func (c *change) applyStep(ctx context.Context, tx pgx.Tx, t *taskRow, st *store.Step, ch stepChange) error {
	d, err := lifecycle.Step(st.State, ch.to)
	if err != nil {
		return fmt.Errorf("step %s (%s): %w", st.Name, st.ID, err)
	}
	if d.NoOp {
		return nil
	}
	from := st.State
	var runAt *time.Time
	switch {
	case ch.to == lifecycle.StepWaitingForRetry:
		runAt = nullTime(ch.runAt)
	case ch.to == lifecycle.StepPending && st.DepsRemaining == 0:
		runAt = &c.now
	}
	var finishedAt *time.Time
	if ch.to.Terminal() || ch.to == lifecycle.StepError {
		finishedAt = &c.now
	}
	set := []string{"state = $1", "seq = seq + 1", "updated_at = $2", "run_at = $3", "finished_at = $4"}
	args := []any{string(ch.to), c.now, runAt, finishedAt}
	add := func(expr string, v any) {
		args = append(args, v)
		set = append(set, fmt.Sprintf(expr, len(args)))
	}
	if from == lifecycle.StepInProgress {
		set = append(set, "lease_owner = NULL", "lease_token = NULL", "lease_expires_at = NULL")
	}
	if ch.to == lifecycle.StepComplete {
		add("results = $%d::json", string(ch.results))
	}
	if ch.errMsg != "" || ch.errClass != "" {
		add("last_error = $%d", nullString(ch.errMsg))
		add("error_class = $%d", nullString(ch.errClass))
	}
	if ch.raiseLimit {
		set = append(set, "retry_limit = attempts + max_attempts")
	}
	if ch.refund {
		set = append(set, "retry_limit = retry_limit + 1")
	}
	args = append(args, st.ID, string(from))
	where := fmt.Sprintf("id = $%d AND state = $%d", len(args)-1, len(args))
	if from == lifecycle.StepInProgress {
		args = append(args, st.LeaseToken, st.Attempts)
		where += fmt.Sprintf(" AND lease_token = $%d AND attempts = $%d", len(args)-1, len(args))
	}
	tag, err := tx.Exec(ctx, "UPDATE steps SET "+strings.Join(set, ", ")+" WHERE "+where, args...)
	if err != nil {
		return fmt.Errorf("transition step %s: %w", st.ID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("transition step %s %s → %s: state changed concurrently: %w", st.ID, from, ch.to, store.ErrConflict)
	}
	st.State = ch.to
	st.Seq++
	st.RunAt = utc(runAt)
	if ch.raiseLimit {
		st.RetryLimit = st.Attempts + st.MaxAttempts
	}
	if ch.refund {
		st.RetryLimit++
	}
	meta := ch.meta
	if meta.Attempt == 0 {
		meta.Attempt = st.Attempts
	}
	if meta.RetryLimit == 0 {
		meta.RetryLimit = st.RetryLimit
	}
	c.event(t, &store.Event{StepID: st.ID, StepName: st.Name, Name: d.Event, Seq: st.Seq, From: string(from), To: string(ch.to), Metadata: meta})
	done, open := store.StepDelta(from, ch.to, st.DepsRemaining)
	if ch.to == lifecycle.StepPending && st.DepsRemaining == 0 {
		c.addReady(t.ID, []string{st.Name})
	}
	if done == 1 {
		ready, err := c.releaseChildren(ctx, tx, st.ID)
		if err != nil {
			return err
		}
		open += len(ready)
		c.addReady(t.ID, ready)
	}
	c.delta(t.ID, done, open)
	return nil
}

// releaseChildren decrements the remaining-dependency counter of a step's
// children and makes those that reached zero ready.
func (c *change) releaseChildren(ctx context.Context, tx pgx.Tx, stepID string) ([]string, error) {
	rows, err := tx.Query(ctx, releaseChildrenSQL, c.now, stepID)
	if err != nil {
		return nil, fmt.Errorf("release children of %s: %w", stepID, err)
	}
	type child struct {
		idx  int
		name string
	}
	var ready []child
	for rows.Next() {
		var (
			ch    child
			deps  int
			state string
		)
		if err := rows.Scan(&ch.idx, &ch.name, &deps, &state); err != nil {
			rows.Close()
			return nil, err
		}
		if deps == 0 && state == string(lifecycle.StepPending) {
			ready = append(ready, ch)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(ready, func(a, b child) int { return a.idx - b.idx })
	names := make([]string, len(ready))
	for i, ch := range ready {
		names[i] = ch.name
	}
	return names, nil
}

// StepClaim claims ready steps under a lease with FOR UPDATE SKIP LOCKED:
// concurrent workers never wait on each other and never get the same step.
func (s *Store) StepClaim(ctx context.Context, p *store.StepClaimParams) (*store.StepClaimResult, error) {
	if p.Limit <= 0 {
		return &store.StepClaimResult{}, nil
	}
	if p.Worker == "" || p.LeaseTTL <= 0 {
		return nil, fmt.Errorf("claim steps: worker and lease TTL are required")
	}
	res := &store.StepClaimResult{}
	c, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, c *change) error {
		res.Steps = nil
		now := c.now
		expires := now.Add(p.LeaseTTL)
		rows, err := tx.Query(ctx, claimSQL,
			now, nilIfEmpty(p.Handlers), nilIfEmpty(p.TemplateIDs), nilIfEmpty(p.ExcludeTemplateIDs), nilIfEmpty(p.TaskIDs),
			p.Limit, p.Worker, p.LeaseToken, expires)
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		type claimed struct {
			from lifecycle.StepState
			st   *store.Step
		}
		var got []claimed
		for rows.Next() {
			var from string
			st, err := scanStep(prependScan{row: rows, first: &from})
			if err != nil {
				rows.Close()
				return fmt.Errorf("claim: %w", err)
			}
			got = append(got, claimed{lifecycle.StepState(from), st})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		if len(got) == 0 {
			return nil
		}
		slices.SortFunc(got, func(a, b claimed) int {
			if c := a.st.RunAt.Compare(b.st.RunAt); c != 0 {
				return c
			}
			return strings.Compare(a.st.ID, b.st.ID)
		})
		ids := make([]string, len(got))
		taskIDs := make([]string, 0, len(got))
		for i, g := range got {
			ids[i] = g.st.ID
			if !slices.Contains(taskIDs, g.st.TaskID) {
				taskIDs = append(taskIDs, g.st.TaskID)
			}
		}
		tasks, err := taskHeads(ctx, tx, taskIDs)
		if err != nil {
			return err
		}
		deps, err := dependencyResults(ctx, tx, ids)
		if err != nil {
			return err
		}
		for _, g := range got {
			t := tasks[g.st.TaskID]
			if t == nil {
				return fmt.Errorf("claim: task %s of step %s: %w", g.st.TaskID, g.st.ID, store.ErrNotFound)
			}
			d, err := lifecycle.Step(g.from, lifecycle.StepInProgress)
			if err != nil {
				return err
			}
			c.event(t, &store.Event{StepID: g.st.ID, StepName: g.st.Name, Name: d.Event, Seq: g.st.Seq, From: string(g.from),
				To: string(lifecycle.StepInProgress), Metadata: store.Metadata{Attempt: g.st.Attempts, RetryLimit: g.st.RetryLimit,
					Worker: p.Worker, LeaseToken: p.LeaseToken, LeaseExpiresAt: g.st.LeaseExpiresAt}})
			res.Steps = append(res.Steps, &store.ClaimedStep{Step: g.st, Namespace: t.Namespace, TaskName: t.Name,
				Version: t.Version, Context: t.Context, Dependencies: deps[g.st.ID]})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	res.Events = c.events
	return res, nil
}

// claimSQL claims ready steps. The steps_ready index gives them in run_at
// order; SKIP LOCKED lets concurrent workers take disjoint batches without
// waiting for each other.
const claimSQL = `WITH ready AS (
		SELECT id, state FROM steps
		WHERE run_at IS NOT NULL AND run_at <= $1
		  AND ($2::text[] IS NULL OR handler = ANY($2))
		  AND ($3::text[] IS NULL OR template_id = ANY($3))
		  AND ($4::text[] IS NULL OR NOT (template_id = ANY($4)))
		  AND ($5::text[] IS NULL OR task_id = ANY($5))
		ORDER BY run_at, idx
		LIMIT $6
		FOR UPDATE SKIP LOCKED
	)
	UPDATE steps s SET state = 'in_progress', attempts = s.attempts + 1, run_at = NULL,
		lease_owner = $7, lease_token = $8, lease_expires_at = $9, seq = s.seq + 1, updated_at = $1,
		started_at = COALESCE(s.started_at, $1), finished_at = NULL
	FROM ready
	WHERE s.id = ready.id
	RETURNING ready.state, s.id, s.task_id, s.idx, s.name, s.template_id, s.handler, s.state, s.attempts, s.max_attempts,
		s.retry_limit, s.timeout_us, s.deps_remaining, s.run_at, s.lease_owner, s.lease_token, s.lease_expires_at,
		s.results::text, s.last_error, s.error_class, s.seq, s.created_at, s.updated_at, s.started_at, s.finished_at`

// expiredLeasesSQL finds running steps whose lease expired (steps_leased).
const expiredLeasesSQL = `SELECT id FROM steps WHERE state = 'in_progress'
	AND (lease_expires_at <= $1 OR lease_owner = ANY($2)) ORDER BY lease_expires_at LIMIT $3`

// releaseChildrenSQL decrements the counters of one step's children: the
// edges' primary key (parent_id, child_id) finds them.
const releaseChildrenSQL = `UPDATE steps s
	SET deps_remaining = s.deps_remaining - 1,
	    run_at = CASE WHEN s.deps_remaining = 1 AND s.state = 'pending' THEN $1 ELSE s.run_at END,
	    updated_at = $1
	FROM step_edges e
	WHERE e.parent_id = $2 AND s.id = e.child_id
	RETURNING s.idx, s.name, s.deps_remaining, s.state`

// dependencyResultsSQL reads the results of claimed steps' parents
// (step_edges_child).
const dependencyResultsSQL = `SELECT e.child_id, p.name, p.results::text FROM step_edges e JOIN steps p ON p.id = e.parent_id
	WHERE e.child_id = ANY($1)`

// leftoverTasksSQL finds in-progress tasks with nothing open (tasks_state_created).
const leftoverTasksSQL = "SELECT id FROM tasks WHERE state = 'in_progress' AND steps_open = 0 ORDER BY id LIMIT $1"

// prependScan scans one leading column before a step's columns.
type prependScan struct {
	row   pgx.Row
	first any
}

func (p prependScan) Scan(dest ...any) error { return p.row.Scan(append([]any{p.first}, dest...)...) }

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// taskHeads reads the identity and context of tasks, without locking them.
func taskHeads(ctx context.Context, tx pgx.Tx, ids []string) (map[string]*taskRow, error) {
	rows, err := tx.Query(ctx, "SELECT "+taskColumns+" FROM tasks WHERE id = ANY($1)", ids)
	if err != nil {
		return nil, fmt.Errorf("load tasks: %w", err)
	}
	tasks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Task, error) { return scanTask(r) })
	if err != nil {
		return nil, fmt.Errorf("load tasks: %w", err)
	}
	out := make(map[string]*taskRow, len(tasks))
	for _, t := range tasks {
		out[t.ID] = &taskRow{Task: *t}
	}
	return out, nil
}

func dependencyResults(ctx context.Context, tx pgx.Tx, childIDs []string) (map[string]map[string]json.RawMessage, error) {
	rows, err := tx.Query(ctx, dependencyResultsSQL, childIDs)
	if err != nil {
		return nil, fmt.Errorf("dependency results: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]json.RawMessage{}
	for rows.Next() {
		var (
			child, name string
			results     *string
		)
		if err := rows.Scan(&child, &name, &results); err != nil {
			return nil, err
		}
		m := out[child]
		if m == nil {
			m = map[string]json.RawMessage{}
			out[child] = m
		}
		raw := json.RawMessage("null")
		if results != nil {
			raw = json.RawMessage(*results)
		}
		m[name] = raw
	}
	return out, rows.Err()
}

// lockForSteps locks the tasks of the given steps, then the steps, each in
// id order: the locking order of every write transaction.
func (c *change) lockForSteps(ctx context.Context, tx pgx.Tx, stepIDs []string) (map[string]*store.Step, error) {
	rows, err := tx.Query(ctx, "SELECT DISTINCT task_id FROM steps WHERE id = ANY($1)", stepIDs)
	if err != nil {
		return nil, fmt.Errorf("tasks of steps: %w", err)
	}
	taskIDs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("tasks of steps: %w", err)
	}
	if err := c.lockTasks(ctx, tx, taskIDs); err != nil {
		return nil, err
	}
	steps, err := lockSteps(ctx, tx, "id = ANY($1)", stepIDs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*store.Step, len(steps))
	for _, st := range steps {
		out[st.ID] = st
	}
	return out, nil
}

// StepCompleteMany applies attempt outcomes whose lease is still held.
func (s *Store) StepCompleteMany(ctx context.Context, p *store.StepCompleteManyParams) (*store.StepCompleteManyResult, error) {
	if len(p.Outcomes) == 0 {
		return &store.StepCompleteManyResult{}, nil
	}
	var stale []int
	c, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, c *change) error {
		stale = nil
		ids := make([]string, len(p.Outcomes))
		for i, o := range p.Outcomes {
			ids[i] = o.StepID
		}
		byID, err := c.lockForSteps(ctx, tx, ids)
		if err != nil {
			return err
		}
		for i, o := range p.Outcomes {
			st := byID[o.StepID]
			if st == nil || st.State != lifecycle.StepInProgress || st.LeaseToken != o.LeaseToken || st.Attempts != o.Attempt {
				stale = append(stale, i)
				continue
			}
			t, err := c.task(st.TaskID)
			if err != nil {
				return err
			}
			meta := store.Metadata{Attempt: o.Attempt, Worker: p.Worker, LeaseToken: o.LeaseToken, DurationMS: o.DurationMS,
				Error: o.Error, ErrorClass: o.ErrorClass}
			ch := stepChange{meta: meta, errMsg: o.Error, errClass: o.ErrorClass}
			switch o.Kind {
			case store.OutcomeComplete:
				ch.to = lifecycle.StepComplete
				ch.results = o.Result
				if len(ch.results) == 0 {
					ch.results = json.RawMessage("null")
				}
			case store.OutcomeRetry:
				ch.to = lifecycle.StepWaitingForRetry
				ch.runAt = o.NextAttemptAt
				ch.meta.NextAttemptAt = o.NextAttemptAt.UTC()
			case store.OutcomeFail:
				ch.to = lifecycle.StepError
				ch.meta.Permanent = o.Permanent
			default:
				return fmt.Errorf("outcome %d for step %s: unknown kind %d", i, o.StepID, o.Kind)
			}
			if err := c.applyStep(ctx, tx, t, st, ch); err != nil {
				return err
			}
			for _, ce := range o.CustomEvents {
				c.event(t, &store.Event{StepID: st.ID, StepName: st.Name, Name: event.Name(ce.Name), Payload: ce.Payload})
			}
			c.count++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("complete steps: %w", err)
	}
	return &store.StepCompleteManyResult{ChangeResult: *c.result(), Stale: stale}, nil
}

// StepRescue returns expired or orphaned leases to the ready set and
// finalizes tasks left with nothing open.
func (s *Store) StepRescue(ctx context.Context, p *store.StepRescueParams) (*store.ChangeResult, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 1000
	}
	c, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, c *change) error {
		rows, err := tx.Query(ctx, expiredLeasesSQL, c.now, nilIfEmpty(p.DeadOwners), limit)
		if err != nil {
			return fmt.Errorf("find expired leases: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		dead := map[string]bool{}
		for _, o := range p.DeadOwners {
			dead[o] = true
		}
		if len(ids) > 0 {
			byID, err := c.lockForSteps(ctx, tx, ids)
			if err != nil {
				return err
			}
			for _, id := range ids {
				st := byID[id]
				// Re-check under the lock: the lease may have been renewed or released.
				if st == nil || st.State != lifecycle.StepInProgress || (st.LeaseExpiresAt.After(c.now) && !dead[st.LeaseOwner]) {
					continue
				}
				t, err := c.task(st.TaskID)
				if err != nil {
					return err
				}
				reason := "lease expired"
				if dead[st.LeaseOwner] && st.LeaseExpiresAt.After(c.now) {
					reason = "worker " + st.LeaseOwner + " is gone"
				}
				meta := store.Metadata{Reason: reason, Worker: st.LeaseOwner, LeaseToken: st.LeaseToken}
				ch := stepChange{to: lifecycle.StepPending, meta: meta}
				if st.Attempts >= st.RetryLimit {
					ch = stepChange{to: lifecycle.StepError, meta: meta, errMsg: reason + " on the last allowed attempt", errClass: "lease_expired"}
					ch.meta.Error, ch.meta.ErrorClass = ch.errMsg, ch.errClass
				}
				if err := c.applyStep(ctx, tx, t, st, ch); err != nil {
					return err
				}
				c.count++
			}
		}
		rows, err = tx.Query(ctx, leftoverTasksSQL, limit)
		if err != nil {
			return fmt.Errorf("find tasks to finalize: %w", err)
		}
		stuck, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		return c.lockTasks(ctx, tx, stuck)
	})
	if err != nil {
		return nil, fmt.Errorf("rescue steps: %w", err)
	}
	return c.result(), nil
}

// StepRelease returns a stopping worker's steps to pending.
func (s *Store) StepRelease(ctx context.Context, p *store.StepReleaseParams) (*store.ChangeResult, error) {
	if len(p.Leases) == 0 {
		return &store.ChangeResult{}, nil
	}
	c, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, c *change) error {
		ids := make([]string, len(p.Leases))
		for i, l := range p.Leases {
			ids[i] = l.StepID
		}
		byID, err := c.lockForSteps(ctx, tx, ids)
		if err != nil {
			return err
		}
		for _, l := range p.Leases {
			st := byID[l.StepID]
			if st == nil || st.State != lifecycle.StepInProgress || st.LeaseToken != l.LeaseToken || st.Attempts != l.Attempt {
				continue
			}
			t, err := c.task(st.TaskID)
			if err != nil {
				return err
			}
			meta := store.Metadata{Reason: p.Reason, Worker: p.Worker, LeaseToken: l.LeaseToken}
			if err := c.applyStep(ctx, tx, t, st, stepChange{to: lifecycle.StepPending, meta: meta, refund: true}); err != nil {
				return err
			}
			c.count++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("release steps: %w", err)
	}
	return c.result(), nil
}

// StepLeaseRenew extends the leases a worker still holds, in one statement.
func (s *Store) StepLeaseRenew(ctx context.Context, p *store.StepLeaseRenewParams) (*store.StepLeaseRenewResult, error) {
	res := &store.StepLeaseRenewResult{}
	if len(p.Leases) == 0 {
		return res, nil
	}
	ids := make([]string, len(p.Leases))
	tokens := make([]int64, len(p.Leases))
	attempts := make([]int32, len(p.Leases))
	for i, l := range p.Leases {
		ids[i], tokens[i], attempts[i] = l.StepID, l.LeaseToken, int32(l.Attempt)
	}
	rows, err := s.pool.Query(ctx, `UPDATE steps s SET lease_expires_at = $4
		FROM unnest($1::text[], $2::bigint[], $3::int[]) AS l(id, token, attempt)
		WHERE s.id = l.id AND s.state = 'in_progress' AND s.lease_owner = $5 AND s.lease_token = l.token AND s.attempts = l.attempt
		RETURNING s.id, s.lease_token, s.attempts`, ids, tokens, attempts, p.Now.Add(p.TTL).UTC(), p.Worker)
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	renewed := map[store.Lease]bool{}
	for rows.Next() {
		var l store.Lease
		if err := rows.Scan(&l.StepID, &l.LeaseToken, &l.Attempt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("renew leases: %w", err)
		}
		renewed[l] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	for _, l := range p.Leases {
		if renewed[l] {
			res.Renewed = append(res.Renewed, l)
		} else {
			res.Lost = append(res.Lost, l)
		}
	}
	return res, nil
}

// StepNextRunAt returns the earliest run_at of a ready or waiting step.
func (s *Store) StepNextRunAt(ctx context.Context, p *store.StepNextRunAtParams) (time.Time, bool, error) {
	var at *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT MIN(run_at) FROM steps WHERE run_at IS NOT NULL
		AND ($1::text[] IS NULL OR handler = ANY($1)) AND ($2::text[] IS NULL OR task_id = ANY($2))`,
		nilIfEmpty(p.Handlers), nilIfEmpty(p.TaskIDs)).Scan(&at); err != nil {
		return time.Time{}, false, fmt.Errorf("next run time: %w", err)
	}
	if at == nil {
		return time.Time{}, false, nil
	}
	return at.UTC(), true, nil
}

// StepLeaseOwners returns the owners of current leases.
func (s *Store) StepLeaseOwners(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT DISTINCT lease_owner FROM steps WHERE state = 'in_progress' AND lease_owner IS NOT NULL")
	if err != nil {
		return nil, fmt.Errorf("lease owners: %w", err)
	}
	owners, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("lease owners: %w", err)
	}
	return owners, nil
}
