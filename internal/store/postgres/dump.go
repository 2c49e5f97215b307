package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/internal/store"
)

// Importer copies rows into the store in one transaction: nothing is
// visible until Commit, and a failed copy leaves the store as it was.
type Importer struct {
	s  *Store
	tx pgx.Tx
}

// ErrNotEmpty reports an import into a store that already holds tasks.
var ErrNotEmpty = errors.New("the destination already holds tasks")

// BeginImport starts a copy into the store, which must hold no task.
func (s *Store) BeginImport(ctx context.Context) (*Importer, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin import: %w", err)
	}
	// Keep writers of the log out while the copy runs.
	if _, err := tx.Exec(ctx, lockLogSQL, s.lockKey); err != nil {
		_ = tx.Rollback(ctx)
		return nil, fmt.Errorf("begin import: %w", err)
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM (SELECT 1 FROM tasks LIMIT 1) t").Scan(&n); err != nil {
		_ = tx.Rollback(ctx)
		return nil, fmt.Errorf("begin import: %w", err)
	}
	if n > 0 {
		_ = tx.Rollback(ctx)
		return nil, fmt.Errorf("import into schema %s: %w", s.schema, ErrNotEmpty)
	}
	return &Importer{s: s, tx: tx}, nil
}

// Add inserts a batch of rows, keeping their ids, sequence numbers,
// counters and cursors.
func (im *Importer) Add(ctx context.Context, d *store.Dump) error {
	tx := im.tx
	for _, t := range d.Tokens {
		if _, err := tx.Exec(ctx, `INSERT INTO tokens (id, name, role, namespace, hash, created_at, expires_at, revoked_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`, t.ID, t.Name, t.Role, nullString(t.Namespace), t.Hash,
			t.CreatedAt.UTC(), nullTime(t.ExpiresAt), nullTime(t.RevokedAt)); err != nil {
			return fmt.Errorf("import token %s: %w", t.ID, err)
		}
	}
	for _, sub := range d.Subscriptions {
		if _, err := tx.Exec(ctx, `INSERT INTO subscriptions (id, source, name, namespace, task_name, version, spec, cursor, active, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING`,
			sub.ID, sub.Source, sub.Name, nullString(sub.Namespace), nullString(sub.TaskName), nullString(sub.Version), string(sub.Spec),
			sub.Cursor, sub.Active, sub.CreatedAt.UTC(), sub.UpdatedAt.UTC()); err != nil {
			return fmt.Errorf("import subscription %s: %w", sub.ID, err)
		}
	}
	for _, dl := range d.Deliveries {
		if _, err := tx.Exec(ctx, `INSERT INTO deliveries (id, subscription_id, subscription_name, event_cursor, event_name, task_id, namespace,
			payload, state, attempts, next_attempt_at, last_status, last_error, created_at, updated_at, delivered_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8::json, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (id) DO NOTHING`,
			dl.ID, dl.SubscriptionID, dl.SubscriptionName, dl.EventCursor, dl.EventName, dl.TaskID, dl.Namespace, string(dl.Payload),
			dl.State, dl.Attempts, dl.NextAttemptAt.UTC(), dl.LastStatus, dl.LastError, dl.CreatedAt.UTC(), dl.UpdatedAt.UTC(),
			nullTime(dl.DeliveredAt)); err != nil {
			return fmt.Errorf("import delivery %s: %w", dl.ID, err)
		}
	}
	for _, t := range d.Templates {
		var current bool
		err := tx.QueryRow(ctx, "SELECT current FROM templates WHERE id = $1", t.ID).Scan(&current)
		if err == nil {
			continue // the same definition is already there
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("import template %s: %w", t.ID, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO templates (id, namespace, name, version, definition, current, registered_at)
			VALUES ($1, $2, $3, $4, $5::json, $6, $7)`, t.ID, t.Namespace, t.Name, t.Version, string(t.Definition), t.Current,
			t.RegisteredAt.UTC()); err != nil {
			return fmt.Errorf("import template %s/%s@%s: %w", t.Namespace, t.Name, t.Version, err)
		}
	}
	for _, t := range d.Tasks {
		if _, err := tx.Exec(ctx, `INSERT INTO tasks (id, template_id, namespace, name, version, state, context, identity_key,
			idempotency_key, steps_total, steps_done, steps_open, seq, created_at, updated_at, started_at, finished_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
			t.ID, t.TemplateID, t.Namespace, t.Name, t.Version, string(t.State), string(t.Context), nullString(t.IdentityKey),
			nullString(t.IdempotencyKey), t.StepsTotal, t.StepsDone, t.StepsOpen, t.Seq, t.CreatedAt.UTC(), t.UpdatedAt.UTC(),
			nullTime(t.StartedAt), nullTime(t.FinishedAt)); err != nil {
			return fmt.Errorf("import task %s: %w", t.ID, err)
		}
	}
	if len(d.Steps) > 0 {
		rows := make([][]any, len(d.Steps))
		for i, st := range d.Steps {
			var results *string
			if len(st.Results) > 0 {
				r := string(st.Results)
				results = &r
			}
			var token *int64
			if st.LeaseToken != 0 {
				token = &st.LeaseToken
			}
			rows[i] = []any{st.ID, st.TaskID, int32(st.Index), st.Name, st.TemplateID, st.Handler, string(st.State), int32(st.Attempts),
				int32(st.MaxAttempts), int32(st.RetryLimit), st.Timeout.Microseconds(), int32(st.DepsRemaining), nullTime(st.RunAt),
				nullString(st.LeaseOwner), token, nullTime(st.LeaseExpiresAt), results, nullString(st.LastError),
				nullString(st.ErrorClass), int32(st.Seq), st.CreatedAt.UTC(), st.UpdatedAt.UTC(), nullTime(st.StartedAt),
				nullTime(st.FinishedAt)}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"steps"}, []string{"id", "task_id", "idx", "name", "template_id", "handler",
			"state", "attempts", "max_attempts", "retry_limit", "timeout_us", "deps_remaining", "run_at", "lease_owner",
			"lease_token", "lease_expires_at", "results", "last_error", "error_class", "seq", "created_at", "updated_at",
			"started_at", "finished_at"}, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("import steps: %w", err)
		}
	}
	if len(d.Edges) > 0 {
		rows := make([][]any, len(d.Edges))
		for i, e := range d.Edges {
			rows[i] = []any{e.ParentID, e.ChildID, e.TaskID}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"step_edges"}, []string{"parent_id", "child_id", "task_id"},
			pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("import edges: %w", err)
		}
	}
	if len(d.Events) > 0 {
		rows := make([][]any, len(d.Events))
		for i, e := range d.Events {
			value, err := eventData(e)
			if err != nil {
				return err
			}
			var data *string
			if value.Valid {
				data = &value.String
			}
			var seq *int32
			if e.IsTransition() {
				v := int32(e.Seq)
				seq = &v
			}
			rows[i] = []any{e.Cursor, e.TaskID, nullString(e.StepID), nullString(e.StepName), seq, nullString(e.From),
				nullString(e.To), string(e.Name), data, e.OccurredAt.UTC()}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"cursor", "task_id", "step_id", "step_name", "seq",
			"from_state", "to_state", "name", "data", "occurred_at"}, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("import events: %w", err)
		}
	}
	return nil
}

// Commit makes the copy visible; new log entries continue after the
// highest copied cursor.
func (im *Importer) Commit(ctx context.Context) error {
	if _, err := im.tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('events', 'cursor'),
		GREATEST((SELECT MAX(cursor) FROM events), 1))`); err != nil {
		_ = im.tx.Rollback(ctx)
		return fmt.Errorf("commit import: %w", err)
	}
	if err := im.tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit import: %w", err)
	}
	return nil
}

// Rollback abandons the copy.
func (im *Importer) Rollback(ctx context.Context) error { return im.tx.Rollback(ctx) }

// ActiveLeases counts running steps whose lease has not expired at now.
func (s *Store) ActiveLeases(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, "SELECT COUNT(*) FROM steps WHERE state = 'in_progress' AND lease_expires_at > $1", now.UTC()).Scan(&n)
	return n, err
}
