package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

const stepColumns = `id, task_id, idx, name, template_id, handler, state, attempts, max_attempts, retry_limit, timeout_us,
	deps_remaining, run_at, lease_owner, lease_token, lease_expires_at, results::text, last_error, error_class, seq,
	created_at, updated_at, started_at, finished_at`

func scanStep(row pgx.Row) (*store.Step, error) {
	var sc stepScanner
	return sc.scan(row, nil, nil)
}

// stepScanner scans step rows (stepColumns). Its holders of the columns
// that need converting, and its list of destinations, serve every row: a
// holder declared per row is an allocation per row, and a NULL-able
// column scanned through a pointer one more.
type stepScanner struct {
	dest                              []any
	state                             string
	timeout, token                    pgtype.Int8
	runAt, expires, started, finished pgtype.Timestamptz
	owner, results, lastErr, errClass pgtype.Text
}

// scan reads a row of before's columns, then a step's, then after's.
func (r *stepScanner) scan(row pgx.Row, before, after []any) (*store.Step, error) {
	s := &store.Step{}
	r.dest = append(append(r.dest[:0], before...), &s.ID, &s.TaskID, &s.Index, &s.Name, &s.TemplateID, &s.Handler, &r.state,
		&s.Attempts, &s.MaxAttempts, &s.RetryLimit, &r.timeout, &s.DepsRemaining, &r.runAt, &r.owner, &r.token, &r.expires,
		&r.results, &r.lastErr, &r.errClass, &s.Seq, &s.CreatedAt, &s.UpdatedAt, &r.started, &r.finished)
	r.dest = append(r.dest, after...)
	if err := row.Scan(r.dest...); err != nil {
		return nil, err
	}
	s.State = lifecycle.StepState(r.state)
	s.Timeout = time.Duration(r.timeout.Int64) * time.Microsecond
	s.RunAt, s.LeaseExpiresAt = validTime(r.runAt), validTime(r.expires)
	s.LeaseOwner, s.LeaseToken = r.owner.String, r.token.Int64
	if r.results.Valid {
		s.Results = json.RawMessage(r.results.String)
	}
	s.LastError, s.ErrorClass = r.lastErr.String, r.errClass.String
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	s.StartedAt, s.FinishedAt = validTime(r.started), validTime(r.finished)
	return s, nil
}

// validTime is a NULL-able time column's value in UTC, or the zero time.
func validTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

func collectSteps(rows pgx.Rows, err error) ([]*store.Step, error) {
	if err != nil {
		return nil, fmt.Errorf("load steps: %w", err)
	}
	var sc stepScanner
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Step, error) { return sc.scan(r, nil, nil) })
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
func (c *change) applyStep(t *taskRow, st *store.Step, ch stepChange) error {
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
	w := stepWrite{id: st.ID, from: string(from), to: string(ch.to), runAt: runAt, finishedAt: finishedAt,
		leased: from == lifecycle.StepInProgress, token: st.LeaseToken, attempt: int32(st.Attempts)}
	if ch.to == lifecycle.StepComplete {
		r := string(ch.results)
		w.results = &r
	}
	if ch.errMsg != "" || ch.errClass != "" {
		w.setError, w.errMsg, w.errClass = true, nullString(ch.errMsg), nullString(ch.errClass)
	}
	switch {
	case ch.raiseLimit:
		w.limit = limitRaise
	case ch.refund:
		w.limit = limitRefund
	}
	c.writeStep(w)
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
		// Its children are released when the change's writes are sent.
		c.released = append(c.released, st.ID)
	}
	c.delta(t.ID, done, open)
	return nil
}

// StepClaim claims ready steps under a lease with FOR UPDATE SKIP LOCKED:
// concurrent workers never wait on each other and never get the same step.
// It returns as soon as it committed: its announcement (the commit hook,
// in commit order) may wait for a transaction in flight, such as a
// completion, and the claimed steps need not (store.Store.OnCommit).
func (s *Store) StepClaim(ctx context.Context, p *store.StepClaimParams) (*store.StepClaimResult, error) {
	if p.Limit <= 0 {
		return &store.StepClaimResult{}, nil
	}
	if err := store.ValidateClaim(p); err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	res := &store.StepClaimResult{}
	c, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, c *change) error {
		c.announceLater = true
		b := &pgx.Batch{}
		q := c.queueClaim(b, p)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		var err error
		res.Steps, err = c.claimed(q, p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	res.Events = c.events
	return res, nil
}

// queuedClaim is a claim queued in a batch, filled in when it is sent.
type queuedClaim struct {
	got   []claimedRow
	tasks map[string]*taskRow
	deps  map[string]map[string]json.RawMessage
}

type claimedRow struct {
	from lifecycle.StepState
	st   *store.Step
}

// queueClaim adds to b the statement of a claim, which also returns the
// identity and context of the claimed steps' tasks and their parents'
// results.
func (c *change) queueClaim(b *pgx.Batch, p *store.StepClaimParams) *queuedClaim {
	now := c.now
	expires := now.Add(p.LeaseTTL)
	q := &queuedClaim{tasks: map[string]*taskRow{}, deps: map[string]map[string]json.RawMessage{}}
	c.planForIndexes(b)
	b.Queue(claimSQL, now, nilIfEmpty(p.Handlers), nilIfEmpty(p.TemplateIDs), nilIfEmpty(p.ExcludeTemplateIDs),
		nilIfEmpty(p.TaskIDs), p.Limit, p.Worker, p.LeaseToken, expires).Query(func(rows pgx.Rows) error {
		var (
			sc                                   stepScanner
			from, ns, name, version, taskContext string
			deps                                 pgtype.Text
		)
		before, after := []any{&from}, []any{&ns, &name, &version, &taskContext, &deps}
		for rows.Next() {
			st, err := sc.scan(rows, before, after)
			if err != nil {
				return err
			}
			q.got = append(q.got, claimedRow{lifecycle.StepState(from), st})
			if q.tasks[st.TaskID] == nil {
				q.tasks[st.TaskID] = &taskRow{Task: store.Task{ID: st.TaskID, Namespace: ns, Name: name, Version: version,
					Context: []byte(taskContext)}}
			}
			if deps.Valid {
				m := map[string]json.RawMessage{}
				if err := json.Unmarshal([]byte(deps.String), &m); err != nil {
					return fmt.Errorf("dependency results of %s: %w", st.ID, err)
				}
				q.deps[st.ID] = m
			}
		}
		return rows.Err()
	})
	return q
}

// claimed records the transitions of a sent claim and returns its steps,
// in claim order.
func (c *change) claimed(q *queuedClaim, p *store.StepClaimParams) ([]*store.ClaimedStep, error) {
	if len(q.got) == 0 {
		return nil, nil
	}
	slices.SortFunc(q.got, func(a, b claimedRow) int {
		if c := a.st.RunAt.Compare(b.st.RunAt); c != 0 {
			return c
		}
		return strings.Compare(a.st.ID, b.st.ID)
	})
	out := make([]*store.ClaimedStep, 0, len(q.got))
	for _, g := range q.got {
		t := q.tasks[g.st.TaskID]
		if t == nil {
			return nil, fmt.Errorf("claim: task %s of step %s: %w", g.st.TaskID, g.st.ID, store.ErrNotFound)
		}
		e, err := store.ClaimEvent(g.st, g.from)
		if err != nil {
			return nil, err
		}
		c.claimedReady[g.st.TaskID+"/"+g.st.Name] = true
		c.event(t, e)
		out = append(out, &store.ClaimedStep{Step: g.st, Namespace: t.Namespace, TaskName: t.Name,
			Version: t.Version, Context: t.Context, Dependencies: q.deps[g.st.ID]})
	}
	return out, nil
}

// claimSQL claims ready steps. The steps_claim index gives them in (run_at, idx)
// order; SKIP LOCKED lets concurrent workers take disjoint batches without
// waiting for each other. The update finds the rows it locked by their
// ctid (a row locked FOR UPDATE stays where it is until the transaction
// ends), not by a second lookup in the primary key; the parents' results
// are read only for steps of tasks of more than one step.
const claimSQL = `WITH ready AS (
		SELECT ctid AS rid, state FROM steps
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
	FROM ready, tasks t
	WHERE s.ctid = ready.rid AND t.id = s.task_id
	RETURNING ready.state, s.id, s.task_id, s.idx, s.name, s.template_id, s.handler, s.state, s.attempts, s.max_attempts,
		s.retry_limit, s.timeout_us, s.deps_remaining, s.run_at, s.lease_owner, s.lease_token, s.lease_expires_at,
		s.results::text, s.last_error, s.error_class, s.seq, s.created_at, s.updated_at, s.started_at, s.finished_at,
		t.namespace, t.name, t.version, t.context::text,
		CASE WHEN t.steps_total > 1 THEN (SELECT json_object_agg(p.name, p.results) FROM step_edges e JOIN steps p ON p.id = e.parent_id
			WHERE e.child_id = s.id)::text END`

// indexPlansSQL keeps the rest of a transaction on the hot path (claims,
// completions) from planning with sequential or bitmap scans. Those
// statements read a few rows through an index; but a burst of new work
// outruns the tables' statistics, and planned from stale ones a claim
// would read and sort every ready step, and a release would scan every
// step. A query with no index to use still gets its sequential scan.
// Joins are nested loops over index lookups, for the same reason (a hash
// join would read a whole index to build its other side). With only
// these paths left, one generic plan per statement serves every
// execution, so the statements are not planned again each time.
const indexPlansSQL = `SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
	set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),
	set_config('plan_cache_mode', 'force_generic_plan', true)`

// expiredLeasesSQL finds running steps whose lease expired (steps_leased).
const expiredLeasesSQL = `SELECT id FROM steps WHERE state = 'in_progress'
	AND (lease_expires_at <= $1 OR lease_owner = ANY($2)) ORDER BY lease_expires_at LIMIT $3`

// releaseChildrenSQL decrements the counters of the children of the steps
// a change completed, by the number of their parents among them (the
// edges' primary key (parent_id, child_id) finds them), and returns them.
const releaseChildrenSQL = `UPDATE steps s
	SET deps_remaining = s.deps_remaining - r.n,
	    run_at = CASE WHEN s.deps_remaining = r.n AND s.state = 'pending' THEN $1 ELSE s.run_at END,
	    updated_at = $1
	FROM (SELECT child_id, COUNT(*)::int AS n FROM step_edges WHERE parent_id = ANY($2) GROUP BY child_id) r
	WHERE s.id = r.child_id
	RETURNING s.task_id, s.idx, s.name, s.deps_remaining, s.state`

// leftoverTasksSQL finds in-progress tasks with nothing open (tasks_state_created).
const leftoverTasksSQL = "SELECT id FROM tasks WHERE state = 'in_progress' AND steps_open = 0 ORDER BY id LIMIT $1"

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// queueLockTasks adds to b the statement that locks the tasks of the given
// steps FOR UPDATE, in id order, and keeps them; tasks this change has
// locked already are skipped.
func (c *change) queueLockTasks(b *pgx.Batch, stepIDs []string) {
	known := make([]string, 0, len(c.tasks))
	for id := range c.tasks {
		known = append(known, id)
	}
	b.Queue(lockStepTasksSQL,
		texts(stepIDs), texts(known)).Query(func(rows pgx.Rows) error {
		return c.keepLocked(rows)
	})
}

// lockForSteps locks the tasks of the given steps, then the steps, each in
// id order: the locking order of every write transaction. Both statements
// go in one round trip.
func (c *change) lockForSteps(ctx context.Context, tx pgx.Tx, stepIDs []string) (map[string]*store.Step, error) {
	out := make(map[string]*store.Step, len(stepIDs))
	b := &pgx.Batch{}
	c.planForIndexes(b)
	c.queueLockTasks(b, stepIDs)
	b.Queue(lockStepsSQL, texts(stepIDs)).Query(func(rows pgx.Rows) error {
		steps, err := collectSteps(rows, nil)
		if err != nil {
			return err
		}
		for _, st := range steps {
			out[st.ID] = st
		}
		return nil
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return out, nil
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
	var (
		stale   []int
		claimed []*store.ClaimedStep
	)
	c, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, c *change) error {
		stale, claimed = nil, nil
		var err error
		stale, claimed, err = c.complete(ctx, tx, p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("complete steps: %w", err)
	}
	return &store.StepCompleteManyResult{ChangeResult: *c.result(), Stale: stale, Claimed: claimed}, nil
}

// completeSQL applies attempt outcomes whose lease is still held (the
// guard of every row: in_progress, same lease token and attempt) and
// releases the children of the steps it completed, in one statement: it
// returns the steps it changed ('d', with their outcome's ordinal) and the
// children it released ('r').
//
// The guard's state, in_progress, is a parameter ($12), not a literal: a
// literal matches the predicate of the steps_leased index, and with the
// statistics of a table that a burst of new work has outrun (one running
// step, say) the planner then reads every running step and compares each
// with every outcome (a nested loop over steps_leased and the outcomes):
// quadratic in the batch, 43 ms for 256 outcomes among 265 running steps,
// and slower batches made larger ones. With a parameter the index cannot
// serve the query, and each outcome finds its step by primary key.
const completeSQL = `WITH u AS (
		SELECT * FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::bigint[], $7::int[],
			$8::text[], $9::bool[], $10::text[], $11::text[])
			WITH ORDINALITY AS u(id, to_state, run_at, finished_at, token, attempt, results, set_error, err, err_class, ord)
	), done AS (
		UPDATE steps s SET state = u.to_state, seq = s.seq + 1, updated_at = $1, run_at = u.run_at, finished_at = u.finished_at,
			lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
			results = CASE WHEN u.to_state = 'complete' THEN u.results::json ELSE s.results END,
			last_error = CASE WHEN u.set_error THEN u.err ELSE s.last_error END,
			error_class = CASE WHEN u.set_error THEN u.err_class ELSE s.error_class END
		FROM u
		WHERE s.id = u.id AND s.state = $12 AND s.lease_token = u.token AND s.attempts = u.attempt
		RETURNING u.ord, s.id, s.task_id, s.name, s.seq, s.retry_limit, s.state
	), rel AS (
		UPDATE steps c SET deps_remaining = c.deps_remaining - r.n,
			run_at = CASE WHEN c.deps_remaining = r.n AND c.state = 'pending' THEN $1 ELSE c.run_at END,
			updated_at = $1
		FROM (SELECT e.child_id, COUNT(*)::int AS n FROM step_edges e JOIN done d ON d.id = e.parent_id
			WHERE d.state = 'complete' GROUP BY e.child_id) r
		WHERE c.id = r.child_id
		RETURNING c.task_id, c.idx, c.name, c.deps_remaining, c.state
	)
	SELECT 'd', ord, id, task_id, name, seq, retry_limit, state, 0 AS idx, 0 AS deps FROM done
	UNION ALL
	SELECT 'r', 0, '', task_id, name, 0, 0, state, idx, deps_remaining FROM rel`

// complete applies a batch of outcomes in two round trips: the tasks'
// locks, the guarded transitions with the release of the children and
// the claim go in one batch (completeSQL), the finalizer's writes, the
// log and the commit in the last. It returns the indexes of stale
// outcomes and the claimed steps.
func (c *change) complete(ctx context.Context, tx pgx.Tx, p *store.StepCompleteManyParams) ([]int, []*store.ClaimedStep, error) {
	n := len(p.Outcomes)
	var (
		ids, tos, errs, classes []string
		runAts, finished        []*time.Time
		tokens                  []int64
		attempts                []int32
		results                 pgArray[pgtype.Text]
		setErr                  []bool
		metas                   = make([]store.Metadata, n)
		ords                    []int
		seen                    = make(map[string]bool, n)
	)
	for i, o := range p.Outcomes {
		// A step named twice: the first outcome applies, the others find
		// its lease gone (stale), as if they came one after the other.
		if seen[o.StepID] {
			continue
		}
		seen[o.StepID] = true
		ords = append(ords, i)
		meta := store.Metadata{Attempt: o.Attempt, Worker: p.Worker, LeaseToken: o.LeaseToken, DurationMS: o.DurationMS,
			Error: o.Error, ErrorClass: o.ErrorClass}
		var (
			to           lifecycle.StepState
			runAt, finAt *time.Time
			result       pgtype.Text
		)
		switch o.Kind {
		case store.OutcomeComplete:
			to, finAt = lifecycle.StepComplete, &c.now
			result = pgtype.Text{String: string(o.Result), Valid: true}
			if result.String == "" {
				result.String = "null"
			}
		case store.OutcomeRetry:
			to, runAt = lifecycle.StepWaitingForRetry, nullTime(o.NextAttemptAt)
			meta.NextAttemptAt = o.NextAttemptAt.UTC()
		case store.OutcomeFail:
			to, finAt = lifecycle.StepError, &c.now
			meta.Permanent = o.Permanent
		default:
			return nil, nil, fmt.Errorf("outcome %d for step %s: unknown kind %d", i, o.StepID, o.Kind)
		}
		if _, err := lifecycle.Step(lifecycle.StepInProgress, to); err != nil {
			return nil, nil, err
		}
		metas[i] = meta
		ids, tos = append(ids, o.StepID), append(tos, string(to))
		runAts, finished = append(runAts, runAt), append(finished, finAt)
		tokens, attempts = append(tokens, o.LeaseToken), append(attempts, int32(o.Attempt))
		results = append(results, result)
		setErr = append(setErr, o.Error != "" || o.ErrorClass != "")
		errs, classes = append(errs, o.Error), append(classes, o.ErrorClass)
	}
	type doneRow struct {
		ord             int
		id, task, name  string
		seq, retryLimit int
		state           string
	}
	var (
		done  []doneRow
		ready []releasedChild
		q     *queuedClaim
	)
	b := &pgx.Batch{}
	c.planForIndexes(b)
	c.queueLockTasks(b, ids)
	b.Queue(completeSQL, c.now, texts(ids), texts(tos), timePtrs(runAts), timePtrs(finished), int8s(tokens), attempts,
		results, setErr, nullTexts(errs), nullTexts(classes), string(lifecycle.StepInProgress)).Query(func(rows pgx.Rows) error {
		// The holders serve every row: declared in the loop, each would be
		// an allocation per row.
		var (
			kind, id, task, name, state     string
			ord, seq, retryLimit, idx, deps int
		)
		for rows.Next() {
			if err := rows.Scan(&kind, &ord, &id, &task, &name, &seq, &retryLimit, &state, &idx, &deps); err != nil {
				return fmt.Errorf("complete: %w", err)
			}
			switch {
			case kind == "d":
				done = append(done, doneRow{ord: ords[ord-1], id: id, task: task, name: name, seq: seq, retryLimit: retryLimit, state: state})
			case deps == 0 && state == string(lifecycle.StepPending):
				ready = append(ready, releasedChild{task: task, name: name, idx: idx})
			}
		}
		return rows.Err()
	})
	if p.Claim != nil && p.Claim.Limit > 0 {
		q = c.queueClaim(b, p.Claim)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(done, func(a, b doneRow) int { return a.ord - b.ord })
	applied := make([]bool, n)
	for _, d := range done {
		applied[d.ord] = true
		o := p.Outcomes[d.ord]
		t, err := c.task(d.task)
		if err != nil {
			return nil, nil, err
		}
		to := lifecycle.StepState(d.state)
		dec, err := lifecycle.Step(lifecycle.StepInProgress, to)
		if err != nil {
			return nil, nil, err
		}
		meta := metas[d.ord]
		meta.RetryLimit = d.retryLimit
		c.event(t, &store.Event{StepID: d.id, StepName: d.name, Name: dec.Event, Seq: d.seq, From: string(lifecycle.StepInProgress),
			To: d.state, Metadata: meta})
		dn, op := store.StepDelta(lifecycle.StepInProgress, to, 0)
		c.delta(t.ID, dn, op)
		for _, ce := range o.CustomEvents {
			c.event(t, &store.Event{StepID: d.id, StepName: d.name, Name: event.Name(ce.Name), Payload: ce.Payload})
		}
		c.count++
	}
	var stale []int
	for i := range p.Outcomes {
		if !applied[i] {
			stale = append(stale, i)
		}
	}
	c.addReleased(ready)
	if q == nil {
		return stale, nil, nil
	}
	claimed, err := c.claimed(q, p.Claim)
	return stale, claimed, err
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
				if err := c.applyStep(t, st, ch); err != nil {
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
			if err := c.applyStep(t, st, stepChange{to: lifecycle.StepPending, meta: meta, refund: true}); err != nil {
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
	rows, err := s.pool.Query(ctx, renewSQL, ids, tokens, attempts, p.Now.Add(p.TTL).UTC(), p.Worker)
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
