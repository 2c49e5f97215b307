package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

const subscriptionColumns = `s.id, s.source, s.name, s.namespace, s.task_name, s.version, s.spec, s.cursor, s.active, s.created_at, s.updated_at`

func scanSubscription(sc interface{ Scan(...any) error }, counts bool) (*store.Subscription, error) {
	var (
		sub                      store.Subscription
		ns, name, version        sql.NullString
		spec                     string
		active                   int
		created, updated         int64
		pending, delivered, fail sql.NullInt64
	)
	dest := []any{&sub.ID, &sub.Source, &sub.Name, &ns, &name, &version, &spec, &sub.Cursor, &active, &created, &updated}
	if counts {
		dest = append(dest, &pending, &delivered, &fail)
	}
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	sub.Namespace, sub.TaskName, sub.Version = ns.String, name.String, version.String
	sub.Spec, sub.Active = []byte(spec), active != 0
	sub.CreatedAt, sub.UpdatedAt = fromUS(created), fromUS(updated)
	sub.Pending, sub.Delivered, sub.Failed = int(pending.Int64), int(delivered.Int64), int(fail.Int64)
	return &sub, nil
}

// SubscriptionSync replaces the subscriptions of a source.
func (s *Store) SubscriptionSync(ctx context.Context, p *store.SubscriptionSyncParams) ([]*store.Subscription, error) {
	var out []*store.Subscription
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var head int64
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(cursor), 0) FROM events").Scan(&head); err != nil {
			return err
		}
		ids := make([]any, 0, len(p.Subscriptions))
		for _, sub := range p.Subscriptions {
			if _, err := tx.ExecContext(ctx, `INSERT INTO subscriptions (id, source, name, namespace, task_name, version, spec, cursor, active, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
				ON CONFLICT (id) DO UPDATE SET namespace = excluded.namespace, task_name = excluded.task_name, version = excluded.version,
					spec = excluded.spec, active = 1,
					updated_at = CASE WHEN subscriptions.spec = excluded.spec AND subscriptions.active = 1 THEN subscriptions.updated_at ELSE excluded.updated_at END`,
				sub.ID, p.Source, sub.Name, nullString(sub.Namespace), nullString(sub.TaskName), nullString(sub.Version), string(sub.Spec),
				head, us(p.Now), us(p.Now)); err != nil {
				return err
			}
			ids = append(ids, sub.ID)
		}
		q := "UPDATE subscriptions SET active = 0, updated_at = ? WHERE source = ? AND active = 1"
		args := []any{us(p.Now), p.Source}
		if len(ids) > 0 {
			q += " AND id NOT IN (" + placeholders(len(ids)) + ")"
			args = append(args, ids...)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT "+subscriptionColumns+" FROM subscriptions s WHERE s.source = ? ORDER BY s.id", p.Source)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			sub, err := scanSubscription(rows, false)
			if err != nil {
				return err
			}
			out = append(out, sub)
		}
		return rows.Err()
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
		FROM subscriptions s WHERE 1 = 1`
	var args []any
	if p.Namespace != "" {
		q += " AND s.namespace = ?"
		args = append(args, p.Namespace)
	}
	if p.ActiveOnly {
		q += " AND s.active = 1"
	}
	rows, err := s.rdb.QueryContext(ctx, q+" ORDER BY s.id", args...)
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	defer rows.Close()
	var out []*store.Subscription
	for rows.Next() {
		sub, err := scanSubscription(rows, true)
		if err != nil {
			return nil, fmt.Errorf("list subscriptions: %w", err)
		}
		out = append(out, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	return out, nil
}

// SubscriptionAdvance moves a subscription's cursor and creates its
// deliveries in one transaction.
func (s *Store) SubscriptionAdvance(ctx context.Context, p *store.SubscriptionAdvanceParams) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE subscriptions SET cursor = ? WHERE id = ? AND cursor = ?", p.To, p.ID, p.From)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("the cursor is no longer %d: %w", p.From, store.ErrConflict)
		}
		for _, d := range p.Deliveries {
			if _, err := tx.ExecContext(ctx, `INSERT INTO deliveries (id, subscription_id, subscription_name, event_cursor, event_name, task_id, namespace,
				payload, state, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)
				ON CONFLICT (subscription_id, event_cursor) DO NOTHING`,
				d.ID, p.ID, d.SubscriptionName, d.EventCursor, d.EventName, d.TaskID, d.Namespace, string(d.Payload),
				us(p.Now), us(p.Now), us(p.Now)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("advance subscription %s: %w", p.ID, err)
	}
	return nil
}

const deliveryColumns = `id, subscription_id, subscription_name, event_cursor, event_name, task_id, namespace, payload, state, attempts,
	next_attempt_at, last_status, last_error, created_at, updated_at, delivered_at`

func scanDelivery(sc interface{ Scan(...any) error }) (*store.Delivery, error) {
	var (
		d                      store.Delivery
		payload                string
		next, created, updated int64
		delivered              sql.NullInt64
	)
	if err := sc.Scan(&d.ID, &d.SubscriptionID, &d.SubscriptionName, &d.EventCursor, &d.EventName, &d.TaskID, &d.Namespace, &payload,
		&d.State, &d.Attempts, &next, &d.LastStatus, &d.LastError, &created, &updated, &delivered); err != nil {
		return nil, err
	}
	d.Payload = []byte(payload)
	d.NextAttemptAt, d.CreatedAt, d.UpdatedAt, d.DeliveredAt = fromUS(next), fromUS(created), fromUS(updated), fromNullUS(delivered)
	return &d, nil
}

func collectDeliveries(rows *sql.Rows) ([]*store.Delivery, error) {
	defer rows.Close()
	var out []*store.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeliveryClaim claims due pending deliveries.
func (s *Store) DeliveryClaim(ctx context.Context, p *store.DeliveryClaimParams) ([]*store.Delivery, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 10
	}
	var out []*store.Delivery
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?, updated_at = ?
			WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id`+limitClause(limit)+`)
			RETURNING `+deliveryColumns, us(p.Now.Add(p.Lease)), us(p.Now), us(p.Now))
		if err != nil {
			return err
		}
		out, err = collectDeliveries(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return out, nil
}

// DeliveryFinish records an attempt's outcome.
func (s *Store) DeliveryFinish(ctx context.Context, p *store.DeliveryFinishParams) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var delivered sql.NullInt64
		if p.State == store.DeliveryDelivered {
			delivered = nullUS(p.Now)
		}
		res, err := tx.ExecContext(ctx, `UPDATE deliveries SET state = ?, next_attempt_at = ?, last_status = ?, last_error = ?, delivered_at = ?,
			updated_at = ? WHERE id = ? AND attempts = ? AND state = 'pending'`,
			p.State, us(p.NextAttemptAt), p.LastStatus, p.LastError, delivered, us(p.Now), p.ID, p.Attempt)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("the delivery moved on: %w", store.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("finish delivery %s: %w", p.ID, err)
	}
	return nil
}

// DeliveryList lists deliveries, newest first.
func (s *Store) DeliveryList(ctx context.Context, p *store.DeliveryListParams) ([]*store.Delivery, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if p.SubscriptionID != "" {
		add("subscription_id = ?", p.SubscriptionID)
	}
	if p.State != "" {
		add("state = ?", p.State)
	}
	if p.TaskID != "" {
		add("task_id = ?", p.TaskID)
	}
	if p.Namespace != "" {
		add("namespace = ?", p.Namespace)
	}
	if p.Before != "" {
		add("id < ?", p.Before)
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	q := "SELECT " + deliveryColumns + " FROM deliveries"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.rdb.QueryContext(ctx, q+" ORDER BY id DESC"+limitClause(limit), args...)
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
	d, err := scanDelivery(s.rdb.QueryRowContext(ctx, "SELECT "+deliveryColumns+" FROM deliveries WHERE id = ?", id))
	if err != nil {
		return nil, notFound(err, "delivery "+id)
	}
	return d, nil
}

// DeliveryRetry sends a failed or delivered delivery again.
func (s *Store) DeliveryRetry(ctx context.Context, id string, now time.Time) (*store.Delivery, error) {
	var out *store.Delivery
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		d, err := scanDelivery(tx.QueryRowContext(ctx, `UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?,
			delivered_at = NULL WHERE id = ? AND state IN ('failed', 'delivered') RETURNING `+deliveryColumns, us(now), us(now), id))
		if errors.Is(err, sql.ErrNoRows) {
			if _, gerr := scanDelivery(tx.QueryRowContext(ctx, "SELECT "+deliveryColumns+" FROM deliveries WHERE id = ?", id)); gerr != nil {
				return notFound(gerr, "delivery "+id)
			}
			return fmt.Errorf("the delivery is pending already: %w", store.ErrConflict)
		}
		out = d
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("retry delivery: %w", err)
	}
	return out, nil
}

// DeliveryDeleteDelivered deletes deliveries delivered before a time.
func (s *Store) DeliveryDeleteDelivered(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM deliveries WHERE state = 'delivered' AND delivered_at < ?", us(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete delivered deliveries: %w", err)
	}
	return int(n), nil
}
