package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/tasker-go/tasker/internal/store"
)

// LeaderAcquire takes or extends a leadership.
func (s *Store) LeaderAcquire(ctx context.Context, p *store.LeaderParams) (bool, error) {
	if p.Name == "" || p.Holder == "" || p.TTL <= 0 {
		return false, errors.New("acquire leadership: name, holder and TTL are required")
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO leaders (name, holder, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leaders.holder = excluded.holder OR leaders.expires_at <= $4`,
		p.Name, p.Holder, p.Now.Add(p.TTL).UTC(), p.Now.UTC())
	if err != nil {
		return false, fmt.Errorf("acquire leadership %s: %w", p.Name, err)
	}
	return tag.RowsAffected() == 1, nil
}

// LeaderRelease gives up a leadership.
func (s *Store) LeaderRelease(ctx context.Context, p *store.LeaderParams) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM leaders WHERE name = $1 AND holder = $2", p.Name, p.Holder); err != nil {
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
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("delete finished tasks: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, `SELECT id FROM tasks WHERE state IN ('complete', 'cancelled', 'resolved_manually')
		AND finished_at < $1 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED`, p.Before.UTC(), limit)
	if err != nil {
		return 0, fmt.Errorf("delete finished tasks: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return 0, err
	}
	for _, q := range []string{
		"DELETE FROM events WHERE task_id = ANY($1)",
		"DELETE FROM step_edges WHERE task_id = ANY($1)",
		"DELETE FROM steps WHERE task_id = ANY($1)",
		"DELETE FROM tasks WHERE id = ANY($1)",
	} {
		if _, err := tx.Exec(ctx, q, ids); err != nil {
			return 0, fmt.Errorf("delete finished tasks: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("delete finished tasks: %w", err)
	}
	return len(ids), nil
}
