package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

const taskColumns = `id, template_id, namespace, name, version, state, context::text, identity_key, idempotency_key,
	steps_total, steps_done, steps_open, seq, created_at, updated_at, started_at, finished_at`

// lockedTaskColumns are the columns of scanTask for the tasks a write
// locks, with an empty context: no change needs the context (a claim reads
// it in the claiming statement), and reading it would take it out of
// TOAST storage and convert it to text for every task each write locks.
const lockedTaskColumns = `id, template_id, namespace, name, version, state, '', identity_key, idempotency_key,
	steps_total, steps_done, steps_open, seq, created_at, updated_at, started_at, finished_at`

func scanTask(row pgx.Row) (*store.Task, error) {
	var sc taskScanner
	return sc.scan(row)
}

// taskScanner scans task rows (taskColumns or lockedTaskColumns) with
// holders that serve every row, as stepScanner does.
type taskScanner struct {
	dest              []any
	state, ctx        string
	identity, idem    pgtype.Text
	started, finished pgtype.Timestamptz
}

func (r *taskScanner) scan(row pgx.Row) (*store.Task, error) {
	t := &store.Task{}
	r.dest = append(r.dest[:0], &t.ID, &t.TemplateID, &t.Namespace, &t.Name, &t.Version, &r.state, &r.ctx, &r.identity, &r.idem,
		&t.StepsTotal, &t.StepsDone, &t.StepsOpen, &t.Seq, &t.CreatedAt, &t.UpdatedAt, &r.started, &r.finished)
	if err := row.Scan(r.dest...); err != nil {
		return nil, err
	}
	t.State = lifecycle.TaskState(r.state)
	t.Context = []byte(r.ctx)
	t.IdentityKey, t.IdempotencyKey = r.identity.String, r.idem.String
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	t.StartedAt, t.FinishedAt = validTime(r.started), validTime(r.finished)
	return t, nil
}

// TaskGet returns one task.
func (s *Store) TaskGet(ctx context.Context, id string) (*store.Task, error) {
	t, err := scanTask(s.pool.QueryRow(ctx, "SELECT "+taskColumns+" FROM tasks WHERE id = $1", id))
	if err != nil {
		return nil, notFound(err, "task "+id)
	}
	return t, nil
}

// TaskList lists tasks, newest first.
func (s *Store) TaskList(ctx context.Context, p *store.TaskListParams) ([]*store.Task, error) {
	q, args := taskListSQL(p)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	var sc taskScanner
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Task, error) { return sc.scan(r) })
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return out, nil
}

// taskListSQL builds the query of TaskList with only the filters that are
// set, so that each variant gets a plan using its index. Every listing
// index ends with (created_at DESC, id DESC), so the order and the cursor
// are served by one range scan: tasks_state_created, tasks_name_created,
// tasks_namespace_created or tasks_created.
func taskListSQL(p *store.TaskListParams) (string, []any) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, vals ...any) {
		idx := make([]any, len(vals))
		for i, v := range vals {
			args = append(args, v)
			idx[i] = len(args)
		}
		where = append(where, fmt.Sprintf(cond, idx...))
	}
	if p.State != "" {
		add("state = $%d", string(p.State))
	}
	if p.Namespace != "" {
		add("namespace = $%d", p.Namespace)
	}
	if p.Name != "" {
		add("name = $%d", p.Name)
	}
	if p.Version != "" {
		add("version = $%d", p.Version)
	}
	if !p.CreatedAfter.IsZero() {
		add("created_at >= $%d", p.CreatedAfter.UTC())
	}
	if !p.CreatedBefore.IsZero() {
		add("created_at < $%d", p.CreatedBefore.UTC())
	}
	if !p.FinishedAfter.IsZero() {
		add("finished_at >= $%d", p.FinishedAfter.UTC())
	}
	if p.Search != "" {
		add(`(id ILIKE $%[1]d OR namespace ILIKE $%[1]d OR name ILIKE $%[1]d OR idempotency_key ILIKE $%[1]d)`,
			"%"+store.EscapeLike(p.Search)+"%")
	}
	if p.After != nil {
		add("(created_at, id) < ($%d, $%d)", p.After.CreatedAt.UTC(), p.After.ID)
	}
	q := "SELECT " + taskColumns + " FROM tasks"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	return q + fmt.Sprintf(" ORDER BY created_at DESC, id DESC LIMIT $%d", len(args)), args
}

// TaskCreate creates and starts a task in one transaction.
func (s *Store) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	if err := store.ValidateTaskCreate(p); err != nil {
		return nil, err
	}
	var res *store.TaskCreateResult
	_, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, c *change) error {
		r, err := createTask(ctx, tx, p, c)
		res = r
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create task %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	return res, nil
}

func createTask(ctx context.Context, tx pgx.Tx, p *store.TaskCreateParams, c *change) (*store.TaskCreateResult, error) {
	now := c.now
	taskID := uuid.Must(uuid.NewV7()).String()
	roots := 0
	for _, st := range p.Steps {
		if len(st.Parents) == 0 {
			roots++
		}
	}
	n := len(p.Steps)
	ids := make([]string, n)
	for i := range p.Steps {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	task := &store.Task{
		ID: taskID, TemplateID: p.TemplateID, Namespace: p.Namespace, Name: p.Name, Version: p.Version,
		State: lifecycle.TaskInProgress, Context: p.Context, IdentityKey: p.IdentityKey, IdempotencyKey: p.IdempotencyKey,
		StepsTotal: n, StepsOpen: roots, Seq: 2, CreatedAt: now, UpdatedAt: now, StartedAt: now,
	}
	claim, err := store.ClaimAtCreation(task, p, ids)
	if err != nil {
		return nil, err
	}
	idx := make([]int32, n)
	names := make([]string, n)
	handlers := make([]string, n)
	maxAttempts := make([]int32, n)
	timeouts := make([]int64, n)
	deps := make([]int32, n)
	runAts := make([]*time.Time, n)
	claimed := make([]bool, n)
	var parents, children []string
	for i, st := range p.Steps {
		idx[i] = int32(i)
		names[i], handlers[i] = st.Name, st.Handler
		maxAttempts[i] = int32(st.MaxAttempts)
		timeouts[i] = st.Timeout.Microseconds()
		deps[i] = int32(len(st.Parents))
		claimed[i] = claim.Claimed(i)
		if len(st.Parents) == 0 && !claimed[i] {
			runAts[i] = &now
		}
		for _, par := range st.Parents {
			parents = append(parents, ids[par])
			children = append(children, ids[i])
		}
	}
	// The task, its steps and its edges go in one round trip; the steps and
	// edges are inserted only if the task was (a task with the same
	// identity key may exist already).
	b := &pgx.Batch{}
	inserted := false
	// With RequireCurrent the task is inserted only while its template is
	// current (the primary key of templates finds it).
	b.Queue(insertTaskSQL,
		taskID, p.TemplateID, p.Namespace, p.Name, p.Version, string(p.Context), nullString(p.IdentityKey),
		nullString(p.IdempotencyKey), len(p.Steps), roots, now, p.RequireCurrent).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var xid int64
			if err := rows.Scan(&xid); err != nil {
				return err
			}
			inserted = true
			keepXID(tx, xid)
		}
		return rows.Err()
	})
	// Steps claimed at creation are stored running, under the claim's lease.
	var worker *string
	var token *int64
	var expires *time.Time
	if len(claim.Index) > 0 {
		worker, token, expires = &p.Claim.Worker, &p.Claim.LeaseToken, &claim.Expires
	}
	b.Queue(insertStepsSQL,
		texts(ids), taskID, p.TemplateID, now, idx, texts(names), texts(handlers), maxAttempts, int8s(timeouts), deps, timePtrs(runAts),
		claimed, worker, token, expires)
	if len(parents) > 0 {
		b.Queue(insertEdgesSQL, texts(parents), texts(children), taskID)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("insert task: %w", err)
	}
	if !inserted {
		// Either a task with the same identity exists, or the template was
		// replaced (RequireCurrent).
		existing, err := scanTask(tx.QueryRow(ctx, "SELECT "+taskColumns+" FROM tasks WHERE identity_key = $1", p.IdentityKey))
		if errors.Is(err, pgx.ErrNoRows) && p.RequireCurrent {
			return nil, fmt.Errorf("template %s is no longer current: %w", p.TemplateID, store.ErrTemplateReplaced)
		}
		if err != nil {
			return nil, fmt.Errorf("load the existing task: %w", err)
		}
		return &store.TaskCreateResult{Task: existing}, nil
	}

	t := &taskRow{Task: *task}
	evs, ready, err := store.CreationEvents(task, p.Steps, ids, p.Actor)
	if err != nil {
		return nil, err
	}
	for _, e := range append(evs, claim.Events...) {
		c.event(t, e)
	}
	for _, cs := range claim.Steps {
		c.claimedReady[taskID+"/"+cs.Step.Name] = true
	}
	c.ready = append(c.ready, ready)
	c.notify = true
	c.count = 1
	return &store.TaskCreateResult{Task: task, Created: true, Events: c.events, Ready: c.ready, Claimed: claim.Steps}, nil
}

// taskRow is a task locked inside a transaction, kept up to date in memory.
type taskRow struct {
	store.Task // Context is empty for a task a write locked (lockedTaskColumns)
}

// change collects what one transaction did.
type change struct {
	now       time.Time
	tasks     map[string]*taskRow
	order     []string
	deltas    map[string]*taskDelta
	events    []*store.Event
	ready     []store.Ready
	finalized []store.Finalized
	count     int
	// operator is the reason and actor of an operator's change, recorded on
	// the finalizer's transitions too.
	operator store.Metadata
	// notify asks for a NOTIFY to wake other workers: steps became ready.
	notify bool
	// announceLater: the write returns once it committed, without waiting
	// for the announcement of the changes committed before it (its own hook
	// still runs in commit order). See StepClaim.
	announceLater bool
	// writes are guarded writes not sent yet; released are steps whose
	// children are not released yet.
	writes   []queuedWrite
	released []string
	// counters are the task counter changes settle found, for finish.
	counters counterDeltas
	// planned: the transaction's planner settings are made (indexPlansSQL).
	planned bool
	// claimedReady are the steps this change claimed itself, by task id
	// and name: other workers need no wake-up for them.
	claimedReady map[string]bool
}

// readyLeft reports whether a step this change made ready is still
// waiting for a worker: the change did not claim it itself.
func (c *change) readyLeft() bool {
	n := 0
	for _, r := range c.ready {
		n += len(r.Steps)
	}
	return n == 0 || c.claimedReadyCount() < n
}

// claimedReadyCount is how many of the steps this change made ready it
// claimed itself.
func (c *change) claimedReadyCount() int {
	n := 0
	for _, r := range c.ready {
		for _, name := range r.Steps {
			if c.claimedReady[r.TaskID+"/"+name] {
				n++
			}
		}
	}
	return n
}

// planForIndexes queues indexPlansSQL unless the transaction has it.
func (c *change) planForIndexes(b *pgx.Batch) {
	if !c.planned {
		b.Queue(indexPlansSQL)
		c.planned = true
	}
}

// counterDeltas are changes of task counters, as arrays for one statement.
type counterDeltas struct {
	ids        []string
	done, open []int32
}

type taskDelta struct{ done, open int }

func newChange(now time.Time) *change {
	return &change{now: now.UTC().Truncate(time.Microsecond), tasks: map[string]*taskRow{}, deltas: map[string]*taskDelta{},
		claimedReady: map[string]bool{}}
}

func (c *change) result() *store.ChangeResult {
	return &store.ChangeResult{Events: c.events, Ready: c.ready, Finalized: c.finalized, Count: c.count, ClaimedReady: c.claimedReadyCount()}
}

// lockTasks locks tasks FOR UPDATE in id order and keeps them. Tasks
// already locked by this transaction are skipped.
func (c *change) lockTasks(ctx context.Context, tx pgx.Tx, ids []string) error {
	var want []string
	for _, id := range ids {
		if _, ok := c.tasks[id]; !ok {
			want = append(want, id)
		}
	}
	if len(want) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, lockTasksSQL, want)
	if err != nil {
		return fmt.Errorf("lock tasks: %w", err)
	}
	return c.keepLocked(rows)
}

// keepLocked keeps the tasks a locking query returned, in its order.
func (c *change) keepLocked(rows pgx.Rows) error {
	var sc taskScanner
	tasks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Task, error) { return sc.scan(r) })
	if err != nil {
		return fmt.Errorf("lock tasks: %w", err)
	}
	for _, t := range tasks {
		c.tasks[t.ID] = &taskRow{Task: *t}
		c.order = append(c.order, t.ID)
	}
	return nil
}

func (c *change) task(id string) (*taskRow, error) {
	t, ok := c.tasks[id]
	if !ok {
		return nil, fmt.Errorf("task %s: %w", id, store.ErrNotFound)
	}
	return t, nil
}

func (c *change) delta(taskID string, done, open int) {
	d := c.deltas[taskID]
	if d == nil {
		d = &taskDelta{}
		c.deltas[taskID] = d
	}
	d.done += done
	d.open += open
}

func (c *change) addReady(taskID string, names []string) {
	if len(names) == 0 {
		return
	}
	c.notify = true
	for i := range c.ready {
		if c.ready[i].TaskID == taskID {
			c.ready[i].Steps = append(c.ready[i].Steps, names...)
			return
		}
	}
	c.ready = append(c.ready, store.Ready{TaskID: taskID, Steps: names, At: c.now})
}

func (c *change) event(t *taskRow, e *store.Event) *store.Event {
	e.TaskID, e.Namespace, e.TaskName, e.Version = t.ID, t.Namespace, t.Name, t.Version
	if e.OccurredAt.IsZero() {
		e.OccurredAt = c.now
	}
	c.events = append(c.events, e)
	return e
}

// transitionTask moves a locked task to state to and records it. The
// write is sent with the change's other writes.
func (c *change) transitionTask(t *taskRow, to lifecycle.TaskState, meta store.Metadata) error {
	d, err := lifecycle.Task(t.State, to)
	if err != nil {
		return err
	}
	if d.NoOp {
		return nil
	}
	from := t.State
	w := taskWrite{id: t.ID, from: string(from), to: string(to)}
	switch {
	case to == lifecycle.TaskInProgress:
		w.started, w.finished = true, 1
	case to == lifecycle.TaskPending:
		w.finished = 1
	case to.Finished():
		w.finished = 2
	}
	c.writeTask(w)
	t.State = to
	t.Seq++
	c.event(t, &store.Event{Name: d.Event, Seq: t.Seq, From: string(from), To: string(to), Metadata: meta})
	return nil
}

// sync sends the queued writes and releases the children of the steps the
// change completed, in one round trip, and records which children became
// ready. Reads that must see the change's own writes come after it.
func (c *change) sync(ctx context.Context, tx pgx.Tx) error {
	if len(c.writes) == 0 && len(c.released) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	c.queueWrites(b)
	var ready []releasedChild
	if len(c.released) > 0 {
		b.Queue(releaseChildrenSQL, c.now, texts(c.released)).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var (
					ch    releasedChild
					deps  int
					state string
				)
				if err := rows.Scan(&ch.task, &ch.idx, &ch.name, &deps, &state); err != nil {
					return fmt.Errorf("release children: %w", err)
				}
				if deps == 0 && state == string(lifecycle.StepPending) {
					ready = append(ready, ch)
				}
			}
			return rows.Err()
		})
		c.released = nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	c.addReleased(ready)
	return nil
}

// releasedChild is a step whose last parent a change completed.
type releasedChild struct {
	task string
	idx  int
	name string
}

// addReleased records children that became ready, by task in template
// order, and counts them open.
func (c *change) addReleased(ready []releasedChild) {
	slices.SortFunc(ready, func(a, b releasedChild) int {
		if c := strings.Compare(a.task, b.task); c != 0 {
			return c
		}
		return a.idx - b.idx
	})
	for i := 0; i < len(ready); {
		j := i
		var names []string
		for ; j < len(ready) && ready[j].task == ready[i].task; j++ {
			names = append(names, ready[j].name)
		}
		c.delta(ready[i].task, 0, len(names))
		c.addReady(ready[i].task, names)
		i = j
	}
}

// settle sends the change's queued writes and releases, then brings the
// counters of its tasks up to date in memory and runs the finalizer on
// them; what that decides is written by finish.
func (c *change) settle(ctx context.Context, tx pgx.Tx) error {
	if err := c.sync(ctx, tx); err != nil {
		return err
	}
	for _, id := range c.order {
		t := c.tasks[id]
		if d := c.deltas[id]; d != nil && (d.done != 0 || d.open != 0) {
			c.counters.ids = append(c.counters.ids, id)
			c.counters.done = append(c.counters.done, int32(d.done))
			c.counters.open = append(c.counters.open, int32(d.open))
			t.StepsDone += d.done
			t.StepsOpen += d.open
			d.done, d.open = 0, 0
		}
		if err := c.finalize(ctx, tx, t); err != nil {
			return err
		}
	}
	return nil
}

// finish returns the batch of what settle left, to be sent with the
// commit: the task counters, the finalizer's transitions, the wake-up and
// the events (under the log's advisory lock; the caller announces them in
// commit order, commitOrder).
func (c *change) finish(s *Store) (*pgx.Batch, error) {
	// A task the finalizer transitions gets its counters in the same
	// statement: one new row version instead of two.
	var ids []string
	var done, opens []int32
	for i, id := range c.counters.ids {
		if !c.foldCounters(id, c.counters.done[i], c.counters.open[i]) {
			ids, done, opens = append(ids, id), append(done, c.counters.done[i]), append(opens, c.counters.open[i])
		}
	}
	c.counters = counterDeltas{}
	b := &pgx.Batch{}
	if len(ids) > 0 {
		queueGuarded(b, countersSQL,
			[]any{texts(ids), done, opens, c.now}, len(ids), "update task counters: a task is missing")
	}
	c.queueWrites(b)
	if len(c.events) > 0 {
		if c.notify && c.readyLeft() {
			b.Queue(notifySQL, s.channel, s.origin)
		}
		b.Queue(lockLogSQL, s.lockKey)
		if err := queueEvents(b, c.events); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// foldCounters adds counter deltas to the first queued transition of a
// task, and reports whether there was one.
func (c *change) foldCounters(id string, done, open int32) bool {
	for _, w := range c.writes {
		if w.tasks == nil || !w.tasks.seen[id] {
			continue
		}
		i := slices.Index(w.tasks.ids, id)
		w.tasks.done[i] += done
		w.tasks.open[i] += open
		return true
	}
	return false
}

// finalize is the finalizer; the row lock and the SQL guard on the task's
// state make it happen once. The change's writes have been sent.
func (c *change) finalize(ctx context.Context, tx pgx.Tx, t *taskRow) error {
	if t.State != lifecycle.TaskInProgress {
		return nil
	}
	to, final := lifecycle.Finalize(t.StepsTotal, t.StepsDone, t.StepsOpen)
	if !final {
		return nil
	}
	var meta store.Metadata
	if to == lifecycle.TaskError {
		rows, err := tx.Query(ctx, failedStepsSQL, t.ID)
		if err != nil {
			return fmt.Errorf("failed steps of %s: %w", t.ID, err)
		}
		failed, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		meta = store.FailureMetadata(failed)
	}
	meta.Reason, meta.Actor = c.operator.Reason, c.operator.Actor
	if err := c.transitionTask(t, to, meta); err != nil {
		return err
	}
	c.finalized = append(c.finalized, store.Finalized{TaskID: t.ID, State: to, StepsDone: t.StepsDone, StepsTotal: t.StepsTotal})
	return nil
}

// TaskCancel cancels a task and its unfinished steps.
func (s *Store) TaskCancel(ctx context.Context, p *store.TaskCancelParams) (*store.ChangeResult, error) {
	c, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, c *change) error {
		if err := c.lockTasks(ctx, tx, []string{p.TaskID}); err != nil {
			return err
		}
		t, err := c.task(p.TaskID)
		if err != nil {
			return err
		}
		d, err := lifecycle.Task(t.State, lifecycle.TaskCancelled)
		if err != nil || d.NoOp {
			return err
		}
		steps, err := lockSteps(ctx, tx, "task_id = $1 AND state IN ('pending', 'in_progress', 'waiting_for_retry', 'error')", p.TaskID)
		if err != nil {
			return err
		}
		meta := store.Metadata{Reason: p.Reason, Actor: p.Actor}
		c.operator = meta
		for _, st := range steps {
			if err := c.applyStep(t, st, stepChange{to: lifecycle.StepCancelled, meta: meta}); err != nil {
				return err
			}
		}
		if err := c.transitionTask(t, lifecycle.TaskCancelled, meta); err != nil {
			return err
		}
		c.count = 1
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cancel task %s: %w", p.TaskID, err)
	}
	return c.result(), nil
}

// TaskRetry resets the failed steps of a task in error and resumes it.
func (s *Store) TaskRetry(ctx context.Context, p *store.TaskRetryParams) (*store.ChangeResult, error) {
	c, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, c *change) error {
		if err := c.lockTasks(ctx, tx, []string{p.TaskID}); err != nil {
			return err
		}
		t, err := c.task(p.TaskID)
		if err != nil {
			return err
		}
		if t.State != lifecycle.TaskError {
			if _, err := lifecycle.Task(t.State, lifecycle.TaskPending); err != nil {
				return fmt.Errorf("task is %s: %w", t.State, err)
			}
			return fmt.Errorf("task is %s, not error: %w", t.State, store.ErrConflict)
		}
		steps, err := lockSteps(ctx, tx, "task_id = $1 AND state = 'error'", p.TaskID)
		if err != nil {
			return err
		}
		if len(steps) == 0 {
			return fmt.Errorf("task has no failed step to retry: %w", store.ErrConflict)
		}
		meta := store.Metadata{Reason: p.Reason, Actor: p.Actor}
		c.operator = meta
		if err := c.transitionTask(t, lifecycle.TaskPending, meta); err != nil {
			return err
		}
		for _, st := range steps {
			if err := c.applyStep(t, st, stepChange{to: lifecycle.StepPending, meta: meta, raiseLimit: true}); err != nil {
				return err
			}
		}
		if err := c.transitionTask(t, lifecycle.TaskInProgress, meta); err != nil {
			return err
		}
		c.count = len(steps)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("retry task %s: %w", p.TaskID, err)
	}
	return c.result(), nil
}

// TaskResolve closes a task in error by hand.
func (s *Store) TaskResolve(ctx context.Context, p *store.TaskRetryParams) (*store.ChangeResult, error) {
	c, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, c *change) error {
		if err := c.lockTasks(ctx, tx, []string{p.TaskID}); err != nil {
			return err
		}
		t, err := c.task(p.TaskID)
		if err != nil {
			return err
		}
		d, err := lifecycle.Task(t.State, lifecycle.TaskResolvedManually)
		if err != nil {
			return fmt.Errorf("task is %s: %w", t.State, err)
		}
		if d.NoOp {
			return nil
		}
		if err := c.transitionTask(t, lifecycle.TaskResolvedManually, store.Metadata{Reason: p.Reason, Actor: p.Actor}); err != nil {
			return err
		}
		c.count = 1
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("resolve task %s: %w", p.TaskID, err)
	}
	return c.result(), nil
}
