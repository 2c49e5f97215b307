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
// in the completing one). Each of workers claims up to batch units per
// transaction and completes them in a second one, one statement per round
// trip, on a connection of its own: 2 workers of 16 is the shape of
// Tasker's engine (a dispatcher's claims and a completer's batches, each
// about 16 steps, two transactions in flight). It bounds what a one-row hot
// path could reach with a full audit trail, against River's figure of the
// same run.
//
// Without product, the row and the log are indexed as a queue needs (the
// lean model): an integer key, the pending units, the log by unit. With
// product, they are indexed as Tasker's task and log tables are (text ids
// in creation order, the task listings by creation time, state, namespace
// and name, the identity key, the finished tasks, a claim index by run time
// and one of running leases; the log by task and by time), and the
// transitions write what Tasker's do (a lease's expiry, the run time
// cleared, the result): the one-row model as the product would have to
// store it, not only as a queue would.
func runModel(ctx context.Context, db string, n, workers, batch int, product bool) (Figure, error) {
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
	m := leanModel(schema)
	if product {
		m = productModel(schema)
	}
	for _, q := range m.schema {
		if _, err := pool.Exec(ctx, q); err != nil {
			return Figure{}, fmt.Errorf("model schema: %w", err)
		}
	}
	start := time.Now()
	if _, err := pool.Exec(ctx, m.insert, n); err != nil {
		return Figure{}, fmt.Errorf("model insert: %w", err)
	}
	insert := time.Since(start)
	claimSQL, completeSQL, logSQL := m.claim, m.complete, m.log
	var done atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start = time.Now()
	meter := startMeter()
	for w := range workers {
		wg.Go(func() {
			for done.Load() < int64(n) && failed.Load() == nil {
				var ids []string
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					rows, _ := tx.Query(ctx, claimSQL, batch, "worker", int64(w+1))
					var err error
					if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || len(ids) == 0 {
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
	f := Figure{System: m.name, Units: n, Insert: insert, Work: work,
		PerSec: float64(n) / work.Seconds(), InsertPS: float64(n) / insert.Seconds()}
	meter.stop(&f)
	return f, nil
}

// model is one variant of the one-row model: its tables, its insert of n
// units ($1), and its claim (up to $1 units for worker $2 under lease $3,
// returning their ids as text), completion (of the ids $1) and log entries
// (one per id of $1, named $2).
type model struct {
	name                         string
	schema                       []string
	insert, claim, complete, log string
}

// leanModel is the one-row model indexed as a queue needs.
func leanModel(schema string) model {
	return model{
		name: "one-row model",
		schema: []string{
			"CREATE SCHEMA " + schema,
			`CREATE TABLE ` + schema + `.units (id bigserial PRIMARY KEY, state text NOT NULL, attempt int NOT NULL DEFAULT 0,
				context jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now(), started_at timestamptz,
				finished_at timestamptz, lease_owner text, lease_token bigint)`,
			`CREATE INDEX ON ` + schema + `.units (id) WHERE state = 'pending'`,
			`CREATE TABLE ` + schema + `.log (cursor bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, unit_id bigint NOT NULL,
				name text NOT NULL, data jsonb, occurred_at timestamptz NOT NULL)`,
			`CREATE INDEX ON ` + schema + `.log (unit_id, cursor)`,
		},
		insert: `INSERT INTO ` + schema + `.units (state) SELECT 'pending' FROM generate_series(1, $1)`,
		claim: `UPDATE ` + schema + `.units SET state = 'in_progress', attempt = attempt + 1, started_at = now(),
			lease_owner = $2, lease_token = $3
			WHERE id IN (SELECT id FROM ` + schema + `.units WHERE state = 'pending' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
			RETURNING id::text`,
		complete: `UPDATE ` + schema + `.units SET state = 'complete', finished_at = now() WHERE id = ANY($1::bigint[]) AND state = 'in_progress'`,
		log: `INSERT INTO ` + schema + `.log (unit_id, name, data, occurred_at)
			SELECT id::bigint, $2, '{"worker":"w","attempt":1}', now() FROM unnest($1::text[]) id`,
	}
}

// productModel is the one-row model indexed as Tasker's tables are.
func productModel(schema string) model {
	return model{
		name: "one-row model, product's indexes",
		schema: []string{
			"CREATE SCHEMA " + schema,
			`CREATE TABLE ` + schema + `.units (id text PRIMARY KEY, namespace text NOT NULL, name text NOT NULL,
				version text NOT NULL, state text NOT NULL, identity_key text UNIQUE, attempt int NOT NULL DEFAULT 0,
				seq int NOT NULL DEFAULT 0, context jsonb NOT NULL DEFAULT '{}', results jsonb, run_at timestamptz,
				lease_owner text, lease_token bigint, lease_expires_at timestamptz,
				created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, started_at timestamptz, finished_at timestamptz)`,
			`CREATE INDEX ON ` + schema + `.units (created_at DESC, id DESC)`,
			`CREATE INDEX ON ` + schema + `.units (state, created_at DESC, id DESC)`,
			`CREATE INDEX ON ` + schema + `.units (namespace, created_at DESC, id DESC)`,
			`CREATE INDEX ON ` + schema + `.units (namespace, name, created_at DESC, id DESC)`,
			`CREATE INDEX ON ` + schema + `.units (finished_at) WHERE state IN ('complete', 'cancelled', 'resolved_manually')`,
			`CREATE INDEX ON ` + schema + `.units (run_at) WHERE run_at IS NOT NULL`,
			`CREATE INDEX ON ` + schema + `.units (lease_expires_at) WHERE state = 'in_progress'`,
			`CREATE TABLE ` + schema + `.log (cursor bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, task_id text NOT NULL,
				step_id text, name text NOT NULL, seq int, from_state text, to_state text, data jsonb, occurred_at timestamptz NOT NULL)`,
			`CREATE INDEX ON ` + schema + `.log (task_id, cursor)`,
			`CREATE INDEX ON ` + schema + `.log (occurred_at)`,
		},
		// Ids in creation order, about as long as a UUID's text, and times
		// a microsecond apart, as the creations of a busy system are (rows
		// of one time would share their index entries' posting lists,
		// which claims then walk from the start).
		insert: `INSERT INTO ` + schema + `.units (id, namespace, name, version, state, run_at, created_at, updated_at)
			SELECT to_char(now(), 'YYYYMMDDHH24MISSUS') || '-' || lpad(i::text, 15, '0'), 'default', 'noop', '1.0.0', 'pending',
				t, t, t FROM generate_series(1, $1) i, LATERAL (SELECT now() - interval '1 hour' + i * interval '1 microsecond') AS x(t)`,
		claim: `UPDATE ` + schema + `.units SET state = 'in_progress', attempt = attempt + 1, seq = seq + 1, run_at = NULL,
			started_at = now(), updated_at = now(), lease_owner = $2, lease_token = $3, lease_expires_at = now() + interval '30 seconds'
			WHERE id IN (SELECT id FROM ` + schema + `.units WHERE run_at IS NOT NULL AND run_at <= now() ORDER BY run_at
				LIMIT $1 FOR UPDATE SKIP LOCKED)
			RETURNING id`,
		complete: `UPDATE ` + schema + `.units SET state = 'complete', seq = seq + 1, results = 'null', finished_at = now(),
			updated_at = now(), lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
			WHERE id = ANY($1::text[]) AND state || '' = 'in_progress'`, // by the key, not the state's index
		log: `INSERT INTO ` + schema + `.log (task_id, step_id, name, seq, from_state, to_state, data, occurred_at)
			SELECT id, id || '-s', $2, 1, 'pending', 'in_progress', '{"worker":"w","attempt":1,"lease_token":1}', now()
			FROM unnest($1::text[]) id`,
	}
}
