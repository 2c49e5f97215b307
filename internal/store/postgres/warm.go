package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// hotStatements are the statements of a worker's hot path: transactions,
// claims, completions, the log, creations and lease renewals. Warm
// prepares them on every connection of the pool; pgx then executes them
// by these prepared statements (pgx looks a statement's text up among the
// connection's prepared statements first), not by the ones its statement
// cache would prepare on first use. The guarded writes are listed with the
// number of arguments their callers pass (queueGuarded).
func hotStatements() []string {
	return []string{
		"BEGIN", "COMMIT", xidSQL, indexPlansSQL, lockLogSQL, notifySQL, insertEventsSQL,
		insertTaskSQL, insertStepsSQL, insertEdgesSQL,
		claimSQL, completeSQL, lockTasksSQL, lockStepTasksSQL, lockStepsSQL, renewSQL, failedStepsSQL,
		guardedSQL(countersSQL, 4), guardedSQL(stepWritesSQL, 15), guardedSQL(taskWritesSQL, 8),
	}
}

// warmConns is how many connections Warm opens at most: a worker's own
// loops use about five at once (the dispatcher, the completer, the
// heartbeat, maintenance, LISTEN), and a larger pool (for an API server's
// requests, say) would only start with idle server processes.
const warmConns = 8

// Warm readies the store for a worker. It opens connections up to the
// pool's size or warmConns, whichever is smaller, and prepares the
// statements of the hot path on each; from then on, every connection the
// pool opens prepares them as it opens. Without it, a worker's
// first steps wait for connections to open and, on each, for a new server
// process to parse every statement for the first time (see the
// start-up in docs/performance.md).
//
// With default_query_exec_mode other than cache_statement in the URL (a
// pooler in transaction mode), it only opens the connections.
//
// A command that sends a few statements does not need it. It is safe to
// call while the store is in use: connections in use then are left as
// they are. It waits for connections only as long as ctx allows, and
// reports the connections it could not open or warm; the store works
// without them, as if Warm had not been called.
func (s *Store) Warm(ctx context.Context) error {
	s.warm.Store(true)
	// The idle connections are held while the missing ones open, so that
	// opening does not hand out one of them again.
	idle := s.pool.AcquireAllIdle(ctx)
	defer func() {
		for _, c := range idle {
			c.Release()
		}
	}()
	missing := int(min(s.pool.Config().MaxConns, warmConns) - s.pool.Stat().TotalConns())
	errs := make([]error, len(idle)+max(missing, 0))
	var wg sync.WaitGroup
	for i, c := range idle {
		wg.Go(func() { errs[i] = prepareHot(ctx, c.Conn()) })
	}
	for i := range max(missing, 0) {
		// A new connection prepares the statements as it opens
		// (AfterConnect); one another goroutine released meanwhile is
		// prepared here (Prepare skips what a connection has).
		wg.Go(func() {
			c, err := s.pool.Acquire(ctx)
			if err != nil {
				errs[len(idle)+i] = fmt.Errorf("postgres: open a connection: %w", err)
				return
			}
			defer c.Release()
			errs[len(idle)+i] = prepareHot(ctx, c.Conn())
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// prepareHot prepares the hot statements on conn, each named by its text.
// It prepares nothing on a connection configured not to use prepared
// statements (default_query_exec_mode other than cache_statement, as
// behind a pooler in transaction mode): pgx would execute them by name
// there too, on server connections that do not have them.
func prepareHot(ctx context.Context, conn *pgx.Conn) error {
	if conn.Config().DefaultQueryExecMode != pgx.QueryExecModeCacheStatement {
		return nil
	}
	for _, sql := range hotStatements() {
		if _, err := conn.Prepare(ctx, sql, sql); err != nil {
			return fmt.Errorf("postgres: prepare a statement of the hot path: %w", classify(err))
		}
	}
	return nil
}

// afterConnect returns the pool's hook for new connections: it registers
// the store's array types, and once Warm was called (warm), the connection
// prepares the hot statements. A failure to prepare is logged, not
// returned: the connection works without them.
func afterConnect(warm *atomic.Bool, log *slog.Logger) func(context.Context, *pgx.Conn) error {
	return func(ctx context.Context, conn *pgx.Conn) error {
		registerArrays(conn.TypeMap())
		if !warm.Load() {
			return nil
		}
		if err := prepareHot(ctx, conn); err != nil {
			log.WarnContext(ctx, "postgres: a new connection could not prepare the hot path's statements", slog.Any("error", err))
		}
		return nil
	}
}
