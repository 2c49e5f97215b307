package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// runModel measures a data model, not a product: what a burn-down costs on
// this database when a one-step task is one row (claimed and completed in
// place, as River's job is) and each transition still writes its audit
// trail, the three log entries of Tasker's work phase per unit (the step's
// claim in the claiming transaction; the step's and the task's completion
// in the completing one). Workers claim up to 5 units per transaction and
// complete them in a second one, one statement per round trip. It bounds
// what a one-row hot path could reach with a full audit trail, against
// River's figure of the same run.
func runModel(ctx context.Context, db string, n, workers int) (Figure, error) {
	const batch = 5
	cfg, err := pgxpool.ParseConfig(db)
	if err != nil {
		return Figure{}, err
	}
	cfg.MaxConns = int32(workers + 2)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return Figure{}, err
	}
	defer pool.Close()
	schema := freshSchema("peers_model")
	defer dropSchema(ctx, db, schema)
	for _, q := range []string{
		"CREATE SCHEMA " + schema,
		`CREATE TABLE ` + schema + `.units (id bigserial PRIMARY KEY, state text NOT NULL, attempt int NOT NULL DEFAULT 0,
			context jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now(), started_at timestamptz,
			finished_at timestamptz, lease_owner text, lease_token bigint)`,
		`CREATE INDEX ON ` + schema + `.units (id) WHERE state = 'pending'`,
		`CREATE TABLE ` + schema + `.log (cursor bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, unit_id bigint NOT NULL,
			name text NOT NULL, data jsonb, occurred_at timestamptz NOT NULL)`,
		`CREATE INDEX ON ` + schema + `.log (unit_id, cursor)`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return Figure{}, fmt.Errorf("model schema: %w", err)
		}
	}
	start := time.Now()
	if _, err := pool.Exec(ctx, `INSERT INTO `+schema+`.units (state) SELECT 'pending' FROM generate_series(1, $1)`, n); err != nil {
		return Figure{}, fmt.Errorf("model insert: %w", err)
	}
	insert := time.Since(start)
	claimSQL := `UPDATE ` + schema + `.units SET state = 'in_progress', attempt = attempt + 1, started_at = now(),
		lease_owner = $2, lease_token = $3
		WHERE id IN (SELECT id FROM ` + schema + `.units WHERE state = 'pending' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING id`
	completeSQL := `UPDATE ` + schema + `.units SET state = 'complete', finished_at = now() WHERE id = ANY($1) AND state = 'in_progress'`
	logSQL := `INSERT INTO ` + schema + `.log (unit_id, name, data, occurred_at)
		SELECT id, $2, '{"worker":"w","attempt":1}', now() FROM unnest($1::bigint[]) id`
	var done atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start = time.Now()
	m := startMeter()
	for w := range workers {
		wg.Go(func() {
			for done.Load() < int64(n) && failed.Load() == nil {
				var ids []int64
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					rows, _ := tx.Query(ctx, claimSQL, batch, "worker", int64(w+1))
					var err error
					if ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil || len(ids) == 0 {
						return err
					}
					_, err = tx.Exec(ctx, logSQL, ids, "step.claimed")
					return err
				})
				if err == nil && len(ids) > 0 {
					err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
						if _, err := tx.Exec(ctx, completeSQL, ids); err != nil {
							return err
						}
						if _, err := tx.Exec(ctx, logSQL, ids, "step.completed"); err != nil {
							return err
						}
						_, err := tx.Exec(ctx, logSQL, ids, "task.completed")
						return err
					})
				}
				if err != nil {
					failed.Store(&err)
					return
				}
				if len(ids) == 0 {
					time.Sleep(time.Millisecond)
				}
				done.Add(int64(len(ids)))
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return Figure{}, fmt.Errorf("model: %w", *err)
	}
	work := time.Since(start)
	f := Figure{System: "one-row model", Units: n, Insert: insert, Work: work,
		PerSec: float64(n) / work.Seconds(), InsertPS: float64(n) / insert.Seconds()}
	m.stop(&f)
	return f, nil
}
