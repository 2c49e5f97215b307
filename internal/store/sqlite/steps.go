package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

const stepColumns = `id, task_id, idx, name, template_id, handler, state, attempts, max_attempts, retry_limit, timeout_us,
	deps_remaining, run_at, lease_owner, lease_token, lease_expires_at, results, last_error, error_class, seq,
	created_at, updated_at, started_at, finished_at`

type stepRow struct {
	store.Step
	seq int
}

func scanStep(sc interface{ Scan(...any) error }) (*stepRow, error) {
	var r stepScanner
	return r.scan(sc)
}

// stepScanner scans step rows. Its holders of the columns that need
// converting, and the list of destinations, are reused from row to row:
// a row costs its own allocations only (the step and its strings), not one
// per holder.
type stepScanner struct {
	dest                              []any
	state                             string
	timeout                           int64
	runAt, token, expires             sql.NullInt64
	owner, results, lastErr, errClass sql.NullString
	created, updated                  int64
	started, finished                 sql.NullInt64
}

// scan reads a step's columns (stepColumns), then those of extra.
func (r *stepScanner) scan(sc interface{ Scan(...any) error }, extra ...any) (*stepRow, error) {
	s := &stepRow{}
	r.dest = append(r.dest[:0], &s.ID, &s.TaskID, &s.Index, &s.Name, &s.TemplateID, &s.Handler, &r.state, &s.Attempts,
		&s.MaxAttempts, &s.RetryLimit, &r.timeout, &s.DepsRemaining, &r.runAt, &r.owner, &r.token, &r.expires, &r.results,
		&r.lastErr, &r.errClass, &s.seq, &r.created, &r.updated, &r.started, &r.finished)
	r.dest = append(r.dest, extra...)
	if err := sc.Scan(r.dest...); err != nil {
		return nil, err
	}
	s.State = lifecycle.StepState(r.state)
	s.Timeout = time.Duration(r.timeout) * time.Microsecond
	s.RunAt, s.LeaseExpiresAt = fromNullUS(r.runAt), fromNullUS(r.expires)
	s.LeaseOwner, s.LeaseToken = r.owner.String, r.token.Int64
	if r.results.Valid {
		s.Results = json.RawMessage(r.results.String)
	}
	s.LastError, s.ErrorClass = r.lastErr.String, r.errClass.String
	s.CreatedAt, s.UpdatedAt = fromUS(r.created), fromUS(r.updated)
	s.StartedAt, s.FinishedAt = fromNullUS(r.started), fromNullUS(r.finished)
	s.Seq = s.seq
	return s, nil
}

func loadSteps(ctx context.Context, q queryer, where string, args ...any) ([]*stepRow, error) {
	return loadStepsOrdered(ctx, q, where+" ORDER BY task_id, idx", args...)
}

// loadStepsByID reads the steps of ids (those that exist), in no
// particular order, up to maxIDsPerStatement per statement.
func loadStepsByID(ctx context.Context, q queryer, ids []string) ([]*stepRow, error) {
	var out []*stepRow
	for _, chunk := range idChunks(ids) {
		in, inArgs := inList(chunk)
		rows, err := loadStepsOrdered(ctx, q, "id IN ("+in+")", inArgs...)
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

func idArgs(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// StepListByTask returns a task's steps in template order.
func (s *Store) StepListByTask(ctx context.Context, taskID string) ([]*store.Step, error) {
	rows, err := loadSteps(ctx, s.rdb, "task_id = ?", taskID)
	if err != nil {
		return nil, fmt.Errorf("steps of task %s: %w", taskID, err)
	}
	out := make([]*store.Step, len(rows))
	for i, r := range rows {
		out[i] = &r.Step
	}
	return out, nil
}

// StepGet returns one step.
func (s *Store) StepGet(ctx context.Context, id string) (*store.Step, error) {
	st, err := scanStep(s.rdb.QueryRowContext(ctx, "SELECT "+stepColumns+" FROM steps WHERE id = ?", id))
	if err != nil {
		return nil, notFound(err, "step "+id)
	}
	return &st.Step, nil
}

// stepChange describes the columns a step transition sets besides its state.
type stepChange struct {
	to   lifecycle.StepState
	meta store.Metadata
	// results is stored when the step completes.
	results json.RawMessage
	// runAt is when a waiting_for_retry step becomes claimable.
	runAt time.Time
	// errMsg and errClass are stored when set.
	errMsg, errClass string
	// raiseLimit grants a fresh retry budget (operator reset).
	raiseLimit bool
	// refund gives back the attempt being interrupted (worker stopping).
	refund bool
}

// applyStep moves a step to a new state, guarded in SQL by its current state
// (and lease, when in progress), records the transition, keeps the task's
// counters, and makes children ready when the step satisfies them.
func (c *change) applyStep(ctx context.Context, tx *sql.Tx, t *taskRow, st *stepRow, ch stepChange) error {
	d, err := lifecycle.Step(st.State, ch.to)
	if err != nil {
		return fmt.Errorf("step %s (%s): %w", st.Name, st.ID, err)
	}
	if d.NoOp {
		return nil
	}
	from := st.State
	var runAt sql.NullInt64
	switch {
	case ch.to == lifecycle.StepWaitingForRetry:
		runAt = nullUS(ch.runAt)
	case ch.to == lifecycle.StepPending && st.DepsRemaining == 0:
		runAt = sql.NullInt64{Int64: us(c.now), Valid: true}
	}
	if err := c.writeStep(ctx, tx, st, from, ch, runAt); err != nil {
		return err
	}
	st.seq++
	return c.recordStep(ctx, tx, t, st, from, ch, d, runAt)
}

// recordStep follows the write of a step's transition (from, by d, to
// ch.to; st.seq is the step's sequence after it): it updates st in memory
// and records the transition's log entry, the task's counters and the
// children it makes ready.
func (c *change) recordStep(ctx context.Context, tx *sql.Tx, t *taskRow, st *stepRow, from lifecycle.StepState, ch stepChange, d lifecycle.Decision, runAt sql.NullInt64) error {
	st.State = ch.to
	st.Seq = st.seq
	st.RunAt = fromNullUS(runAt)
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
	c.event(t, &store.Event{StepID: st.ID, StepName: st.Name, Name: d.Event, Seq: st.seq, From: string(from), To: string(ch.to), Metadata: meta})
	done, open := store.StepDelta(from, ch.to, st.DepsRemaining)
	if ch.to == lifecycle.StepPending && st.DepsRemaining == 0 {
		c.addReady(t.ID, []string{st.Name})
	}
	// A one-step task has no edges: nothing to release.
	if done == 1 && t.StepsTotal > 1 {
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

// writeStep is applyStep's update of one step, guarded by its state (and
// its lease, when in progress).
func (c *change) writeStep(ctx context.Context, tx *sql.Tx, st *stepRow, from lifecycle.StepState, ch stepChange, runAt sql.NullInt64) error {
	set := []string{"state = ?", "seq = seq + 1", "updated_at = ?", "run_at = ?"}
	args := []any{string(ch.to), us(c.now), runAt}
	if from == lifecycle.StepInProgress {
		set = append(set, "lease_owner = NULL", "lease_token = NULL", "lease_expires_at = NULL")
	}
	if ch.to == lifecycle.StepComplete {
		set = append(set, "results = ?")
		args = append(args, nullString(string(ch.results)))
	}
	if ch.errMsg != "" || ch.errClass != "" {
		set = append(set, "last_error = ?", "error_class = ?")
		args = append(args, nullString(ch.errMsg), nullString(ch.errClass))
	}
	if ch.raiseLimit {
		set = append(set, "retry_limit = attempts + max_attempts")
	}
	if ch.refund {
		set = append(set, "retry_limit = retry_limit + 1")
	}
	if ch.to.Terminal() || ch.to == lifecycle.StepError {
		set = append(set, "finished_at = ?")
		args = append(args, us(c.now))
	} else {
		set = append(set, "finished_at = NULL")
	}
	where := "id = ? AND state = ?"
	args = append(args, st.ID, string(from))
	if from == lifecycle.StepInProgress {
		where += " AND lease_token = ? AND attempts = ?"
		args = append(args, st.LeaseToken, st.Attempts)
	}
	r, err := tx.ExecContext(ctx, "UPDATE steps SET "+strings.Join(set, ", ")+" WHERE "+where, args...)
	if err != nil {
		return fmt.Errorf("transition step %s: %w", st.ID, err)
	}
	if n, _ := r.RowsAffected(); n != 1 {
		return fmt.Errorf("transition step %s %s → %s: state changed concurrently: %w", st.ID, from, ch.to, store.ErrConflict)
	}
	return nil
}

// releaseChildren decrements the remaining-dependency counter of a step's
// children and makes those that reached zero ready. Only the step's own
// edges are touched.
func (c *change) releaseChildren(ctx context.Context, tx *sql.Tx, stepID string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `UPDATE steps
		SET deps_remaining = deps_remaining - 1,
		    run_at = CASE WHEN deps_remaining = 1 AND state = 'pending' THEN ? ELSE run_at END,
		    updated_at = ?
		WHERE id IN (SELECT child_id FROM step_edges WHERE parent_id = ?)
		RETURNING idx, name, deps_remaining, state`, us(c.now), us(c.now), stepID)
	if err != nil {
		return nil, fmt.Errorf("release children of %s: %w", stepID, err)
	}
	defer rows.Close()
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
			return nil, err
		}
		if deps == 0 && state == string(lifecycle.StepPending) {
			ready = append(ready, ch)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Report in template order, whatever order the rows came in.
	for i := 1; i < len(ready); i++ {
		for j := i; j > 0 && ready[j].idx < ready[j-1].idx; j-- {
			ready[j], ready[j-1] = ready[j-1], ready[j]
		}
	}
	names := make([]string, len(ready))
	for i, ch := range ready {
		names[i] = ch.name
	}
	return names, nil
}

// completeRunning writes the completions among outcomes (those of kind
// OutcomeComplete) of steps still running under the outcome's lease and
// attempt, in one guarded statement per chunk, and returns the steps it
// changed by id, with what recording their transitions needs (read back
// from the statement itself: the completion does not read the steps
// first). A step it did not change was no longer running under that lease
// and attempt: its outcome is stale. A step named by two outcomes is
// completed by the first.
func completeRunning(ctx context.Context, tx *sql.Tx, now time.Time, outcomes []store.StepOutcome) (map[string]*stepRow, error) {
	done := map[string]*stepRow{}
	var args []any
	n := 0
	seen := map[string]bool{}
	flush := func() error {
		if n == 0 {
			return nil
		}
		rows, args := paddedValueRows(n, 4, args)
		res, err := tx.QueryContext(ctx, `UPDATE steps SET state = 'complete', seq = seq + 1, updated_at = ?, run_at = NULL,
			lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, results = v.column2, finished_at = ?
			FROM (VALUES `+rows+`) AS v
			WHERE steps.id = v.column1 AND steps.state = 'in_progress' AND steps.lease_token = v.column3
				AND steps.attempts = v.column4
			RETURNING id, task_id, name, attempts, retry_limit, deps_remaining, seq`, args...)
		if err != nil {
			return fmt.Errorf("complete steps: %w", err)
		}
		defer res.Close()
		for res.Next() {
			st := &stepRow{}
			st.State = lifecycle.StepInProgress
			if err := res.Scan(&st.ID, &st.TaskID, &st.Name, &st.Attempts, &st.RetryLimit, &st.DepsRemaining, &st.seq); err != nil {
				return fmt.Errorf("complete steps: %w", err)
			}
			done[st.ID] = st
		}
		if err := res.Err(); err != nil {
			return fmt.Errorf("complete steps: %w", err)
		}
		n = 0
		return nil
	}
	for _, o := range outcomes {
		if o.Kind != store.OutcomeComplete || seen[o.StepID] {
			continue
		}
		seen[o.StepID] = true
		if n == 0 {
			args = append(args[:0], us(now), us(now))
		}
		results := o.Result
		if len(results) == 0 {
			results = json.RawMessage("null")
		}
		args = append(args, o.StepID, string(results), o.LeaseToken, o.Attempt)
		if n++; n == maxRowsPerInsert {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return done, nil
}

// transitionStep is applyStep for operator and sweep transitions.
func (c *change) transitionStep(ctx context.Context, tx *sql.Tx, t *taskRow, st *stepRow, to lifecycle.StepState, meta store.Metadata, errMsg string) error {
	ch := stepChange{to: to, meta: meta, errMsg: errMsg}
	if to == lifecycle.StepPending && st.State == lifecycle.StepError {
		ch.raiseLimit = true
	}
	return c.applyStep(ctx, tx, t, st, ch)
}

// StepClaim claims ready steps under a lease.
func (s *Store) StepClaim(ctx context.Context, p *store.StepClaimParams) (*store.StepClaimResult, error) {
	if p.Limit <= 0 {
		return &store.StepClaimResult{}, nil
	}
	if err := store.ValidateClaim(p); err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	var res *store.StepClaimResult
	err := s.writeChange(ctx, func(ctx context.Context, tx *sql.Tx) (*store.ChangeResult, error) {
		res = &store.StepClaimResult{}
		var err error
		c := newChange(p.Now)
		if res.Steps, err = claimIn(ctx, tx, c, p); err != nil {
			return nil, err
		}
		if err := appendEvents(ctx, tx, c.events); err != nil {
			return nil, err
		}
		res.Events = c.events
		if err != nil {
			return nil, err
		}
		return &store.ChangeResult{Events: res.Events}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	return res, nil
}

func loadStepsOrdered(ctx context.Context, q queryer, whereAndOrder string, args ...any) ([]*stepRow, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+stepColumns+" FROM steps WHERE "+whereAndOrder, args...)
	if err != nil {
		return nil, fmt.Errorf("load steps: %w", err)
	}
	defer rows.Close()
	var out []*stepRow
	var sc stepScanner
	for rows.Next() {
		s, err := sc.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("load steps: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// readyFilter builds the WHERE clause of a claim.
// claimIn claims up to p.Limit ready steps inside tx at c's time, and
// records their transitions in c (whose tasks it reuses); the caller
// appends c's events.
func claimIn(ctx context.Context, tx *sql.Tx, c *change, p *store.StepClaimParams) ([]*store.ClaimedStep, error) {
	now := c.now
	q, args := claimFilter(now, p.Handlers, p.TemplateIDs, p.ExcludeTemplateIDs, p.TaskIDs, p.Limit)
	steps, contexts, tasks, err := loadClaimable(ctx, tx, p.Limit, q, args...)
	if err != nil || len(steps) == 0 {
		return nil, err
	}
	ids := make([]string, len(steps))
	for i, st := range steps {
		ids[i] = st.ID
	}
	expires := now.Add(p.LeaseTTL)
	for _, chunk := range idChunks(ids) {
		in, inArgs := inList(chunk)
		r, err := tx.ExecContext(ctx, `UPDATE steps SET state = 'in_progress', attempts = attempts + 1, run_at = NULL,
			lease_owner = ?, lease_token = ?, lease_expires_at = ?, seq = seq + 1, updated_at = ?,
			started_at = COALESCE(started_at, ?), finished_at = NULL
			WHERE state IN ('pending', 'waiting_for_retry') AND id IN (`+in+`)`,
			append([]any{p.Worker, p.LeaseToken, us(expires), us(now), us(now)}, inArgs...)...)
		if err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
		if n, _ := r.RowsAffected(); int(n) != len(chunk) {
			return nil, fmt.Errorf("claim: %d of %d steps changed state concurrently: %w", len(chunk)-int(n), len(chunk), store.ErrConflict)
		}
	}
	var out []*store.ClaimedStep
	for _, st := range steps {
		// A claim changes no task: the identity its events carry is read
		// with the steps, unless the change holds the task already.
		t := c.tasks[st.TaskID]
		if t == nil {
			t = tasks[st.TaskID]
		}
		from := st.State
		st.State = lifecycle.StepInProgress
		st.Attempts++
		st.seq++
		st.Seq = st.seq
		st.RunAt = time.Time{}
		st.LeaseOwner, st.LeaseToken = p.Worker, p.LeaseToken
		st.LeaseExpiresAt = expires
		if st.StartedAt.IsZero() {
			st.StartedAt = now
		}
		st.FinishedAt = time.Time{}
		e, err := store.ClaimEvent(&st.Step, from)
		if err != nil {
			return nil, err
		}
		c.event(t, e)
		out = append(out, &store.ClaimedStep{Step: &st.Step, Namespace: t.Namespace, TaskName: t.Name,
			Version: t.Version, Context: contexts[st.TaskID]})
	}
	// Steps of one-step tasks have no parents to read results from.
	var withParents []string
	for _, st := range steps {
		if tasks[st.TaskID].StepsTotal > 1 {
			withParents = append(withParents, st.ID)
		}
	}
	if len(withParents) == 0 {
		return out, nil
	}
	deps, err := dependencyResults(ctx, tx, withParents)
	if err != nil {
		return nil, err
	}
	for _, cs := range out {
		cs.Dependencies = deps[cs.Step.ID]
	}
	return out, nil
}

// loadClaimable reads the steps a claim takes, up to limit in claim order
// (the statement's own LIMIT may be higher, claimFilter), with their
// tasks' contexts (a claim hands its steps their task's context; the tasks a
// write reads leave it out, writeTaskColumns) and their tasks' identity and
// step count (the only columns of a task a claim needs).
func loadClaimable(ctx context.Context, tx *sql.Tx, limit int, whereAndOrder string, args ...any) ([]*stepRow, map[string]json.RawMessage, map[string]*taskRow, error) {
	rows, err := tx.QueryContext(ctx, claimSelect(whereAndOrder), args...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load steps: %w", err)
	}
	defer rows.Close()
	var out []*stepRow
	contexts := map[string]json.RawMessage{}
	tasks := map[string]*taskRow{}
	// The extra columns' holders are reused from row to row: their
	// values are copied out before the next.
	var (
		sc                stepScanner
		c                 sql.NullString
		ns, name, version string
		total             int
	)
	extra := []any{&c, &ns, &name, &version, &total}
	for len(out) < limit && rows.Next() {
		st, err := sc.scan(rows, extra...)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("load steps: %w", err)
		}
		if !c.Valid {
			return nil, nil, nil, fmt.Errorf("context of task %s: %w", st.TaskID, store.ErrNotFound)
		}
		contexts[st.TaskID] = json.RawMessage(c.String)
		if tasks[st.TaskID] == nil {
			tasks[st.TaskID] = &taskRow{Task: store.Task{ID: st.TaskID, Namespace: ns, Name: name, Version: version, StepsTotal: total}}
		}
		out = append(out, st)
	}
	return out, contexts, tasks, rows.Err()
}

// claimSelect is the statement that reads the steps a claim takes: a step's
// columns, its task's context, and its task's namespace, name, version and
// step count (joined under names of their own, so that the step's columns
// in whereAndOrder stay unambiguous).
func claimSelect(whereAndOrder string) string {
	return "SELECT " + stepColumns + ", (SELECT context FROM task_contexts WHERE task_id = steps.task_id), t.t_ns, t.t_name, t.t_version, t.t_total " +
		"FROM steps JOIN (SELECT id AS t_id, namespace AS t_ns, name AS t_name, version AS t_version, steps_total AS t_total FROM tasks) t " +
		"ON t.t_id = steps.task_id WHERE " + whereAndOrder
}

// claimFilter is the condition and order of a claim: up to limit ready
// steps in (run_at, idx) order, the order of the steps_claim index, so the
// query stops after limit rows. The LIMIT written into the statement is
// limit rounded up (batchRows), so that claims of every size share a few
// statements; the reader stops after limit rows (loadClaimable).
func claimFilter(now time.Time, handlers, templates, excluded, tasks []string, limit int) (string, []any) {
	where, args := readyFilter(now, handlers, templates, excluded, tasks)
	return where + " ORDER BY run_at, idx" + limitClause(batchRows(limit)), args
}

func readyFilter(now time.Time, handlers, templates, excluded, tasks []string) (string, []any) {
	where := "run_at IS NOT NULL AND run_at <= ?"
	args := []any{us(now)}
	in := func(col string, vals []string, not bool) {
		if len(vals) == 0 {
			return
		}
		op := " IN ("
		if not {
			op = " NOT IN ("
		}
		where += " AND " + col + op + placeholders(len(vals)) + ")"
		args = append(args, idArgs(vals)...)
	}
	in("handler", handlers, false)
	in("template_id", templates, false)
	in("template_id", excluded, true)
	in("task_id", tasks, false)
	return where, args
}

func dependencyResults(ctx context.Context, tx *sql.Tx, childIDs []string) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	for _, chunk := range idChunks(childIDs) {
		if err := readDependencyResults(ctx, tx, chunk, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readDependencyResults adds the parents' results of up to
// maxIDsPerStatement children to out.
func readDependencyResults(ctx context.Context, tx *sql.Tx, childIDs []string, out map[string]map[string]json.RawMessage) error {
	in, inArgs := inList(childIDs)
	rows, err := tx.QueryContext(ctx, `SELECT e.child_id, p.name, p.results FROM step_edges e JOIN steps p ON p.id = e.parent_id
		WHERE e.child_id IN (`+in+`)`, inArgs...)
	if err != nil {
		return fmt.Errorf("dependency results: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			child, name string
			results     sql.NullString
		)
		if err := rows.Scan(&child, &name, &results); err != nil {
			return fmt.Errorf("dependency results: %w", err)
		}
		m := out[child]
		if m == nil {
			m = map[string]json.RawMessage{}
			out[child] = m
		}
		raw := json.RawMessage("null")
		if results.Valid {
			raw = json.RawMessage(results.String)
		}
		m[name] = raw
	}
	return rows.Err()
}

// StepCompleteMany applies attempt outcomes whose lease is still held.
func (s *Store) StepCompleteMany(ctx context.Context, p *store.StepCompleteManyParams) (*store.StepCompleteManyResult, error) {
	if len(p.Outcomes) == 0 {
		return &store.StepCompleteManyResult{}, nil
	}
	if p.Claim != nil {
		if err := store.ValidateClaim(p.Claim); err != nil {
			return nil, fmt.Errorf("complete steps: claim: %w", err)
		}
	}
	var res *store.StepCompleteManyResult
	err := s.writeChange(ctx, func(ctx context.Context, tx *sql.Tx) (*store.ChangeResult, error) {
		res = &store.StepCompleteManyResult{}
		c := newChange(p.Now)
		c.batchCompletions = true
		// The completions are written first, and read back from their
		// own statement; the other outcomes (retries, failures) read their
		// steps and are written one by one.
		completed, err := completeRunning(ctx, tx, c.now, p.Outcomes)
		if err != nil {
			return nil, err
		}
		taskIDs := make([]string, 0, len(p.Outcomes))
		for _, st := range completed {
			taskIDs = append(taskIDs, st.TaskID)
		}
		var others []string
		for _, o := range p.Outcomes {
			if o.Kind != store.OutcomeComplete {
				others = append(others, o.StepID)
			}
		}
		byID := map[string]*stepRow{}
		if len(others) > 0 {
			rows, err := loadStepsByID(ctx, tx, others)
			if err != nil {
				return nil, err
			}
			for _, r := range rows {
				byID[r.ID] = r
				taskIDs = append(taskIDs, r.TaskID)
			}
		}
		if err := c.preloadTasks(ctx, tx, taskIDs); err != nil {
			return nil, err
		}
		toComplete, err := lifecycle.Step(lifecycle.StepInProgress, lifecycle.StepComplete)
		if err != nil {
			return nil, err
		}
		for i, o := range p.Outcomes {
			meta := store.Metadata{Attempt: o.Attempt, Worker: p.Worker, LeaseToken: o.LeaseToken, DurationMS: o.DurationMS,
				Error: o.Error, ErrorClass: o.ErrorClass}
			ch := stepChange{meta: meta, errMsg: o.Error, errClass: o.ErrorClass}
			if o.Kind == store.OutcomeComplete {
				st := completed[o.StepID]
				if st == nil || st.State != lifecycle.StepInProgress {
					// Not running under this lease, or completed by an
					// earlier outcome of the batch.
					res.Stale = append(res.Stale, i)
					continue
				}
				t, err := c.task(ctx, tx, st.TaskID)
				if err != nil {
					return nil, err
				}
				ch.to = lifecycle.StepComplete
				if err := c.recordStep(ctx, tx, t, st, lifecycle.StepInProgress, ch, toComplete, sql.NullInt64{}); err != nil {
					return nil, err
				}
				c.customEvents(t, st, o.CustomEvents)
				c.count++
				continue
			}
			st := byID[o.StepID]
			if st == nil || st.State != lifecycle.StepInProgress || st.LeaseToken != o.LeaseToken || st.Attempts != o.Attempt {
				res.Stale = append(res.Stale, i)
				continue
			}
			t, err := c.task(ctx, tx, st.TaskID)
			if err != nil {
				return nil, err
			}
			switch o.Kind {
			case store.OutcomeRetry:
				ch.to = lifecycle.StepWaitingForRetry
				ch.runAt = o.NextAttemptAt
				ch.meta.NextAttemptAt = o.NextAttemptAt.UTC()
			case store.OutcomeFail:
				ch.to = lifecycle.StepError
				ch.meta.Permanent = o.Permanent
			default:
				return nil, fmt.Errorf("outcome %d for step %s: unknown kind %d", i, o.StepID, o.Kind)
			}
			if err := c.applyStep(ctx, tx, t, st, ch); err != nil {
				return nil, err
			}
			c.customEvents(t, st, o.CustomEvents)
			c.count++
		}
		if err := c.settle(ctx, tx); err != nil {
			return nil, err
		}
		if p.Claim != nil && p.Claim.Limit > 0 {
			// The claim sees the children the outcomes released; its
			// transitions go to the log after the outcomes'.
			claimed, err := claimIn(ctx, tx, c, p.Claim)
			if err != nil {
				return nil, err
			}
			res.Claimed = claimed
		}
		if err := appendEvents(ctx, tx, c.events); err != nil {
			return nil, err
		}
		res.ChangeResult = *c.result()
		res.ClaimedReady = store.CountClaimedReady(res.Ready, res.Claimed)
		return &res.ChangeResult, nil
	})
	if err != nil {
		return nil, fmt.Errorf("complete steps: %w", err)
	}
	return res, nil
}

// StepRescue returns expired or orphaned leases to the ready set and
// finalizes tasks left with nothing open.
func (s *Store) StepRescue(ctx context.Context, p *store.StepRescueParams) (*store.ChangeResult, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 1000
	}
	var res *store.ChangeResult
	err := s.writeChange(ctx, func(ctx context.Context, tx *sql.Tx) (*store.ChangeResult, error) {
		c := newChange(p.Now)
		where := "state = 'in_progress' AND (lease_expires_at <= ?"
		args := []any{us(c.now)}
		if len(p.DeadOwners) > 0 {
			where += " OR lease_owner IN (" + placeholders(len(p.DeadOwners)) + ")"
			args = append(args, idArgs(p.DeadOwners)...)
		}
		where += ") ORDER BY lease_expires_at" + limitClause(limit)
		steps, err := loadStepsOrdered(ctx, tx, where, args...)
		if err != nil {
			return nil, err
		}
		dead := map[string]bool{}
		for _, o := range p.DeadOwners {
			dead[o] = true
		}
		for _, st := range steps {
			t, err := c.task(ctx, tx, st.TaskID)
			if err != nil {
				return nil, err
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
				return nil, err
			}
			c.count++
		}
		stuck, err := tx.QueryContext(ctx, "SELECT id FROM tasks WHERE state = 'in_progress' AND steps_open = 0"+limitClause(limit))
		if err != nil {
			return nil, fmt.Errorf("find tasks to finalize: %w", err)
		}
		var ids []string
		for stuck.Next() {
			var id string
			if err := stuck.Scan(&id); err != nil {
				stuck.Close()
				return nil, err
			}
			ids = append(ids, id)
		}
		if err := stuck.Close(); err != nil {
			return nil, err
		}
		for _, id := range ids {
			if _, err := c.task(ctx, tx, id); err != nil {
				return nil, err
			}
		}
		if err := c.flush(ctx, tx); err != nil {
			return nil, err
		}
		res = c.result()
		return res, nil
	})
	if err != nil {
		return nil, fmt.Errorf("rescue steps: %w", err)
	}
	return res, nil
}

// StepRelease returns a stopping worker's steps to pending.
func (s *Store) StepRelease(ctx context.Context, p *store.StepReleaseParams) (*store.ChangeResult, error) {
	if len(p.Leases) == 0 {
		return &store.ChangeResult{}, nil
	}
	var res *store.ChangeResult
	err := s.writeChange(ctx, func(ctx context.Context, tx *sql.Tx) (*store.ChangeResult, error) {
		c := newChange(p.Now)
		ids := make([]string, len(p.Leases))
		for i, l := range p.Leases {
			ids[i] = l.StepID
		}
		rows, err := loadStepsByID(ctx, tx, ids)
		if err != nil {
			return nil, err
		}
		byID := make(map[string]*stepRow, len(rows))
		for _, r := range rows {
			byID[r.ID] = r
		}
		for _, l := range p.Leases {
			st := byID[l.StepID]
			if st == nil || st.State != lifecycle.StepInProgress || st.LeaseToken != l.LeaseToken || st.Attempts != l.Attempt {
				continue
			}
			t, err := c.task(ctx, tx, st.TaskID)
			if err != nil {
				return nil, err
			}
			meta := store.Metadata{Reason: p.Reason, Worker: p.Worker, LeaseToken: l.LeaseToken}
			if err := c.applyStep(ctx, tx, t, st, stepChange{to: lifecycle.StepPending, meta: meta, refund: true}); err != nil {
				return nil, err
			}
			c.count++
		}
		if err := c.flush(ctx, tx); err != nil {
			return nil, err
		}
		res = c.result()
		return res, nil
	})
	if err != nil {
		return nil, fmt.Errorf("release steps: %w", err)
	}
	return res, nil
}

// StepLeaseRenew extends the leases a worker still holds.
func (s *Store) StepLeaseRenew(ctx context.Context, p *store.StepLeaseRenewParams) (*store.StepLeaseRenewResult, error) {
	res := &store.StepLeaseRenewResult{}
	if len(p.Leases) == 0 {
		return res, nil
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res.Renewed, res.Lost = nil, nil
		expires := us(p.Now.Add(p.TTL))
		for _, l := range p.Leases {
			r, err := tx.ExecContext(ctx, `UPDATE steps SET lease_expires_at = ? WHERE id = ? AND state = 'in_progress'
				AND lease_owner = ? AND lease_token = ? AND attempts = ?`, expires, l.StepID, p.Worker, l.LeaseToken, l.Attempt)
			if err != nil {
				return err
			}
			if n, _ := r.RowsAffected(); n == 1 {
				res.Renewed = append(res.Renewed, l)
			} else {
				res.Lost = append(res.Lost, l)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	return res, nil
}

// StepNextRunAt returns the earliest run_at of a ready or waiting step.
func (s *Store) StepNextRunAt(ctx context.Context, p *store.StepNextRunAtParams) (time.Time, bool, error) {
	where, args := readyFilter(time.UnixMicro(1<<62), p.Handlers, nil, nil, p.TaskIDs)
	var v sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, "SELECT MIN(run_at) FROM steps WHERE "+where, args...).Scan(&v); err != nil {
		return time.Time{}, false, fmt.Errorf("next run time: %w", err)
	}
	if !v.Valid {
		return time.Time{}, false, nil
	}
	return fromUS(v.Int64), true, nil
}

// StepLeaseOwners returns the owners of current leases.
func (s *Store) StepLeaseOwners(ctx context.Context) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT DISTINCT lease_owner FROM steps WHERE state = 'in_progress' AND lease_owner IS NOT NULL")
	if err != nil {
		return nil, fmt.Errorf("lease owners: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// customEvents records the custom events a step's handler emitted.
func (c *change) customEvents(t *taskRow, st *stepRow, evs []store.CustomEvent) {
	for _, ce := range evs {
		c.event(t, &store.Event{StepID: st.ID, StepName: st.Name, Name: event.Name(ce.Name), Payload: ce.Payload})
	}
}
