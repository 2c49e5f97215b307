package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/internal/store"
)

const subscriptionColumns = `s.id, s.source, s.name, s.namespace, s.task_name, s.version, s.spec::text, s.cursor, s.active, s.created_at, s.updated_at`

func scanSubscription(row pgx.Row, counts bool) (*store.Subscription, error) {
	var (
		sub                        store.Subscription
		ns, name, version          *string
		spec                       string
		pending, delivered, failed int64
	)
	dest := []any{&sub.ID, &sub.Source, &sub.Name, &ns, &name, &version, &spec, &sub.Cursor, &sub.Active, &sub.CreatedAt, &sub.UpdatedAt}
	if counts {
		dest = append(dest, &pending, &delivered, &failed)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	sub.Namespace, sub.TaskName, sub.Version = deref(ns), deref(name), deref(version)
	sub.Spec = []byte(spec)
	sub.CreatedAt, sub.UpdatedAt = sub.CreatedAt.UTC(), sub.UpdatedAt.UTC()
	sub.Pending, sub.Delivered, sub.Failed = int(pending), int(delivered), int(failed)
	return &sub, nil
}

// SubscriptionSync replaces the subscriptions of a source.
func (s *Store) SubscriptionSync(ctx context.Context, p *store.SubscriptionSyncParams) ([]*store.Subscription, error) {
	var out []*store.Subscription
	_, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, _ *change) error {
		out = nil
		// Serialise syncs of one source: processes starting together
		// register the same templates.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "tasker.subscriptions:"+s.schema+":"+p.Source); err != nil {
			return err
		}
		var head int64
		if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(cursor), 0) FROM events").Scan(&head); err != nil {
			return err
		}
		ids := make([]string, 0, len(p.Subscriptions))
		for _, sub := range p.Subscriptions {
			if _, err := tx.Exec(ctx, `INSERT INTO subscriptions (id, source, name, namespace, task_name, version, spec, cursor, active, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8, true, $9, $9)
				ON CONFLICT (id) DO UPDATE SET namespace = excluded.namespace, task_name = excluded.task_name, version = excluded.version,
					spec = excluded.spec, active = true,
					updated_at = CASE WHEN subscriptions.spec::text = excluded.spec::text AND subscriptions.active THEN subscriptions.updated_at ELSE excluded.updated_at END`,
				sub.ID, p.Source, sub.Name, nullString(sub.Namespace), nullString(sub.TaskName), nullString(sub.Version), string(sub.Spec),
				head, p.Now.UTC()); err != nil {
				return err
			}
			ids = append(ids, sub.ID)
		}
		if _, err := tx.Exec(ctx, "UPDATE subscriptions SET active = false, updated_at = $1 WHERE source = $2 AND active AND NOT (id = ANY($3::text[]))",
			p.Now.UTC(), p.Source, ids); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT "+subscriptionColumns+" FROM subscriptions s WHERE s.source = $1 ORDER BY s.id", p.Source)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Subscription, error) { return scanSubscription(r, false) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sync subscriptions of %s: %w", p.Source, err)
	}
	return out, nil
}

// SubscriptionList returns subscriptions with their delivery counts.
func (s *Store) SubscriptionList(ctx context.Context, p *store.SubscriptionListParams) ([]*store.Subscription, error) {
	q := "SELECT " + subscriptionColumns + `,
		(SELECT COUNT(*) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending'),
		(SELECT COUNT(*) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'delivered'),
		(SELECT COUNT(*) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'failed')
		FROM subscriptions s WHERE true`
	var args []any
	if p.Namespace != "" {
		args = append(args, p.Namespace)
		q += " AND s.namespace = $1"
	}
	if p.ActiveOnly {
		q += " AND s.active"
	}
	rows, err := s.pool.Query(ctx, q+" ORDER BY s.id", args...)
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Subscription, error) { return scanSubscription(r, true) })
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	return out, nil
}

// SubscriptionAdvance moves a subscription's cursor and creates its
// deliveries in one transaction.
func (s *Store) SubscriptionAdvance(ctx context.Context, p *store.SubscriptionAdvanceParams) error {
	_, err := s.run(ctx, p.Now, func(ctx context.Context, tx pgx.Tx, _ *change) error {
		tag, err := tx.Exec(ctx, "UPDATE subscriptions SET cursor = $1 WHERE id = $2 AND cursor = $3", p.To, p.ID, p.From)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("the cursor is no longer %d: %w", p.From, store.ErrConflict)
		}
		if len(p.Deliveries) == 0 {
			return nil
		}
		var b pgx.Batch
		for _, d := range p.Deliveries {
			b.Queue(`INSERT INTO deliveries (id, subscription_id, subscription_name, event_cursor, event_name, task_id, namespace,
				payload, state, next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::json, 'pending', $9, $9, $9)
				ON CONFLICT (subscription_id, event_cursor) DO NOTHING`,
				d.ID, p.ID, d.SubscriptionName, d.EventCursor, d.EventName, d.TaskID, d.Namespace, string(d.Payload), p.Now.UTC())
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return fmt.Errorf("advance subscription %s: %w", p.ID, err)
	}
	return nil
}

const deliveryColumns = `id, subscription_id, subscription_name, event_cursor, event_name, task_id, namespace, payload::text, state, attempts,
	next_attempt_at, last_status, last_error, created_at, updated_at, delivered_at`

func scanDelivery(row pgx.Row) (*store.Delivery, error) {
	var (
		d         store.Delivery
		payload   string
		delivered *time.Time
	)
	if err := row.Scan(&d.ID, &d.SubscriptionID, &d.SubscriptionName, &d.EventCursor, &d.EventName, &d.TaskID, &d.Namespace, &payload,
		&d.State, &d.Attempts, &d.NextAttemptAt, &d.LastStatus, &d.LastError, &d.CreatedAt, &d.UpdatedAt, &delivered); err != nil {
		return nil, err
	}
	d.Payload = []byte(payload)
	d.NextAttemptAt, d.CreatedAt, d.UpdatedAt, d.DeliveredAt = d.NextAttemptAt.UTC(), d.CreatedAt.UTC(), d.UpdatedAt.UTC(), utc(delivered)
	return &d, nil
}

func collectDeliveries(rows pgx.Rows) ([]*store.Delivery, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Delivery, error) { return scanDelivery(r) })
}

// DeliveryClaim claims due pending deliveries; SKIP LOCKED lets several
// processes claim disjoint batches.
func (s *Store) DeliveryClaim(ctx context.Context, p *store.DeliveryClaimParams) ([]*store.Delivery, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 10
	}
	rows, err := s.pool.Query(ctx, `UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = $1, updated_at = $2
		WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $2 ORDER BY next_attempt_at, id LIMIT $3
			FOR UPDATE SKIP LOCKED)
		RETURNING `+deliveryColumns, p.Now.Add(p.Lease).UTC(), p.Now.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	out, err := collectDeliveries(rows)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return out, nil
}

// DeliveryFinish records an attempt's outcome.
func (s *Store) DeliveryFinish(ctx context.Context, p *store.DeliveryFinishParams) error {
	var delivered *time.Time
	if p.State == store.DeliveryDelivered {
		delivered = nullTime(p.Now)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE deliveries SET state = $1, next_attempt_at = $2, last_status = $3, last_error = $4, delivered_at = $5,
		updated_at = $6 WHERE id = $7 AND attempts = $8 AND state = 'pending'`,
		p.State, p.NextAttemptAt.UTC(), p.LastStatus, p.LastError, delivered, p.Now.UTC(), p.ID, p.Attempt)
	if err != nil {
		return fmt.Errorf("finish delivery %s: %w", p.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("finish delivery %s: the delivery moved on: %w", p.ID, store.ErrConflict)
	}
	return nil
}

// DeliveryList lists deliveries, newest first.
func (s *Store) DeliveryList(ctx context.Context, p *store.DeliveryListParams) ([]*store.Delivery, error) {
	var where []string
	var args []any
	add := func(col string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(col, len(args)))
	}
	if p.SubscriptionID != "" {
		add("subscription_id = $%d", p.SubscriptionID)
	}
	if p.State != "" {
		add("state = $%d", p.State)
	}
	if p.TaskID != "" {
		add("task_id = $%d", p.TaskID)
	}
	if p.Namespace != "" {
		add("namespace = $%d", p.Namespace)
	}
	if p.Before != "" {
		add("id < $%d", p.Before)
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	q := "SELECT " + deliveryColumns + " FROM deliveries"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	rows, err := s.pool.Query(ctx, q+fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	out, err := collectDeliveries(rows)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return out, nil
}

// DeliveryGet returns one delivery.
func (s *Store) DeliveryGet(ctx context.Context, id string) (*store.Delivery, error) {
	d, err := scanDelivery(s.pool.QueryRow(ctx, "SELECT "+deliveryColumns+" FROM deliveries WHERE id = $1", id))
	if err != nil {
		return nil, notFound(err, "delivery "+id)
	}
	return d, nil
}

// DeliveryRetry sends a failed or delivered delivery again.
func (s *Store) DeliveryRetry(ctx context.Context, id string, now time.Time) (*store.Delivery, error) {
	d, err := scanDelivery(s.pool.QueryRow(ctx, `UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1,
		delivered_at = NULL WHERE id = $2 AND state IN ('failed', 'delivered') RETURNING `+deliveryColumns, now.UTC(), id))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, gerr := s.DeliveryGet(ctx, id); gerr != nil {
			return nil, fmt.Errorf("retry delivery: %w", gerr)
		}
		return nil, fmt.Errorf("retry delivery %s: the delivery is pending already: %w", id, store.ErrConflict)
	}
	if err != nil {
		return nil, fmt.Errorf("retry delivery %s: %w", id, err)
	}
	return d, nil
}

// DeliveryDeleteDelivered deletes deliveries delivered before a time.
func (s *Store) DeliveryDeleteDelivered(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM deliveries WHERE state = 'delivered' AND delivered_at < $1", before.UTC())
	if err != nil {
		return 0, fmt.Errorf("delete delivered deliveries: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
