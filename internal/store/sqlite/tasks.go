package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

// taskColumns are the columns of scanTask, read from tasks; the context
// comes from task_contexts.
const taskColumns = `id, template_id, namespace, name, version, state,
	(SELECT context FROM task_contexts WHERE task_id = tasks.id), identity_key, idempotency_key,
	steps_total, steps_done, steps_open, seq, created_at, updated_at, started_at, finished_at`

// writeTaskColumns are taskColumns with an empty context, for the tasks a
// write reads: no change needs the context (a claim reads it separately,
// claimContexts), which is stored apart so that a task's transitions do not
// write it again (migration 00008).
const writeTaskColumns = `id, template_id, namespace, name, version, state, '', identity_key, idempotency_key,
	steps_total, steps_done, steps_open, seq, created_at, updated_at, started_at, finished_at`

// taskRow is a task loaded inside a write transaction, kept up to date in
// memory as the transaction changes it. Its Context is empty
// (writeTaskColumns).
type taskRow struct {
	store.Task
	seq int
}

func scanTask(sc interface{ Scan(...any) error }) (*taskRow, error) {
	var r taskScanner
	return r.scan(sc)
}

// taskScanner scans task rows, reusing its holders of the columns that
// need converting and its list of destinations from row to row (see
// stepScanner).
type taskScanner struct {
	dest              []any
	state, context    string
	identity, idem    sql.NullString
	created, updated  int64
	started, finished sql.NullInt64
}

func (r *taskScanner) scan(sc interface{ Scan(...any) error }) (*taskRow, error) {
	t := &taskRow{}
	r.dest = append(r.dest[:0], &t.ID, &t.TemplateID, &t.Namespace, &t.Name, &t.Version, &r.state, &r.context, &r.identity,
		&r.idem, &t.StepsTotal, &t.StepsDone, &t.StepsOpen, &t.seq, &r.created, &r.updated, &r.started, &r.finished)
	if err := sc.Scan(r.dest...); err != nil {
		return nil, err
	}
	t.State = lifecycle.TaskState(r.state)
	t.Context = []byte(r.context)
	t.IdentityKey, t.IdempotencyKey = r.identity.String, r.idem.String
	t.CreatedAt, t.UpdatedAt = fromUS(r.created), fromUS(r.updated)
	t.StartedAt, t.FinishedAt = fromNullUS(r.started), fromNullUS(r.finished)
	t.Seq = t.seq
	return t, nil
}

func loadTask(ctx context.Context, q queryer, columns, id string) (*taskRow, error) {
	t, err := scanTask(q.QueryRowContext(ctx, "SELECT "+columns+" FROM tasks WHERE id = ?", id))
	if err != nil {
		return nil, notFound(err, "task "+id)
	}
	return t, nil
}

// TaskGet returns one task.
func (s *Store) TaskGet(ctx context.Context, id string) (*store.Task, error) {
	t, err := loadTask(ctx, s.rdb, taskColumns, id)
	if err != nil {
		return nil, err
	}
	return &t.Task, nil
}

// TaskList lists tasks, newest first.
func (s *Store) TaskList(ctx context.Context, p *store.TaskListParams) ([]*store.Task, error) {
	q, args := taskListQuery(p)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	defer rows.Close()
	var out []*store.Task
	var sc taskScanner
	for rows.Next() {
		t, err := sc.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list tasks: %w", err)
		}
		out = append(out, &t.Task)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return out, nil
}

// taskListQuery builds the query of TaskList with only the filters that
// are set. Every listing index ends with (created_at DESC, id DESC), so the
// order and the cursor are served by one range scan: tasks_state_created,
// tasks_name_created, tasks_namespace_created or tasks_created.
func taskListQuery(p *store.TaskListParams) (string, []any) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, vals ...any) {
		where = append(where, cond)
		args = append(args, vals...)
	}
	if p.State != "" {
		add("state = ?", string(p.State))
	}
	if p.Namespace != "" {
		add("namespace = ?", p.Namespace)
	}
	if p.Name != "" {
		add("name = ?", p.Name)
	}
	if p.Version != "" {
		add("version = ?", p.Version)
	}
	if !p.CreatedAfter.IsZero() {
		add("created_at >= ?", us(p.CreatedAfter))
	}
	if !p.CreatedBefore.IsZero() {
		add("created_at < ?", us(p.CreatedBefore))
	}
	if !p.FinishedAfter.IsZero() {
		add("finished_at >= ?", us(p.FinishedAfter))
	}
	if p.Search != "" {
		// SQLite's LIKE ignores the case of ASCII letters only.
		pat := "%" + store.EscapeLike(p.Search) + "%"
		add(`(id LIKE ? ESCAPE '\' OR namespace LIKE ? ESCAPE '\' OR name LIKE ? ESCAPE '\'
			OR idempotency_key LIKE ? ESCAPE '\')`, pat, pat, pat, pat)
	}
	if p.After != nil {
		add("(created_at, id) < (?, ?)", us(p.After.CreatedAt), p.After.ID)
	}
	q := "SELECT " + taskColumns + " FROM tasks"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return q + " ORDER BY created_at DESC, id DESC" + limitClause(limit), args
}

// TaskCreate creates and starts a task in one transaction.
func (s *Store) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	if err := store.ValidateTaskCreate(p); err != nil {
		return nil, err
	}
	var res *store.TaskCreateResult
	err := s.writeChange(ctx, func(ctx context.Context, tx *sql.Tx) (*store.ChangeResult, error) {
		res = nil
		if p.IdentityKey != "" {
			existing, err := scanTask(tx.QueryRowContext(ctx, "SELECT "+taskColumns+" FROM tasks WHERE identity_key = ?", p.IdentityKey))
			switch {
			case err == nil:
				res = &store.TaskCreateResult{Task: &existing.Task}
				return nil, nil
			case !errors.Is(err, sql.ErrNoRows):
				return nil, err
			}
		}
		r, err := createTask(ctx, tx, p)
		if err != nil {
			return nil, err
		}
		res = r
		return &store.ChangeResult{Events: r.Events, Ready: r.Ready, Count: 1, ClaimedReady: len(r.Claimed)}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("create task %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	return res, nil
}

func createTask(ctx context.Context, tx *sql.Tx, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	now := p.Now.UTC()
	taskID := uuid.Must(uuid.NewV7()).String()
	stepIDs := make([]string, len(p.Steps))
	roots := 0
	for i, st := range p.Steps {
		stepIDs[i] = uuid.Must(uuid.NewV7()).String()
		if len(st.Parents) == 0 {
			roots++
		}
	}
	// With RequireCurrent the task is inserted only while its template is
	// current (the primary key of templates finds it).
	r, err := tx.ExecContext(ctx, `INSERT INTO tasks (id, template_id, namespace, name, version, state,
		identity_key, idempotency_key, steps_total, steps_done, steps_open, seq, created_at, updated_at, started_at)
		SELECT ?, ?, ?, ?, ?, 'in_progress', ?, ?, ?, 0, ?, 2, ?, ?, ?
		WHERE NOT ? OR EXISTS (SELECT 1 FROM templates WHERE id = ? AND current = 1)`,
		taskID, p.TemplateID, p.Namespace, p.Name, p.Version, nullString(p.IdentityKey),
		nullString(p.IdempotencyKey), len(p.Steps), roots, us(now), us(now), us(now), p.RequireCurrent, p.TemplateID)
	if err != nil {
		return nil, fmt.Errorf("insert task: %w", err)
	}
	if n, err := r.RowsAffected(); err != nil {
		return nil, fmt.Errorf("insert task: %w", err)
	} else if n == 0 {
		return nil, fmt.Errorf("template %s is no longer current: %w", p.TemplateID, store.ErrTemplateReplaced)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO task_contexts (task_id, context) VALUES (?, ?)", taskID, string(p.Context)); err != nil {
		return nil, fmt.Errorf("insert task context: %w", err)
	}
	task := &store.Task{
		ID: taskID, TemplateID: p.TemplateID, Namespace: p.Namespace, Name: p.Name, Version: p.Version,
		State: lifecycle.TaskInProgress, Context: p.Context, IdentityKey: p.IdentityKey, IdempotencyKey: p.IdempotencyKey,
		StepsTotal: len(p.Steps), StepsOpen: roots, Seq: 2, CreatedAt: now, UpdatedAt: now, StartedAt: now,
	}
	claim, err := store.ClaimAtCreation(task, p, stepIDs)
	if err != nil {
		return nil, err
	}
	const stepCols = 18
	for start := 0; start < len(p.Steps); start += maxRowsPerInsert {
		end := min(start+maxRowsPerInsert, len(p.Steps))
		var b strings.Builder
		b.WriteString(`INSERT INTO steps (id, task_id, idx, name, template_id, handler, state, attempts, max_attempts, retry_limit,
			timeout_us, deps_remaining, run_at, seq, created_at, updated_at, lease_owner, lease_token, lease_expires_at,
			started_at) VALUES `)
		args := make([]any, 0, (end-start)*stepCols)
		for i := start; i < end; i++ {
			st := p.Steps[i]
			if i > start {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
			// A step claimed at creation is stored running, under the
			// claim's lease.
			state, attempts, seq := "pending", 0, 1
			var runAt, token, expires, started sql.NullInt64
			var owner sql.NullString
			switch {
			case claim.Claimed(i):
				state, attempts, seq = string(lifecycle.StepInProgress), 1, 2
				owner = sql.NullString{String: p.Claim.Worker, Valid: true}
				token = sql.NullInt64{Int64: p.Claim.LeaseToken, Valid: true}
				expires = sql.NullInt64{Int64: us(claim.Expires), Valid: true}
				started = sql.NullInt64{Int64: us(now), Valid: true}
			case len(st.Parents) == 0:
				runAt = sql.NullInt64{Int64: us(now), Valid: true}
			}
			args = append(args, stepIDs[i], taskID, i, st.Name, p.TemplateID, st.Handler, state, attempts, st.MaxAttempts,
				st.MaxAttempts, st.Timeout.Microseconds(), len(st.Parents), runAt, seq, us(now), us(now), owner, token,
				expires, started)
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return nil, fmt.Errorf("insert steps: %w", err)
		}
	}
	type edge struct{ parent, child string }
	var edges []edge
	for i, st := range p.Steps {
		for _, par := range st.Parents {
			edges = append(edges, edge{stepIDs[par], stepIDs[i]})
		}
	}
	for start := 0; start < len(edges); start += maxRowsPerInsert {
		chunk := edges[start:min(start+maxRowsPerInsert, len(edges))]
		args := make([]any, 0, len(chunk)*3)
		for _, e := range chunk {
			args = append(args, e.parent, e.child, taskID)
		}
		q := "INSERT INTO step_edges (parent_id, child_id, task_id) VALUES " +
			valueRows(len(chunk), 3)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return nil, fmt.Errorf("insert edges: %w", err)
		}
	}

	events, ready, err := store.CreationEvents(task, p.Steps, stepIDs, p.Actor)
	if err != nil {
		return nil, err
	}
	events = append(events, claim.Events...)
	if err := appendEvents(ctx, tx, events); err != nil {
		return nil, err
	}
	return &store.TaskCreateResult{Task: task, Created: true, Events: events, Ready: []store.Ready{ready},
		Claimed: claim.Steps}, nil
}

// change collects what one write operation did, for its result.
type change struct {
	now       time.Time
	tasks     map[string]*taskRow
	order     []string // task ids in first-touch order
	deltas    map[string]*taskDelta
	events    []*store.Event
	ready     []store.Ready
	finalized []store.Finalized
	count     int
	// operator is the reason and actor of an operator's change, recorded on
	// the finalizer's transitions too.
	operator store.Metadata
	// preloaded are tasks read ahead by preloadTasks, not touched yet.
	preloaded map[string]*taskRow
	// batchCompletions marks a change of StepCompleteMany: settle writes
	// the tasks it completes in one statement.
	batchCompletions bool
}

type taskDelta struct{ done, open int }

func newChange(now time.Time) *change {
	return &change{now: now.UTC(), tasks: map[string]*taskRow{}, deltas: map[string]*taskDelta{}}
}

func (c *change) task(ctx context.Context, tx *sql.Tx, id string) (*taskRow, error) {
	if t, ok := c.tasks[id]; ok {
		return t, nil
	}
	t, ok := c.preloaded[id]
	if ok {
		delete(c.preloaded, id)
	} else {
		var err error
		if t, err = loadTask(ctx, tx, writeTaskColumns, id); err != nil {
			return nil, err
		}
	}
	c.tasks[id] = t
	c.order = append(c.order, id)
	return t, nil
}

// preloadTasks reads, in one statement, the tasks among ids that this
// change has not read yet, for c.task to take in first-touch order: a
// batch of outcomes or claims touching N tasks costs one read, not N.
func (c *change) preloadTasks(ctx context.Context, tx *sql.Tx, ids []string) error {
	var want []string
	seen := map[string]bool{}
	for _, id := range ids {
		if _, ok := c.tasks[id]; !ok && c.preloaded[id] == nil && !seen[id] {
			seen[id] = true
			want = append(want, id)
		}
	}
	if len(want) < 2 {
		return nil // c.task reads a single task as well
	}
	if c.preloaded == nil {
		c.preloaded = map[string]*taskRow{}
	}
	for _, chunk := range idChunks(want) {
		if err := c.readTasks(ctx, tx, chunk); err != nil {
			return err
		}
	}
	return nil
}

// readTasks reads up to maxIDsPerStatement tasks into c.preloaded.
func (c *change) readTasks(ctx context.Context, tx *sql.Tx, ids []string) error {
	in, inArgs := inList(ids)
	rows, err := tx.QueryContext(ctx, "SELECT "+writeTaskColumns+" FROM tasks WHERE id IN ("+in+")", inArgs...)
	if err != nil {
		return fmt.Errorf("load tasks: %w", err)
	}
	defer rows.Close()
	var sc taskScanner
	for rows.Next() {
		t, err := sc.scan(rows)
		if err != nil {
			return fmt.Errorf("load tasks: %w", err)
		}
		c.preloaded[t.ID] = t
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load tasks: %w", err)
	}
	return nil
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

// transitionTask moves a task to state to, guarded in SQL, and records it.
func (c *change) transitionTask(ctx context.Context, tx *sql.Tx, t *taskRow, to lifecycle.TaskState, meta store.Metadata) error {
	d, err := lifecycle.Task(t.State, to)
	if err != nil {
		return err
	}
	if d.NoOp {
		return nil
	}
	from := t.State
	set := "state = ?, seq = seq + 1, updated_at = ?"
	args := []any{string(to), us(c.now)}
	switch {
	case to == lifecycle.TaskInProgress:
		set += ", started_at = COALESCE(started_at, ?), finished_at = NULL"
		args = append(args, us(c.now))
	case to == lifecycle.TaskPending:
		set += ", finished_at = NULL"
	case to.Finished():
		set += ", finished_at = ?"
		args = append(args, us(c.now))
	}
	args = append(args, t.ID, string(from))
	r, err := tx.ExecContext(ctx, "UPDATE tasks SET "+set+" WHERE id = ? AND state = ?", args...)
	if err != nil {
		return fmt.Errorf("transition task %s: %w", t.ID, err)
	}
	if n, _ := r.RowsAffected(); n != 1 {
		return fmt.Errorf("transition task %s %s → %s: state changed concurrently: %w", t.ID, from, to, store.ErrConflict)
	}
	t.State = to
	t.seq++
	t.Seq = t.seq
	c.event(t, &store.Event{Name: d.Event, Seq: t.seq, From: string(from), To: string(to), Metadata: meta})
	return nil
}

// flush writes the counter deltas, finalizes tasks left with nothing open,
// and appends the collected events.
func (c *change) flush(ctx context.Context, tx *sql.Tx) error {
	if err := c.settle(ctx, tx); err != nil {
		return err
	}
	return appendEvents(ctx, tx, c.events)
}

// settle writes the counter deltas and finalizes tasks left with nothing
// open; flush also appends the events.
func (c *change) settle(ctx context.Context, tx *sql.Tx) error {
	var completed []taskCompletion
	for _, id := range c.order {
		t := c.tasks[id]
		if c.batchCompletions {
			if tc, ok, err := c.completeTask(t, c.deltas[id]); err != nil {
				return err
			} else if ok {
				completed = append(completed, tc)
				continue
			}
		}
		if d := c.deltas[id]; d != nil && (d.done != 0 || d.open != 0) {
			if _, err := tx.ExecContext(ctx,
				"UPDATE tasks SET steps_done = steps_done + ?, steps_open = steps_open + ?, updated_at = ? WHERE id = ?",
				d.done, d.open, us(c.now), id); err != nil {
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
	return writeTaskCompletions(ctx, tx, c.now, completed)
}

// taskCompletion is a task that its counter deltas complete, written with
// the others of its batch.
type taskCompletion struct {
	id          string
	done, opens int
}

// completeTask records, without writing it, the completion of an
// in-progress task whose deltas leave every step done: its counters and
// its transition then go in one row version (writeTaskCompletions).
// It reports false, changing nothing, for any other task.
func (c *change) completeTask(t *taskRow, d *taskDelta) (taskCompletion, bool, error) {
	if t.State != lifecycle.TaskInProgress {
		return taskCompletion{}, false, nil
	}
	var done, opens int
	if d != nil {
		done, opens = d.done, d.open
	}
	to, final := lifecycle.Finalize(t.StepsTotal, t.StepsDone+done, t.StepsOpen+opens)
	if !final || to != lifecycle.TaskComplete {
		return taskCompletion{}, false, nil
	}
	tr, err := lifecycle.Task(t.State, to)
	if err != nil {
		return taskCompletion{}, false, err
	}
	if d != nil {
		d.done, d.open = 0, 0
	}
	t.StepsDone += done
	t.StepsOpen += opens
	from := t.State
	t.State = to
	t.seq++
	t.Seq = t.seq
	c.event(t, &store.Event{Name: tr.Event, Seq: t.seq, From: string(from), To: string(to),
		Metadata: store.Metadata{Reason: c.operator.Reason, Actor: c.operator.Actor}})
	c.finalized = append(c.finalized, store.Finalized{TaskID: t.ID, State: to, StepsDone: t.StepsDone, StepsTotal: t.StepsTotal})
	return taskCompletion{id: t.ID, done: done, opens: opens}, true, nil
}

// writeTaskCompletions writes the completions completeTask recorded, in
// one statement per chunk, guarded by the tasks' state.
func writeTaskCompletions(ctx context.Context, tx *sql.Tx, now time.Time, completed []taskCompletion) error {
	for start := 0; start < len(completed); start += maxRowsPerInsert {
		chunk := completed[start:min(start+maxRowsPerInsert, len(completed))]
		args := []any{us(now), us(now)}
		for _, tc := range chunk {
			args = append(args, tc.id, tc.done, tc.opens)
		}
		rows, args := paddedValueRows(len(chunk), 3, args)
		r, err := tx.ExecContext(ctx, `UPDATE tasks SET state = 'complete', seq = seq + 1, updated_at = ?, finished_at = ?,
			steps_done = steps_done + v.column2, steps_open = steps_open + v.column3
			FROM (VALUES `+rows+`) AS v
			WHERE tasks.id = v.column1 AND tasks.state = 'in_progress'`, args...)
		if err != nil {
			return fmt.Errorf("complete tasks: %w", err)
		}
		if n, _ := r.RowsAffected(); int(n) != len(chunk) {
			return fmt.Errorf("complete tasks: %d of %d changed state concurrently: %w", len(chunk)-int(n), len(chunk), store.ErrConflict)
		}
	}
	return nil
}

// finalize is the finalizer: it moves an in-progress task with nothing open
// to complete or error. The SQL guard on the task's state makes it happen once.
func (c *change) finalize(ctx context.Context, tx *sql.Tx, t *taskRow) error {
	if t.State != lifecycle.TaskInProgress {
		return nil
	}
	to, final := lifecycle.Finalize(t.StepsTotal, t.StepsDone, t.StepsOpen)
	if !final {
		return nil
	}
	var meta store.Metadata
	if to == lifecycle.TaskError {
		failed, err := failedSteps(ctx, tx, t.ID)
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

func failedSteps(ctx context.Context, tx *sql.Tx, taskID string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, "SELECT name FROM steps WHERE task_id = ? AND state IN ('error', 'cancelled') ORDER BY idx", taskID)
	if err != nil {
		return nil, fmt.Errorf("failed steps of %s: %w", taskID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func (c *change) result() *store.ChangeResult {
	return &store.ChangeResult{Events: c.events, Ready: c.ready, Finalized: c.finalized, Count: c.count}
}

// TaskCancel cancels a task and its unfinished steps.
func (s *Store) TaskCancel(ctx context.Context, p *store.TaskCancelParams) (*store.ChangeResult, error) {
	var res *store.ChangeResult
	err := s.writeChange(ctx, func(ctx context.Context, tx *sql.Tx) (*store.ChangeResult, error) {
		c := newChange(p.Now)
		t, err := c.task(ctx, tx, p.TaskID)
		if err != nil {
			return nil, err
		}
		d, err := lifecycle.Task(t.State, lifecycle.TaskCancelled)
		if err != nil {
			return nil, err
		}
		if d.NoOp {
			res = c.result()
			return nil, nil
		}
		steps, err := loadSteps(ctx, tx, "task_id = ? AND state IN ('pending', 'in_progress', 'waiting_for_retry', 'error')", p.TaskID)
		if err != nil {
			return nil, err
		}
		meta := store.Metadata{Reason: p.Reason, Actor: p.Actor}
		c.operator = meta
		for _, st := range steps {
			if err := c.transitionStep(ctx, tx, t, st, lifecycle.StepCancelled, meta, ""); err != nil {
				return nil, err
			}
		}
		if err := c.transitionTask(ctx, tx, t, lifecycle.TaskCancelled, meta); err != nil {
			return nil, err
		}
		c.count = 1
		if err := c.flush(ctx, tx); err != nil {
			return nil, err
		}
		res = c.result()
		return res, nil
	})
	if err != nil {
		return nil, fmt.Errorf("cancel task %s: %w", p.TaskID, err)
	}
	return res, nil
}

// TaskRetry resets the failed steps of a task in error and resumes it.
func (s *Store) TaskRetry(ctx context.Context, p *store.TaskRetryParams) (*store.ChangeResult, error) {
	var res *store.ChangeResult
	err := s.writeChange(ctx, func(ctx context.Context, tx *sql.Tx) (*store.ChangeResult, error) {
		c := newChange(p.Now)
		t, err := c.task(ctx, tx, p.TaskID)
		if err != nil {
			return nil, err
		}
		if t.State != lifecycle.TaskError {
			// Only error → pending is allowed; pending → pending is a no-op
			// that would retry nothing, so it is a conflict too.
			if _, err := lifecycle.Task(t.State, lifecycle.TaskPending); err != nil {
				return nil, fmt.Errorf("task is %s: %w", t.State, err)
			}
			return nil, fmt.Errorf("task is %s, not error: %w", t.State, store.ErrConflict)
		}
		steps, err := loadSteps(ctx, tx, "task_id = ? AND state = 'error'", p.TaskID)
		if err != nil {
			return nil, err
		}
		if len(steps) == 0 {
			return nil, fmt.Errorf("task has no failed step to retry: %w", store.ErrConflict)
		}
		meta := store.Metadata{Reason: p.Reason, Actor: p.Actor}
		c.operator = meta
		if err := c.transitionTask(ctx, tx, t, lifecycle.TaskPending, meta); err != nil {
			return nil, err
		}
		for _, st := range steps {
			if err := c.transitionStep(ctx, tx, t, st, lifecycle.StepPending, meta, ""); err != nil {
				return nil, err
			}
		}
		if err := c.transitionTask(ctx, tx, t, lifecycle.TaskInProgress, meta); err != nil {
			return nil, err
		}
		c.count = len(steps)
		if err := c.flush(ctx, tx); err != nil {
			return nil, err
		}
		res = c.result()
		return res, nil
	})
	if err != nil {
		return nil, fmt.Errorf("retry task %s: %w", p.TaskID, err)
	}
	return res, nil
}

// TaskResolve closes a task in error by hand.
func (s *Store) TaskResolve(ctx context.Context, p *store.TaskRetryParams) (*store.ChangeResult, error) {
	var res *store.ChangeResult
	err := s.writeChange(ctx, func(ctx context.Context, tx *sql.Tx) (*store.ChangeResult, error) {
		c := newChange(p.Now)
		t, err := c.task(ctx, tx, p.TaskID)
		if err != nil {
			return nil, err
		}
		d, err := lifecycle.Task(t.State, lifecycle.TaskResolvedManually)
		if err != nil {
			return nil, fmt.Errorf("task is %s: %w", t.State, err)
		}
		if d.NoOp {
			res = c.result()
			return nil, nil
		}
		if err := c.transitionTask(ctx, tx, t, lifecycle.TaskResolvedManually, store.Metadata{Reason: p.Reason, Actor: p.Actor}); err != nil {
			return nil, err
		}
		c.count = 1
		if err := c.flush(ctx, tx); err != nil {
			return nil, err
		}
		res = c.result()
		return res, nil
	})
	if err != nil {
		return nil, fmt.Errorf("resolve task %s: %w", p.TaskID, err)
	}
	return res, nil
}
