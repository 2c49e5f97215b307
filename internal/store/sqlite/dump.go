package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

// ActiveLeases counts the running steps whose lease has not expired at
// now: work that a live worker may still be doing.
func (s *Store) ActiveLeases(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.rdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM steps WHERE state = 'in_progress' AND lease_expires_at > ?", us(now)).Scan(&n)
	return n, err
}

// Export streams every row of the store to fn in batches of about
// batchSize rows: templates, tokens, webhook subscriptions and deliveries,
// then tasks with their steps, edges and log entries. It holds the database's write lock throughout, so the copy is
// consistent and nobody writes meanwhile (other writers wait, then fail
// with "database is locked").
func (s *Store) Export(ctx context.Context, batchSize int, fn func(*store.Dump) error) error {
	if batchSize <= 0 {
		batchSize = 1000
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, "SELECT "+templateColumns+" FROM templates ORDER BY registered_at, id")
		if err != nil {
			return err
		}
		d := &store.Dump{}
		for rows.Next() {
			t, err := scanTemplate(rows)
			if err != nil {
				rows.Close()
				return err
			}
			d.Templates = append(d.Templates, t)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		trows, err := tx.QueryContext(ctx, "SELECT "+tokenColumns+" FROM tokens ORDER BY created_at, id")
		if err != nil {
			return err
		}
		for trows.Next() {
			t, err := scanToken(trows)
			if err != nil {
				trows.Close()
				return err
			}
			d.Tokens = append(d.Tokens, t)
		}
		if err := errors.Join(trows.Err(), trows.Close()); err != nil {
			return err
		}
		srows, err := tx.QueryContext(ctx, "SELECT "+subscriptionColumns+" FROM subscriptions s ORDER BY s.id")
		if err != nil {
			return err
		}
		for srows.Next() {
			sub, err := scanSubscription(srows, false)
			if err != nil {
				srows.Close()
				return err
			}
			d.Subscriptions = append(d.Subscriptions, sub)
		}
		if err := errors.Join(srows.Err(), srows.Close()); err != nil {
			return err
		}
		drows, err := tx.QueryContext(ctx, "SELECT "+deliveryColumns+" FROM deliveries ORDER BY id")
		if err != nil {
			return err
		}
		if d.Deliveries, err = collectDeliveries(drows); err != nil {
			return err
		}
		if err := fn(d); err != nil {
			return err
		}
		var lastTask string
		for {
			tasks, err := loadTaskPage(ctx, tx, lastTask, max(batchSize/10, 1))
			if err != nil || len(tasks) == 0 {
				return err
			}
			d := &store.Dump{}
			for _, t := range tasks {
				d.Tasks = append(d.Tasks, &t.Task)
				steps, err := loadSteps(ctx, tx, "task_id = ?", t.ID)
				if err != nil {
					return err
				}
				for _, st := range steps {
					d.Steps = append(d.Steps, &st.Step)
				}
				erows, err := tx.QueryContext(ctx, "SELECT parent_id, child_id, task_id FROM step_edges WHERE task_id = ?", t.ID)
				if err != nil {
					return err
				}
				for erows.Next() {
					var e store.Edge
					if err := erows.Scan(&e.ParentID, &e.ChildID, &e.TaskID); err != nil {
						erows.Close()
						return err
					}
					d.Edges = append(d.Edges, e)
				}
				if err := errors.Join(erows.Err(), erows.Close()); err != nil {
					return err
				}
				vrows, err := tx.QueryContext(ctx, "SELECT "+eventColumns+" FROM events e JOIN tasks t ON t.id = e.task_id WHERE e.task_id = ? ORDER BY e.cursor", t.ID)
				if err != nil {
					return err
				}
				for vrows.Next() {
					ev, err := scanEvent(vrows)
					if err != nil {
						vrows.Close()
						return err
					}
					d.Events = append(d.Events, ev)
				}
				if err := errors.Join(vrows.Err(), vrows.Close()); err != nil {
					return err
				}
				lastTask = t.ID
			}
			if err := fn(d); err != nil {
				return err
			}
		}
	})
}

func loadTaskPage(ctx context.Context, tx *sql.Tx, after string, limit int) ([]*taskRow, error) {
	rows, err := tx.QueryContext(ctx, "SELECT "+taskColumns+" FROM tasks WHERE id > ? ORDER BY id"+limitClause(limit), after)
	if err != nil {
		return nil, fmt.Errorf("export tasks: %w", err)
	}
	defer rows.Close()
	var out []*taskRow
	var sc taskScanner
	for rows.Next() {
		t, err := sc.scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
