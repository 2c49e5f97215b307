package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tasker-go/tasker/internal/store"
)

// LeaderAcquire takes or extends a leadership.
func (s *Store) LeaderAcquire(ctx context.Context, p *store.LeaderParams) (bool, error) {
	if p.Name == "" || p.Holder == "" || p.TTL <= 0 {
		return false, errors.New("acquire leadership: name, holder and TTL are required")
	}
	var leads bool
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `INSERT INTO leaders (name, holder, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE leaders.holder = excluded.holder OR leaders.expires_at <= ?`,
			p.Name, p.Holder, us(p.Now.Add(p.TTL)), us(p.Now))
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		leads = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("acquire leadership %s: %w", p.Name, err)
	}
	return leads, nil
}

// LeaderRelease gives up a leadership.
func (s *Store) LeaderRelease(ctx context.Context, p *store.LeaderParams) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM leaders WHERE name = ? AND holder = ?", p.Name, p.Holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("release leadership %s: %w", p.Name, err)
	}
	return nil
}

// TaskDeleteFinished deletes old finished tasks with everything they own.
func (s *Store) TaskDeleteFinished(ctx context.Context, p *store.TaskDeleteFinishedParams) (int, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 1000
	}
	var n int
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id FROM tasks WHERE state IN ('complete', 'cancelled', 'resolved_manually')
			AND finished_at < ? ORDER BY finished_at`+limitClause(limit), us(p.Before))
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		n = len(ids)
		if n == 0 {
			return nil
		}
		for _, chunk := range idChunks(ids) {
			if err := deleteTasks(ctx, tx, chunk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete finished tasks: %w", err)
	}
	return n, nil
}

// deleteTasks deletes up to maxIDsPerStatement tasks with everything they
// own: their log entries, edges, steps and contexts.
func deleteTasks(ctx context.Context, tx *sql.Tx, ids []string) error {
	in := "(" + placeholders(len(ids)) + ")"
	args := idArgs(ids)
	for _, q := range []string{
		"DELETE FROM events WHERE task_id IN " + in,
		"DELETE FROM step_edges WHERE task_id IN " + in,
		"DELETE FROM steps WHERE task_id IN " + in,
		"DELETE FROM task_contexts WHERE task_id IN " + in,
		"DELETE FROM tasks WHERE id IN " + in,
	} {
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}
