package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/store"
)

// maxRowsPerInsert keeps multi-row inserts well under SQLite's limit of
// bound variables.
const maxRowsPerInsert = 400

// appendEvents inserts log entries in order and sets their cursors.
func appendEvents(ctx context.Context, tx *sql.Tx, evs []*store.Event) error {
	var buf []byte // the metadata's JSON, reused from entry to entry
	for start := 0; start < len(evs); start += maxRowsPerInsert {
		chunk := evs[start:min(start+maxRowsPerInsert, len(evs))]
		// The arguments are plain values or nil, not sql.Null* wrappers,
		// and a chunk's entries, which mostly share their time, share its
		// boxed value: every argument boxed is an allocation, and a batch
		// carries three entries per step.
		args := make([]any, 0, batchRows(len(chunk))*9)
		var at int64
		var boxedAt any
		for _, e := range chunk {
			data, err := eventData(e, &buf)
			if err != nil {
				return err
			}
			var seq any
			if e.IsTransition() {
				seq = int64(e.Seq)
			}
			if t := us(e.OccurredAt); boxedAt == nil || t != at {
				at, boxedAt = t, t
			}
			args = append(args, e.TaskID, textOrNull(e.StepID), textOrNull(e.StepName), seq,
				textOrNull(e.From), textOrNull(e.To), string(e.Name), data, boxedAt)
		}
		// The rows are padded to batchRows with rows of NULLs, which the
		// WHERE leaves out (every entry has a task). The writer is SQLite's
		// only connection that writes, and AUTOINCREMENT never hands out a
		// cursor below one it gave before: one statement's rows get
		// consecutive cursors, in order, the last of which is the
		// statement's last inserted row id.
		rows, args := paddedValueRows(len(chunk), 9, args)
		r, err := tx.ExecContext(ctx, "INSERT INTO events (task_id, step_id, step_name, seq, from_state, to_state, name, data, occurred_at) "+
			"SELECT * FROM (VALUES "+rows+") WHERE column1 IS NOT NULL", args...)
		if err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		last, err := r.LastInsertId()
		if err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		if n, err := r.RowsAffected(); err != nil || n != int64(len(chunk)) {
			return fmt.Errorf("insert events: %d rows inserted for %d (%v)", n, len(chunk), err)
		}
		for i, e := range chunk {
			e.Cursor = last - int64(len(chunk)-1-i)
		}
	}
	return nil
}

// eventData is an entry's data column: a custom event's payload or a
// transition's metadata as JSON, or nil for none. The metadata is encoded
// into *buf, which it keeps for the next entry.
func eventData(e *store.Event, buf *[]byte) (any, error) {
	if !e.IsTransition() {
		if len(e.Payload) == 0 {
			return nil, nil
		}
		return string(e.Payload), nil
	}
	b, err := e.Metadata.AppendJSON((*buf)[:0])
	if err != nil {
		return nil, fmt.Errorf("encode transition metadata: %w", err)
	}
	*buf = b
	if string(b) == "{}" {
		return nil, nil
	}
	return string(b), nil
}

// textOrNull is s as a statement's argument, or nil (NULL) for "".
func textOrNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

const eventColumns = `e.cursor, e.task_id, e.step_id, e.step_name, e.seq, e.from_state, e.to_state, e.name, e.data, e.occurred_at,
	t.namespace, t.name, t.version`

func scanEvent(rows *sql.Rows) (*store.Event, error) {
	var (
		e                          store.Event
		stepID, stepName, from, to sql.NullString
		data                       sql.NullString
		seq                        sql.NullInt64
		name                       string
		occurred                   int64
	)
	if err := rows.Scan(&e.Cursor, &e.TaskID, &stepID, &stepName, &seq, &from, &to, &name, &data, &occurred,
		&e.Namespace, &e.TaskName, &e.Version); err != nil {
		return nil, err
	}
	e.StepID, e.StepName, e.From, e.To = stepID.String, stepName.String, from.String, to.String
	e.Seq = int(seq.Int64)
	e.Name = event.Name(name)
	e.OccurredAt = fromUS(occurred)
	if data.Valid {
		if e.IsTransition() {
			if err := json.Unmarshal([]byte(data.String), &e.Metadata); err != nil {
				return nil, fmt.Errorf("decode metadata of event %d: %w", e.Cursor, err)
			}
		} else {
			e.Payload = json.RawMessage(data.String)
		}
	}
	return &e, nil
}

// EventList reads the durable event log.
func (s *Store) EventList(ctx context.Context, p *store.EventListParams) ([]*store.Event, error) {
	q, args, err := eventListQuery(p)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []*store.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// eventListQuery builds the query of EventList with only the filters that
// are set: the task and step filters use events_task (a step's events are
// read among its task's), the global stream the primary key; the other filters are checked on the rows
// read in cursor order, in SQL, so the limit counts matching rows.
func eventListQuery(p *store.EventListParams) (string, []any, error) {
	exact, prefixes, err := store.NamePatterns(p.Names)
	if err != nil {
		return "", nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 1000
	}
	q := "SELECT " + eventColumns + " FROM events e JOIN tasks t ON t.id = e.task_id WHERE e.cursor > ?"
	args := []any{p.After}
	if p.TaskID != "" {
		q += " AND e.task_id = ?"
		args = append(args, p.TaskID)
	}
	if p.StepID != "" {
		// A step's events are found among its task's (events_task): an
		// index of their own would cost every log entry a third index entry.
		if p.TaskID == "" {
			q += " AND e.task_id = (SELECT task_id FROM steps WHERE id = ?)"
			args = append(args, p.StepID)
		}
		q += " AND e.step_id = ?"
		args = append(args, p.StepID)
	}
	if p.Namespace != "" {
		q += " AND t.namespace = ?"
		args = append(args, p.Namespace)
	}
	if p.TaskName != "" {
		q += " AND t.name = ?"
		args = append(args, p.TaskName)
	}
	if p.Version != "" {
		q += " AND t.version = ?"
		args = append(args, p.Version)
	}
	if len(exact)+len(prefixes) > 0 {
		var or []string
		if len(exact) > 0 {
			or = append(or, "e.name IN ("+placeholders(len(exact))+")")
			args = append(args, idArgs(exact)...)
		}
		// instr, unlike LIKE, is case-sensitive and has no wildcards.
		for _, pre := range prefixes {
			or = append(or, "instr(e.name, ?) = 1")
			args = append(args, pre)
		}
		q += " AND (" + strings.Join(or, " OR ") + ")"
	}
	if !p.Since.IsZero() {
		// A filter only: the unary plus keeps the planner on the cursor
		// order (callers start After at EventCursorAt(Since)).
		q += " AND +e.occurred_at >= ?"
		args = append(args, us(p.Since))
	}
	if p.TransitionsOnly {
		q += " AND e.to_state IS NOT NULL"
	}
	q += " ORDER BY e.cursor" + limitClause(limit)
	return q, args, nil
}

// cursorAtSQL is a binary search over the log's cursors for the first
// position p such that the first entry at or after p occurred at or after
// ?1, a position past the last entry counting as one that did (?1 is the
// time asked for less store.EventCursorSlack, which keeps the search exact
// when the log's times are out of order by less). Each probe is a seek in
// the primary key; cursors have gaps where retention deleted tasks. It
// returns p minus one: the cursor to read after. When the last entry is
// older than ?1 the search starts done: the log's head, which the webhooks
// ask for at every pass, costs a few seeks. The probe is written out
// for each column, as the recursive table cannot be read in a subquery.
const cursorAtSQL = `WITH RECURSIVE probe(lo, hi) AS (
		SELECT CASE WHEN IFNULL((SELECT occurred_at >= ?1 FROM events ORDER BY cursor DESC LIMIT 1), 0)
				THEN IFNULL((SELECT MIN(cursor) FROM events), 1) ELSE IFNULL((SELECT MAX(cursor) FROM events), 0) + 1 END,
			IFNULL((SELECT MAX(cursor) FROM events), 0) + 1
		UNION ALL
		SELECT CASE WHEN IFNULL((SELECT e.occurred_at >= ?1 FROM events e WHERE e.cursor >= (lo + hi) / 2 ORDER BY e.cursor LIMIT 1), 1)
				THEN lo ELSE (lo + hi) / 2 + 1 END,
			CASE WHEN IFNULL((SELECT e.occurred_at >= ?1 FROM events e WHERE e.cursor >= (lo + hi) / 2 ORDER BY e.cursor LIMIT 1), 1)
				THEN (lo + hi) / 2 ELSE hi END
		FROM probe WHERE lo < hi
	)
	SELECT lo - 1 FROM probe WHERE lo >= hi`

// EventCursorAt returns the cursor to read after for events from t on: at
// most store.EventCursorSlack's worth of entries before the first of them.
func (s *Store) EventCursorAt(ctx context.Context, t time.Time) (int64, error) {
	var c int64
	if err := s.rdb.QueryRowContext(ctx, cursorAtSQL, us(t.Add(-store.EventCursorSlack))).Scan(&c); err != nil {
		return 0, fmt.Errorf("event cursor at %s: %w", t, err)
	}
	return c, nil
}
