package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

const taskColumns = `id, template_id, namespace, name, version, state, context::text, identity_key, idempotency_key,
	steps_total, steps_done, steps_open, seq, created_at, updated_at, started_at, finished_at`

func scanTask(row pgx.Row) (*store.Task, error) {
	var (
		t                 store.Task
		state, ctx        string
		identity, idem    *string
		started, finished *time.Time
	)
	if err := row.Scan(&t.ID, &t.TemplateID, &t.Namespace, &t.Name, &t.Version, &state, &ctx, &identity, &idem,
		&t.StepsTotal, &t.StepsDone, &t.StepsOpen, &t.Seq, &t.CreatedAt, &t.UpdatedAt, &started, &finished); err != nil {
		return nil, err
	}
	t.State = lifecycle.TaskState(state)
	t.Context = []byte(ctx)
	t.IdentityKey, t.IdempotencyKey = deref(identity), deref(idem)
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	t.StartedAt, t.FinishedAt = utc(started), utc(finished)
	return &t, nil
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
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Task, error) { return scanTask(r) })
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
	var inserted string
	err := tx.QueryRow(ctx, `INSERT INTO tasks (id, template_id, namespace, name, version, state, context,
		identity_key, idempotency_key, steps_total, steps_done, steps_open, seq, created_at, updated_at, started_at)
		VALUES ($1, $2, $3, $4, $5, 'in_progress', $6::json, $7, $8, $9, 0, $10, 2, $11, $11, $11)
		ON CONFLICT (identity_key) DO NOTHING
		RETURNING id`,
		taskID, p.TemplateID, p.Namespace, p.Name, p.Version, string(p.Context), nullString(p.IdentityKey),
		nullString(p.IdempotencyKey), len(p.Steps), roots, now).Scan(&inserted)
	if errors.Is(err, pgx.ErrNoRows) {
		existing, err := scanTask(tx.QueryRow(ctx, "SELECT "+taskColumns+" FROM tasks WHERE identity_key = $1", p.IdentityKey))
		if err != nil {
			return nil, fmt.Errorf("load the existing task: %w", err)
		}
		return &store.TaskCreateResult{Task: existing}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("insert task: %w", err)
	}

	n := len(p.Steps)
	ids := make([]string, n)
	idx := make([]int32, n)
	names := make([]string, n)
	handlers := make([]string, n)
	maxAttempts := make([]int32, n)
	timeouts := make([]int64, n)
	deps := make([]int32, n)
	runAts := make([]*time.Time, n)
	var parents, children []string
	for i := range p.Steps {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	for i, st := range p.Steps {
		idx[i] = int32(i)
		names[i], handlers[i] = st.Name, st.Handler
		maxAttempts[i] = int32(st.MaxAttempts)
		timeouts[i] = st.Timeout.Microseconds()
		deps[i] = int32(len(st.Parents))
		if len(st.Parents) == 0 {
			runAts[i] = &now
		}
		for _, par := range st.Parents {
			parents = append(parents, ids[par])
			children = append(children, ids[i])
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO steps (id, task_id, idx, name, template_id, handler, state, max_attempts, retry_limit,
			timeout_us, deps_remaining, run_at, seq, created_at, updated_at)
		SELECT id, $2, i, n, $3, h, 'pending', m, m, t, d, r, 1, $4, $4
		FROM unnest($1::text[], $5::int[], $6::text[], $7::text[], $8::int[], $9::bigint[], $10::int[], $11::timestamptz[])
			AS u(id, i, n, h, m, t, d, r)`,
		ids, taskID, p.TemplateID, now, idx, names, handlers, maxAttempts, timeouts, deps, runAts); err != nil {
		return nil, fmt.Errorf("insert steps: %w", err)
	}
	if len(parents) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO step_edges (parent_id, child_id, task_id)
			SELECT p, c, $3 FROM unnest($1::text[], $2::text[]) AS u(p, c)`, parents, children, taskID); err != nil {
			return nil, fmt.Errorf("insert edges: %w", err)
		}
	}

	task := &store.Task{
		ID: taskID, TemplateID: p.TemplateID, Namespace: p.Namespace, Name: p.Name, Version: p.Version,
		State: lifecycle.TaskInProgress, Context: p.Context, IdentityKey: p.IdentityKey, IdempotencyKey: p.IdempotencyKey,
		StepsTotal: n, StepsOpen: roots, Seq: 2, CreatedAt: now, UpdatedAt: now, StartedAt: now,
	}
	t := &taskRow{Task: *task}
	evs, ready, err := store.CreationEvents(task, p.Steps, ids, p.Actor)
	if err != nil {
		return nil, err
	}
	for _, e := range evs {
		c.event(t, e)
	}
	c.ready = append(c.ready, ready)
	c.notify = true
	c.count = 1
	return &store.TaskCreateResult{Task: task, Created: true, Events: c.events, Ready: c.ready}, nil
}

// taskRow is a task locked inside a transaction, kept up to date in memory.
type taskRow struct {
	store.Task
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
}

type taskDelta struct{ done, open int }

func newChange(now time.Time) *change {
	return &change{now: now.UTC().Truncate(time.Microsecond), tasks: map[string]*taskRow{}, deltas: map[string]*taskDelta{}}
}

func (c *change) result() *store.ChangeResult {
	return &store.ChangeResult{Events: c.events, Ready: c.ready, Finalized: c.finalized, Count: c.count}
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
	rows, err := tx.Query(ctx, "SELECT "+taskColumns+" FROM tasks WHERE id = ANY($1) ORDER BY id FOR UPDATE", want)
	if err != nil {
		return fmt.Errorf("lock tasks: %w", err)
	}
	tasks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Task, error) { return scanTask(r) })
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

// transitionTask moves a locked task to state to and records it.
func (c *change) transitionTask(ctx context.Context, tx pgx.Tx, t *taskRow, to lifecycle.TaskState, meta store.Metadata) error {
	d, err := lifecycle.Task(t.State, to)
	if err != nil {
		return err
	}
	if d.NoOp {
		return nil
	}
	from := t.State
	started, finished := "started_at", "finished_at"
	switch {
	case to == lifecycle.TaskInProgress:
		started, finished = "COALESCE(started_at, $2)", "NULL"
	case to == lifecycle.TaskPending:
		finished = "NULL"
	case to.Finished():
		finished = "$2"
	}
	tag, err := tx.Exec(ctx, "UPDATE tasks SET state = $1, seq = seq + 1, updated_at = $2, started_at = "+started+
		", finished_at = "+finished+" WHERE id = $3 AND state = $4", string(to), c.now, t.ID, string(from))
	if err != nil {
		return fmt.Errorf("transition task %s: %w", t.ID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("transition task %s %s → %s: state changed concurrently: %w", t.ID, from, to, store.ErrConflict)
	}
	t.State = to
	t.Seq++
	c.event(t, &store.Event{Name: d.Event, Seq: t.Seq, From: string(from), To: string(to), Metadata: meta})
	return nil
}

// flush writes the counter deltas and finalizes tasks left with nothing open.
func (c *change) flush(ctx context.Context, tx pgx.Tx) error {
	for _, id := range c.order {
		t := c.tasks[id]
		if d := c.deltas[id]; d != nil && (d.done != 0 || d.open != 0) {
			if _, err := tx.Exec(ctx, "UPDATE tasks SET steps_done = steps_done + $1, steps_open = steps_open + $2, updated_at = $3 WHERE id = $4",
				d.done, d.open, c.now, id); err != nil {
				return fmt.Errorf("update task counters %s: %w", id, err)
			}
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

// finalize is the finalizer; the row lock and the SQL guard on the task's
// state make it happen once.
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
		rows, err := tx.Query(ctx, "SELECT name FROM steps WHERE task_id = $1 AND state IN ('error', 'cancelled') ORDER BY idx", t.ID)
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
	if err := c.transitionTask(ctx, tx, t, to, meta); err != nil {
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
			if err := c.applyStep(ctx, tx, t, st, stepChange{to: lifecycle.StepCancelled, meta: meta}); err != nil {
				return err
			}
		}
		if err := c.transitionTask(ctx, tx, t, lifecycle.TaskCancelled, meta); err != nil {
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
		if err := c.transitionTask(ctx, tx, t, lifecycle.TaskPending, meta); err != nil {
			return err
		}
		for _, st := range steps {
			if err := c.applyStep(ctx, tx, t, st, stepChange{to: lifecycle.StepPending, meta: meta, raiseLimit: true}); err != nil {
				return err
			}
		}
		if err := c.transitionTask(ctx, tx, t, lifecycle.TaskInProgress, meta); err != nil {
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
		if err := c.transitionTask(ctx, tx, t, lifecycle.TaskResolvedManually, store.Metadata{Reason: p.Reason, Actor: p.Actor}); err != nil {
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
