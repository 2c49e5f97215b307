package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/store"
)

// queueEvents adds to b the statement that inserts log entries and sets
// their cursors. It runs under the log's advisory lock, queued before it.
func queueEvents(b *pgx.Batch, evs []*store.Event) error {
	n := len(evs)
	var (
		taskIDs   = make(pgArray[pgtype.Text], n)
		stepIDs   = make(pgArray[pgtype.Text], n)
		stepNames = make(pgArray[pgtype.Text], n)
		seqs      = make(pgArray[pgtype.Int4], n)
		froms     = make(pgArray[pgtype.Text], n)
		tos       = make(pgArray[pgtype.Text], n)
		names     = make(pgArray[pgtype.Text], n)
		datas     = make(pgArray[pgtype.Text], n)
		ats       = make(pgArray[pgtype.Timestamptz], n)
	)
	for i, e := range evs {
		taskIDs[i] = text(e.TaskID)
		stepIDs[i], stepNames[i] = nullText(e.StepID), nullText(e.StepName)
		if e.IsTransition() {
			seqs[i] = pgtype.Int4{Int32: int32(e.Seq), Valid: true}
		}
		froms[i], tos[i] = nullText(e.From), nullText(e.To)
		names[i] = text(string(e.Name))
		var err error
		if datas[i], err = eventData(e); err != nil {
			return err
		}
		ats[i] = timestamptz(e.OccurredAt.UTC())
	}
	b.Queue(insertEventsSQL, taskIDs, stepIDs, stepNames, seqs, froms, tos, names, datas, ats).Query(func(rows pgx.Rows) error {
		// One holder for every row: a holder per row (pgx.RowTo) is an
		// allocation per log entry.
		cursors := make([]int64, 0, n)
		var cursor int64
		for rows.Next() {
			if err := rows.Scan(&cursor); err != nil {
				return fmt.Errorf("insert events: %w", err)
			}
			cursors = append(cursors, cursor)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		if len(cursors) != n {
			return fmt.Errorf("insert events: %d cursors for %d rows", len(cursors), n)
		}
		slices.Sort(cursors)
		for i, e := range evs {
			e.Cursor = cursors[i]
		}
		return nil
	})
	return nil
}

func eventData(e *store.Event) (pgtype.Text, error) {
	if !e.IsTransition() {
		if len(e.Payload) == 0 {
			return pgtype.Text{}, nil
		}
		return pgtype.Text{String: string(e.Payload), Valid: true}, nil
	}
	var buf [256]byte
	b, err := e.Metadata.AppendJSON(buf[:0])
	if err != nil {
		return pgtype.Text{}, fmt.Errorf("encode transition metadata: %w", err)
	}
	if string(b) == "{}" {
		return pgtype.Text{}, nil
	}
	return pgtype.Text{String: string(b), Valid: true}, nil
}

const eventColumns = `e.cursor, e.task_id, e.step_id, e.step_name, e.seq, e.from_state, e.to_state, e.name, e.data::text, e.occurred_at,
	t.namespace, t.name, t.version`

func scanEvent(row pgx.Row) (*store.Event, error) {
	var (
		e                                store.Event
		stepID, stepName, from, to, data *string
		seq                              *int32
		name                             string
	)
	if err := row.Scan(&e.Cursor, &e.TaskID, &stepID, &stepName, &seq, &from, &to, &name, &data, &e.OccurredAt,
		&e.Namespace, &e.TaskName, &e.Version); err != nil {
		return nil, err
	}
	e.StepID, e.StepName, e.From, e.To = deref(stepID), deref(stepName), deref(from), deref(to)
	e.Seq = int(deref(seq))
	e.Name = event.Name(name)
	e.OccurredAt = e.OccurredAt.UTC()
	if data != nil {
		if e.IsTransition() {
			if err := json.Unmarshal([]byte(*data), &e.Metadata); err != nil {
				return nil, fmt.Errorf("decode metadata of event %d: %w", e.Cursor, err)
			}
		} else {
			e.Payload = json.RawMessage(*data)
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
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Event, error) { return scanEvent(r) })
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// eventListQuery builds the query of EventList and its arguments, with
// only the filters that are set, so that each variant gets a plan using its
// index (events_task, also for a step's events, or the primary key for the
// global stream). The other filters are checked on the rows read in cursor order,
// in SQL, so the limit counts matching rows. Name patterns are passed as
// two arrays (exact names, LIKE prefixes): their number makes no variants.
func eventListQuery(p *store.EventListParams) (string, []any, error) {
	exact, prefixes, err := store.NamePatterns(p.Names)
	if err != nil {
		return "", nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 1000
	}
	q := "SELECT " + eventColumns + " FROM events e JOIN tasks t ON t.id = e.task_id WHERE e.cursor > $1"
	args := []any{p.After}
	arg := func(v any) int {
		args = append(args, v)
		return len(args)
	}
	if p.TaskID != "" {
		q += fmt.Sprintf(" AND e.task_id = $%d", arg(p.TaskID))
	}
	if p.StepID != "" {
		// A step's events are found among its task's (events_task): an
		// index of their own would cost every log entry a third index entry.
		n := arg(p.StepID)
		if p.TaskID == "" {
			q += fmt.Sprintf(" AND e.task_id = (SELECT task_id FROM steps WHERE id = $%d)", n)
		}
		q += fmt.Sprintf(" AND e.step_id = $%d", n)
	}
	if p.Namespace != "" {
		q += fmt.Sprintf(" AND t.namespace = $%d", arg(p.Namespace))
	}
	if p.TaskName != "" {
		q += fmt.Sprintf(" AND t.name = $%d", arg(p.TaskName))
	}
	if p.Version != "" {
		q += fmt.Sprintf(" AND t.version = $%d", arg(p.Version))
	}
	likes := make([]string, len(prefixes))
	for i, pre := range prefixes {
		likes[i] = store.EscapeLike(pre) + "%"
	}
	switch {
	case len(exact) > 0 && len(likes) > 0:
		q += fmt.Sprintf(" AND (e.name = ANY($%d::text[]) OR e.name LIKE ANY($%d::text[]))", arg(exact), arg(likes))
	case len(exact) > 0:
		q += fmt.Sprintf(" AND e.name = ANY($%d::text[])", arg(exact))
	case len(likes) > 0:
		q += fmt.Sprintf(" AND e.name LIKE ANY($%d::text[])", arg(likes))
	}
	if !p.Since.IsZero() {
		q += fmt.Sprintf(" AND e.occurred_at >= $%d", arg(p.Since.UTC()))
	}
	if p.TransitionsOnly {
		q += " AND e.to_state IS NOT NULL"
	}
	q += fmt.Sprintf(" ORDER BY e.cursor LIMIT $%d", arg(limit))
	return q, args, nil
}

// cursorAtSQL is a binary search over the log's cursors for the first
// position p such that the first entry at or after p occurred at or after
// $1, a position past the last entry counting as one that did ($1 is the
// time asked for less store.EventCursorSlack, which keeps the search exact
// when the log's times are out of order by less: workers take their times
// before their transactions reach the log, on clocks of their own). Each
// probe is a seek in the primary key; cursors have gaps (rolled back
// transactions, retention). It returns p minus one: the cursor to read
// after. When the last entry is older than $1 the search starts done: the
// log's head, which the webhooks ask for at every pass, costs a few seeks.
// One statement: one round trip and one snapshot.
const cursorAtSQL = `WITH RECURSIVE probe(lo, hi) AS (
		SELECT CASE WHEN COALESCE((SELECT occurred_at >= $1 FROM events ORDER BY cursor DESC LIMIT 1), false)
				THEN COALESCE((SELECT MIN(cursor) FROM events), 1) ELSE COALESCE((SELECT MAX(cursor) FROM events), 0) + 1 END,
			COALESCE((SELECT MAX(cursor) FROM events), 0) + 1
		UNION ALL
		SELECT CASE WHEN COALESCE((SELECT e.occurred_at >= $1 FROM events e WHERE e.cursor >= (lo + hi) / 2 ORDER BY e.cursor LIMIT 1), true)
				THEN lo ELSE (lo + hi) / 2 + 1 END,
			CASE WHEN COALESCE((SELECT e.occurred_at >= $1 FROM events e WHERE e.cursor >= (lo + hi) / 2 ORDER BY e.cursor LIMIT 1), true)
				THEN (lo + hi) / 2 ELSE hi END
		FROM probe WHERE lo < hi
	)
	SELECT lo - 1 FROM probe WHERE lo >= hi`

// EventCursorAt returns the cursor to read after for events from t on: at
// most store.EventCursorSlack's worth of entries before the first of them.
func (s *Store) EventCursorAt(ctx context.Context, t time.Time) (int64, error) {
	var c int64
	if err := s.pool.QueryRow(ctx, cursorAtSQL, t.Add(-store.EventCursorSlack).UTC()).Scan(&c); err != nil {
		return 0, fmt.Errorf("event cursor at %s: %w", t, err)
	}
	return c, nil
}
