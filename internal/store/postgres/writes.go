package postgres

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/internal/store"
)

// A change queues its guarded writes and sends them together: the
// transitions of steps and of tasks become one statement per kind (rows of
// arrays), so that a batch of outcomes costs a few statements, not a few
// per step. Every write is guarded by the state it leaves (and, for a
// running step, by its lease); a row that does not match is a conflict.

// queuedWrite is one statement waiting to be sent: a group of step
// transitions or a group of task transitions.
type queuedWrite struct {
	steps *stepWrites
	tasks *taskWrites
}

// Retry limit changes a step transition can make.
const (
	limitKeep   = 0
	limitRaise  = 1 // a fresh budget: attempts + max_attempts
	limitRefund = 2 // an interrupted attempt is not charged
)

// stepWrite is one step transition.
type stepWrite struct {
	id, from, to      string
	runAt, finishedAt *time.Time
	// leased: the step leaves in_progress; the write is fenced by the
	// lease token and attempt, and clears the lease.
	leased           bool
	token            int64
	attempt          int32
	results          *string
	setError         bool
	errMsg, errClass *string
	limit            int32
}

// stepWrites are step transitions sent as one statement.
type stepWrites struct {
	seen                map[string]bool
	ids, froms, tos     []string
	runAts, finished    []*time.Time
	leased              []bool
	tokens              []int64
	attempts            []int32
	setResults          []bool
	results             []*string
	setErrors           []bool
	errMsgs, errClasses []*string
	limits              []int32
}

func (w *stepWrites) add(s stepWrite) {
	w.seen[s.id] = true
	w.ids, w.froms, w.tos = append(w.ids, s.id), append(w.froms, s.from), append(w.tos, s.to)
	w.runAts, w.finished = append(w.runAts, s.runAt), append(w.finished, s.finishedAt)
	w.leased, w.tokens, w.attempts = append(w.leased, s.leased), append(w.tokens, s.token), append(w.attempts, s.attempt)
	w.setResults, w.results = append(w.setResults, s.results != nil), append(w.results, s.results)
	w.setErrors, w.errMsgs, w.errClasses = append(w.setErrors, s.setError), append(w.errMsgs, s.errMsg), append(w.errClasses, s.errClass)
	w.limits = append(w.limits, s.limit)
}

// stepWritesSQL applies step transitions given as arrays.
const stepWritesSQL = `UPDATE steps s SET state = u.to_state, seq = s.seq + 1, updated_at = $1,
		run_at = u.run_at, finished_at = u.finished_at,
		lease_owner = CASE WHEN u.leased THEN NULL ELSE s.lease_owner END,
		lease_token = CASE WHEN u.leased THEN NULL ELSE s.lease_token END,
		lease_expires_at = CASE WHEN u.leased THEN NULL ELSE s.lease_expires_at END,
		results = CASE WHEN u.set_results THEN u.results::json ELSE s.results END,
		last_error = CASE WHEN u.set_error THEN u.err ELSE s.last_error END,
		error_class = CASE WHEN u.set_error THEN u.err_class ELSE s.error_class END,
		retry_limit = CASE u.lim WHEN 1 THEN s.attempts + s.max_attempts WHEN 2 THEN s.retry_limit + 1 ELSE s.retry_limit END
	FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::bool[], $8::bigint[], $9::int[],
		$10::bool[], $11::text[], $12::bool[], $13::text[], $14::text[], $15::int[])
		AS u(id, from_state, to_state, run_at, finished_at, leased, token, attempt, set_results, results, set_error, err, err_class, lim)
	WHERE s.id = u.id AND s.state = u.from_state
	  AND (NOT u.leased OR (s.lease_token = u.token AND s.attempts = u.attempt))`

// taskWrite is one task transition.
type taskWrite struct {
	id, from, to string
	// started: set started_at if unset; finished: 0 keeps finished_at, 1
	// clears it, 2 sets it to now.
	started  bool
	finished int32
}

// taskWrites are task transitions sent as one statement, with the
// counter deltas folded into them.
type taskWrites struct {
	seen            map[string]bool
	ids, froms, tos []string
	started         []bool
	finished        []int32
	done, open      []int32
}

func (w *taskWrites) add(t taskWrite) {
	w.seen[t.id] = true
	w.ids, w.froms, w.tos = append(w.ids, t.id), append(w.froms, t.from), append(w.tos, t.to)
	w.started, w.finished = append(w.started, t.started), append(w.finished, t.finished)
	w.done, w.open = append(w.done, 0), append(w.open, 0)
}

// taskWritesSQL applies task transitions given as arrays.
const taskWritesSQL = `UPDATE tasks t SET state = u.to_state, seq = t.seq + 1, updated_at = $1,
		started_at = CASE WHEN u.started THEN COALESCE(t.started_at, $1) ELSE t.started_at END,
		finished_at = CASE u.finished WHEN 1 THEN NULL WHEN 2 THEN $1 ELSE t.finished_at END,
		steps_done = t.steps_done + u.done, steps_open = t.steps_open + u.open
	FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[], $6::int[], $7::int[], $8::int[])
		AS u(id, from_state, to_state, started, finished, done, open)
	WHERE t.id = u.id AND t.state = u.from_state`

// writeStep queues a step transition. A step already in the last group
// starts a new group, so that one statement never names a row twice.
func (c *change) writeStep(w stepWrite) {
	if n := len(c.writes); n > 0 && c.writes[n-1].steps != nil && !c.writes[n-1].steps.seen[w.id] {
		c.writes[n-1].steps.add(w)
		return
	}
	g := &stepWrites{seen: map[string]bool{}}
	g.add(w)
	c.writes = append(c.writes, queuedWrite{steps: g})
}

// writeTask queues a task transition, like writeStep.
func (c *change) writeTask(w taskWrite) {
	if n := len(c.writes); n > 0 && c.writes[n-1].tasks != nil && !c.writes[n-1].tasks.seen[w.id] {
		c.writes[n-1].tasks.add(w)
		return
	}
	g := &taskWrites{seen: map[string]bool{}}
	g.add(w)
	c.writes = append(c.writes, queuedWrite{tasks: g})
}

// queueWrites adds the queued writes to b, in order, and empties the queue.
func (c *change) queueWrites(b *pgx.Batch) {
	for _, w := range c.writes {
		var (
			sql  string
			args []any
			want int
			what string
		)
		switch {
		case w.steps != nil:
			g := w.steps
			sql, want, what = stepWritesSQL, len(g.ids), "transition steps"
			args = []any{c.now, texts(g.ids), texts(g.froms), texts(g.tos), timePtrs(g.runAts), timePtrs(g.finished), g.leased,
				int8s(g.tokens), g.attempts, g.setResults, textPtrs(g.results), g.setErrors, textPtrs(g.errMsgs),
				textPtrs(g.errClasses), g.limits}
			if want == 1 {
				what = fmt.Sprintf("transition step %s %s → %s", g.ids[0], g.froms[0], g.tos[0])
			}
		default:
			g := w.tasks
			sql, want, what = taskWritesSQL, len(g.ids), "transition tasks"
			args = []any{c.now, texts(g.ids), texts(g.froms), texts(g.tos), g.started, g.finished, g.done, g.open}
			if want == 1 {
				what = fmt.Sprintf("transition task %s %s → %s", g.ids[0], g.froms[0], g.tos[0])
			}
		}
		queueGuarded(b, sql, args, want, what+": a row was not in the expected state; state changed concurrently")
	}
	c.writes = nil
}

// queueGuarded adds a write to b that must change want rows; the server
// checks it (tasker_guard), so that a mismatch aborts the transaction even
// when its COMMIT is in the same batch.
func queueGuarded(b *pgx.Batch, sql string, args []any, want int, what string) {
	b.Queue(guardedSQL(sql, len(args)), append(args, want, what)...)
}

// guardedSQL is the statement queueGuarded sends for a write of nargs
// arguments.
func guardedSQL(sql string, nargs int) string {
	return fmt.Sprintf("WITH w AS (%s RETURNING 1) SELECT tasker_guard(count(*) = $%d, $%d) FROM w", sql, nargs+1, nargs+2)
}

// guardConflict turns the error of a failed guard into store.ErrConflict.
func guardConflict(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == guardSQLState {
		return fmt.Errorf("%s: %w", pe.Message, store.ErrConflict)
	}
	return err
}

// guardSQLState is the SQLSTATE tasker_guard raises.
const guardSQLState = "TK409"
