// Package postgres is the PostgreSQL implementation of the storage seam,
// for production and for many worker processes on many machines: claims
// with FOR UPDATE SKIP LOCKED, leases with fencing tokens, a durable event
// log whose cursors follow commit order, and LISTEN/NOTIFY wake-ups.
//
// # Locking
//
// A transaction that changes a task's counters locks the task rows first,
// in id order, then the step rows it changes, in id order. Claims only take
// free rows (SKIP LOCKED) of ready steps, which no completion touches, so
// transactions never wait on each other in a cycle. Writers of the event log
// take a transaction-level advisory lock right before appending, held until
// commit: cursors are handed out in commit order, so a reader that has seen
// cursor C will never later find a smaller one.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/tasker-go/tasker/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options configure Open. The zero value is usable.
type Options struct {
	// Schema holds Tasker's tables; it is created if missing. Default "tasker".
	Schema string
	// Logger receives the store's logs. Default: discard.
	Logger *slog.Logger
	// DisableListen turns LISTEN/NOTIFY wake-ups off, for connection
	// poolers in transaction mode (which do not keep LISTEN sessions);
	// workers then rely on polling alone.
	DisableListen bool
	// MaxConns caps the connection pool. Default: pgx's default (the
	// greater of 4 and the number of CPUs), or pool_max_conns in the URL.
	MaxConns int32
	// SkipMigrate opens the store without applying migrations.
	SkipMigrate bool
}

var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	schema  string
	opts    Options
	log     *slog.Logger
	lockKey int64
	// order calls this process's commit hooks in commit order.
	order   commitOrder
	hook    atomic.Pointer[func(*store.ChangeResult)]
	channel string
	// origin marks this store's notifications, so that its own listener
	// can tell them from other processes' (its commit hook has already
	// announced those changes here).
	origin string
	// unannounced counts commits of this store that failed without telling
	// whether they committed: their own notification, if any, still wakes
	// this process, since the commit hook did not announce them.
	unannounced atomic.Int64
	// statements counts the statements sent (Statements).
	statements *atomic.Int64
	// warm is set by Warm: new connections prepare the hot statements.
	warm *atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (postgres://...), creates the
// schema if needed and applies the embedded migrations.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if opts.Schema == "" {
		opts.Schema = "tasker"
	}
	if !schemaRE.MatchString(opts.Schema) {
		return nil, fmt.Errorf("postgres: schema %q must be lowercase letters, digits and underscores", opts.Schema)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: bad database URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// Without connect_timeout in the URL, a dial to a dead host would
		// wait for the operating system's TCP timeout.
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = opts.Schema
	statements := &atomic.Int64{}
	cfg.ConnConfig.Tracer = statementCounter{n: statements}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	warm := &atomic.Bool{}
	cfg.AfterConnect = afterConnect(warm, opts.Logger)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %w", cfg.ConnConfig.Host, classify(err))
	}
	h := fnv.New64a()
	h.Write([]byte("tasker events " + opts.Schema))
	s := &Store{pool: pool, schema: opts.Schema, opts: opts, log: opts.Logger, lockKey: int64(h.Sum64() >> 1),
		channel: "tasker_ready_" + opts.Schema, origin: uuid.NewString(), statements: statements, warm: warm}
	if !opts.SkipMigrate {
		if err := s.Migrate(ctx); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return s, nil
}

// Migrate creates the schema if needed and applies pending migrations. It
// is safe to run from several processes at once.
func (s *Store) Migrate(ctx context.Context) error {
	// CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the
	// schema exists, so look first: workers may run without it.
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", s.schema).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: look up schema %s: %w", s.schema, classify(err))
	}
	if !exists {
		if _, err := s.pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{s.schema}.Sanitize()); err != nil {
			return fmt.Errorf("postgres: create schema %s: %w", s.schema, err)
		}
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(s.lockKey ^ 0x5a5a5a5a))
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithDisableGlobalRegistry(true),
		goose.WithSessionLocker(locker), goose.WithSlog(s.log))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate schema %s: %w", s.schema, err)
	}
	return nil
}

// MigrationVersion returns the schema's applied migration version and the
// latest one this build knows.
func (s *Store) MigrationVersion(ctx context.Context) (current, latest int64, err error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return 0, 0, err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return 0, 0, err
	}
	return p.GetVersions(ctx)
}

// Schema returns the schema the store uses.
func (s *Store) Schema() string { return s.schema }

// Close closes the connection pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// OnCommit registers the function called after each committed change that
// produced events, in commit order within this process.
func (s *Store) OnCommit(fn func(*store.ChangeResult)) {
	if fn == nil {
		s.hook.Store(nil)
		return
	}
	s.hook.Store(&fn)
}

// txFunc is one operation's work inside a transaction. It records its
// effects in c; the runner appends c's events, commits and announces.
type txFunc func(ctx context.Context, tx pgx.Tx, c *change) error

// maxTxAttempts bounds retries of transactions that hit a deadlock or a
// serialization failure.
const maxTxAttempts = 5

// run executes fn in a transaction, retrying transient conflicts, and
// returns the committed change.
func (s *Store) run(ctx context.Context, now time.Time, fn txFunc) (*change, error) {
	var lastErr error
	for range maxTxAttempts {
		c, err := s.runOnce(ctx, now, fn)
		if err == nil {
			return c, nil
		}
		err = guardConflict(err)
		if !retryable(err) {
			return nil, err
		}
		lastErr = err
	}
	return nil, lastErr
}

func (s *Store) runOnce(ctx context.Context, now time.Time, fn txFunc) (*change, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	// A connection left inside a transaction is destroyed on release.
	defer conn.Release()
	tx := &pipeTx{conn: conn.Conn()}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after commit
	c := newChange(now)
	if err := fn(ctx, tx, c); err != nil {
		return nil, err
	}
	if err := c.settle(ctx, tx); err != nil {
		return nil, err
	}
	if len(c.events) == 0 {
		b, err := c.finish(s)
		if err != nil {
			return nil, err
		}
		if err := s.resolveCommit(ctx, tx, c, tx.commitWith(ctx, b)); err != nil {
			return nil, err
		}
		s.order.waitPending(ctx)
		return c, nil
	}
	// The events go last, under the log's advisory lock, and are announced
	// in commit order.
	b, err := c.finish(s)
	if err != nil {
		return nil, err
	}
	// Every ticket is ended, even if sending the batch panics: a ticket
	// left in flight would hold back the hooks of every later commit.
	t := s.order.begin()
	ended := false
	defer func() {
		if !ended {
			s.order.end(t, nil, s.currentHook)
		}
	}()
	err = s.resolveCommit(ctx, tx, c, tx.commitWith(ctx, b))
	ended = true
	if err != nil {
		if c.notify {
			s.unannounced.Add(1)
		}
		s.order.end(t, nil, s.currentHook)
		return nil, err
	}
	s.order.end(t, c, s.currentHook)
	if !c.announceLater {
		s.order.wait(ctx, t)
	}
	return c, nil
}

// resolveWait bounds how long resolveCommit waits for the server to settle
// a transaction whose commit lost its answer.
const resolveWait = 5 * time.Second

// resolveCommit returns nil if err is the loss of a commit's answer (the
// connection broke after COMMIT was sent) and the transaction committed
// after all, and err otherwise. It asks the server, on another connection,
// for the status of the transaction's id (txid_status), waiting while the
// transaction is still in progress; committed, it reads the cursors of
// c's log entries, whose answer was lost too. Without this a caller would
// take a committed change for a failed one: a claim's steps would wait for
// their lease to expire, a retried creation would create its task twice. A
// transaction whose id is not known (it wrote nothing before its last
// round trip), or whose status cannot be read, keeps its error.
func (s *Store) resolveCommit(ctx context.Context, tx *pipeTx, c *change, err error) error {
	if err == nil || tx.xid == 0 || !commitOutcomeUnknown(err) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveWait)
	defer cancel()
	for {
		var status *string
		qerr := s.pool.QueryRow(ctx, "SELECT txid_status($1)", tx.xid).Scan(&status)
		switch {
		case qerr != nil:
			return errors.Join(err, fmt.Errorf("look up the outcome of transaction %d: %w", tx.xid, qerr))
		case status != nil && *status == "committed":
			s.log.Warn("postgres: the answer to a commit was lost; the transaction committed", slog.Int64("xid", tx.xid),
				slog.String("error", err.Error()))
			if cerr := s.readCursors(ctx, tx.xid, c.events); cerr != nil {
				s.log.Error("postgres: the cursors of a committed change whose answer was lost are not known; its events are published without them",
					slog.Int64("xid", tx.xid), slog.String("error", cerr.Error()))
			}
			return nil
		case status == nil || *status != "in progress":
			return fmt.Errorf("transaction %d was rolled back: %w", tx.xid, err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, fmt.Errorf("transaction %d still in progress: %w", tx.xid, ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readCursors sets the cursors of evs, the log entries of transaction xid,
// from the log: they are its entries of their tasks (events_task), in
// cursor order, which is their order.
func (s *Store) readCursors(ctx context.Context, xid int64, evs []*store.Event) error {
	if len(evs) == 0 {
		return nil
	}
	var taskIDs []string
	seen := map[string]bool{}
	for _, e := range evs {
		if !seen[e.TaskID] {
			seen[e.TaskID] = true
			taskIDs = append(taskIDs, e.TaskID)
		}
	}
	// xmin holds the low 32 bits of the 64-bit transaction id.
	rows, err := s.pool.Query(ctx, "SELECT cursor FROM events WHERE task_id = ANY($1) AND xmin = $2::text::xid ORDER BY cursor",
		taskIDs, strconv.FormatInt(xid&0xffffffff, 10))
	if err != nil {
		return err
	}
	cursors, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	if len(cursors) != len(evs) {
		return fmt.Errorf("found %d log entries of transaction %d, want %d", len(cursors), xid, len(evs))
	}
	for i, e := range evs {
		e.Cursor = cursors[i]
	}
	return nil
}

// commitOutcomeUnknown reports whether a commit that failed with err may
// have committed: the server did not answer (a server's error means the
// transaction failed), and the request may have reached it.
func commitOutcomeUnknown(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) || errors.Is(err, pgx.ErrTxCommitRollback) || errors.Is(err, errPipeTxClosed) {
		return false
	}
	return !pgconn.SafeToRetry(err)
}

// currentHook returns the commit hook, or nil.
func (s *Store) currentHook() func(*store.ChangeResult) {
	if hook := s.hook.Load(); hook != nil {
		return *hook
	}
	return nil
}

// classify marks errors that mean the server cannot be reached now with
// store.ErrUnavailable; errors the server answered (a wrong password, a
// missing database, a missing privilege) stay as they are.
func classify(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "57", "08", "53": // operator intervention (shutdown, starting up), connection exception, resources
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	// No answer from the server: refused, timed out, reset.
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// retryable reports whether a transaction failed on a transient conflict.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return true
		}
	}
	return false
}

func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// nullTime maps the zero time to NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
