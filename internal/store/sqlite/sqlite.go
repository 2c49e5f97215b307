// Package sqlite is the embedded SQLite implementation of the storage seam:
// one database file in WAL mode, one writer goroutine that commits
// concurrent writes together (group commit), and a pool of readers.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/tasker-go/tasker/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options configure Open. The zero value is usable.
type Options struct {
	// Logger receives the store's logs. Default: discard.
	Logger *slog.Logger
	// Synchronous is SQLite's synchronous setting: "FULL" (default; every
	// commit is on disk when it returns) or "NORMAL" (faster; a power loss may
	// drop the last commits, a process crash loses nothing).
	Synchronous string
	// BusyTimeout is how long a write waits for another process holding the
	// database lock. Default 5s.
	BusyTimeout time.Duration
	// MaxBatch caps how many write operations one transaction commits
	// together. Default 256.
	MaxBatch int
	// Readers is the size of the read connection pool. Default 4.
	Readers int
	// Driver is the SQLite build to run on: DriverC (SQLite's C library,
	// in programs built with cgo) or DriverGo (SQLite in Go, in every
	// program). Default: DefaultDriver().
	Driver string
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Synchronous == "" {
		o.Synchronous = "FULL"
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.Readers <= 0 {
		o.Readers = 4
	}
	return o
}

// Store is the SQLite store. It is safe for concurrent use.
type Store struct {
	path string
	opts Options
	drv  sqlDriver
	log  *slog.Logger
	wdb  *sql.DB
	rdb  *sql.DB
	// statements counts the statements run on both pools (Statements).
	statements *atomic.Int64
	writes     chan *writeOp
	stop       chan struct{}
	done       chan struct{}

	closeOnce sync.Once
	hook      atomic.Pointer[func(*store.ChangeResult)]
}

var _ store.Store = (*Store)(nil)

type writeOp struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) (*store.ChangeResult, error)
	done chan error
}

// Open opens (creating if needed) the database file at path and applies the
// embedded migrations.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	switch strings.ToUpper(opts.Synchronous) {
	case "FULL", "NORMAL":
	default:
		return nil, fmt.Errorf("sqlite: synchronous must be FULL or NORMAL, not %q", opts.Synchronous)
	}
	drv, err := pickDriver(opts.Driver)
	if err != nil {
		return nil, err
	}
	if dir := filepath.Dir(path); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("sqlite: directory of %s does not exist", path)
		}
	}
	base := "file:" + (&url.URL{Path: path}).EscapedPath()
	common := fmt.Sprintf("_busy_timeout=%d&_journal_mode=WAL&_foreign_keys=1&_synchronous=%s",
		opts.BusyTimeout.Milliseconds(), strings.ToUpper(opts.Synchronous))
	statements := &atomic.Int64{}
	// The writer keeps its temporary files in memory: a batch runs each
	// operation in a savepoint, and SQLite saves the original of every page
	// a savepoint changes to a statement journal, a temporary file by
	// default (a write system call per page). Those journals are bounded
	// by the pages one batch changes.
	wdrv, wdsn := drv.open(base+"?"+common+"&_txlock=immediate", []string{"temp_store = MEMORY"})
	wdb := sql.OpenDB(&connector{dsn: wdsn, drv: wdrv, statements: statements})
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := wdb.PingContext(ctx); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, wdb, opts.Logger); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: migrate %s: %w", path, err)
	}
	rdrv, rdsn := drv.open(base+"?"+common+"&_query_only=1", nil)
	rdb := sql.OpenDB(&connector{dsn: rdsn, drv: rdrv, statements: statements})
	rdb.SetMaxOpenConns(opts.Readers)
	rdb.SetMaxIdleConns(opts.Readers)
	s := &Store{
		path:       path,
		opts:       opts,
		drv:        drv,
		log:        opts.Logger,
		wdb:        wdb,
		rdb:        rdb,
		statements: statements,
		writes:     make(chan *writeOp, 4*opts.MaxBatch),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	go s.writer()
	opts.Logger.Info("sqlite: database open", "path", path, "driver", drv.name,
		"synchronous", strings.ToUpper(opts.Synchronous))
	return s, nil
}

func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub,
		goose.WithDisableGlobalRegistry(true), goose.WithSlog(log))
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// MigrationVersion returns the database's applied migration version and
// the latest one this build knows.
func (s *Store) MigrationVersion(ctx context.Context) (current, latest int64, err error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return 0, 0, err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.wdb, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return 0, 0, err
	}
	return p.GetVersions(ctx)
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Driver returns the name of the SQLite build the store runs on, DriverC
// or DriverGo.
func (s *Store) Driver() string { return s.drv.name }

// Close stops the writer after the writes already queued and closes the
// database.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		err = errors.Join(s.rdb.Close(), s.wdb.Close())
	})
	return err
}

// Ping checks that the store is open and that a reader answers.
func (s *Store) Ping(ctx context.Context) error {
	select {
	case <-s.stop:
		return store.ErrClosed
	default:
	}
	// Reading the schema reads the database file, not only the connection.
	var one int
	if err := s.rdb.QueryRowContext(ctx, "SELECT 1 FROM sqlite_master LIMIT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// SerialWrites reports that the store's write transactions commit one
// after another, each with its own sync: the engine then prefers fewer,
// larger transactions (it lets a completion claim the slots its outcomes
// free instead of claiming them in a transaction of their own).
func (s *Store) SerialWrites() bool { return true }

// OnCommit registers the function called after each committed change
// that produced events, in commit order, on the writer goroutine.
func (s *Store) OnCommit(fn func(*store.ChangeResult)) {
	if fn == nil {
		s.hook.Store(nil)
		return
	}
	s.hook.Store(&fn)
}

// write runs fn in the writer's transaction and returns once that
// transaction committed (nil) or fn failed or the commit failed.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.writeChange(ctx, func(ctx context.Context, tx *sql.Tx) (*store.ChangeResult, error) {
		return nil, fn(ctx, tx)
	})
}

// writeChange is write for operations whose change is announced: after
// the commit, and before writeChange returns, the change returned by fn is
// handed to the OnCommit hook, in commit order. An operation whose ctx is
// done before its batch begins is skipped and returns ctx.Err(); once it
// has begun it runs to completion whatever happens to ctx, and the caller
// waits for the outcome, so it never has to guess whether it was applied.
func (s *Store) writeChange(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) (*store.ChangeResult, error)) error {
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case <-s.stop:
		return store.ErrClosed
	default:
	}
	select {
	case s.writes <- op:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return store.ErrClosed
	}
	return <-op.done
}

func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*writeOp, 0, s.opts.MaxBatch)
	for {
		select {
		case op := <-s.writes:
			batch = append(batch[:0], op)
		drain:
			for len(batch) < s.opts.MaxBatch {
				select {
				case op := <-s.writes:
					batch = append(batch, op)
				default:
					break drain
				}
			}
			s.commit(batch)
		case <-s.stop:
			for {
				select {
				case op := <-s.writes:
					s.commit([]*writeOp{op})
				default:
					return
				}
			}
		}
	}
}

// commit runs a batch of operations in one transaction. Each operation runs
// inside its own savepoint, so a failing operation is rolled back alone.
func (s *Store) commit(batch []*writeOp) {
	live := batch[:0:0]
	for _, op := range batch {
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			continue
		}
		live = append(live, op)
	}
	if len(live) == 0 {
		return
	}
	bg := context.Background()
	tx, err := s.wdb.BeginTx(bg, nil)
	if err != nil {
		for _, op := range live {
			op.done <- fmt.Errorf("sqlite: begin: %w", err)
		}
		return
	}
	results := make([]error, len(live))
	changes := make([]*store.ChangeResult, len(live))
	single := len(live) == 1
	for i, op := range live {
		ctx := context.WithoutCancel(op.ctx)
		if single {
			changes[i], results[i] = op.fn(ctx, tx)
			continue
		}
		if _, err := tx.ExecContext(bg, "SAVEPOINT op"); err != nil {
			results[i] = fmt.Errorf("sqlite: savepoint: %w", err)
			continue
		}
		var err error
		if changes[i], err = op.fn(ctx, tx); err != nil {
			results[i] = err
			if _, rerr := tx.ExecContext(bg, "ROLLBACK TO op"); rerr != nil {
				results[i] = errors.Join(err, rerr)
			}
		}
		if _, err := tx.ExecContext(bg, "RELEASE op"); err != nil && results[i] == nil {
			results[i] = fmt.Errorf("sqlite: release savepoint: %w", err)
		}
	}
	if single && results[0] != nil {
		_ = tx.Rollback()
		live[0].done <- results[0]
		return
	}
	if err := tx.Commit(); err != nil {
		for _, op := range live {
			op.done <- fmt.Errorf("sqlite: commit: %w", err)
		}
		return
	}
	hook := s.hook.Load()
	for i, op := range live {
		if hook != nil && results[i] == nil && changes[i] != nil && len(changes[i].Events) > 0 {
			(*hook)(changes[i])
		}
		op.done <- results[i]
	}
}

// Time is stored as Unix microseconds.
func us(t time.Time) int64 { return t.UnixMicro() }

func nullUS(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromUS(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullUS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromUS(v.Int64)
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// limitClause returns " LIMIT n". A LIMIT is written into the statement,
// not bound: SQLite (3.54 here) plans with the value bound to a LIMIT
// parameter, and so prepares such a statement again every time that
// parameter is bound; that cost the claim half of its time.
// Statements are kept per text (stmtcache.go), one per limit used.
func limitClause(n int) string { return " LIMIT " + strconv.Itoa(n) }

// batchRows is the number of rows a batch statement is written for when
// it carries n: n rounded up to one of a few sizes (each about 1.5 times
// the last), so that the batches of every size share a handful of
// statement texts, each parsed once and kept (stmtcache.go). With one
// text per size, batches of up to a few hundred rows make more texts than
// the cache keeps, and SQLite parsed the large ones again and again. The
// rows beyond n repeat a value (inList) or are NULLs that match nothing
// (paddedValueRows).
func batchRows(n int) int {
	for _, size := range [...]int{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512} {
		if n <= size {
			return size
		}
	}
	// Only a claim's LIMIT is written for more (id lists are cut at
	// maxIDsPerStatement): a multiple of 256 above 512.
	return (n + 255) / 256 * 256
}

// maxIDsPerStatement is the most ids one statement carries, the largest
// size batchRows rounds to. SQLite binds at most 32,766 values to a
// statement, and a claim or completion can take more steps than that (an
// engine on SQLite claims up to Concurrency + Prefetch at once): longer
// lists are read and written in pieces (idChunks).
const maxIDsPerStatement = 512

// idChunks cuts ids into pieces of at most maxIDsPerStatement.
func idChunks(ids []string) [][]string {
	var out [][]string
	for len(ids) > maxIDsPerStatement {
		out = append(out, ids[:maxIDsPerStatement])
		ids = ids[maxIDsPerStatement:]
	}
	if len(ids) > 0 {
		out = append(out, ids)
	}
	return out
}

// inList returns the placeholders and arguments of "IN (…)" for ids,
// padded to batchRows by repeating the last id, which changes no IN's
// outcome. No ids make an empty list ("IN ()", false in SQLite).
func inList(ids []string) (string, []any) {
	if len(ids) == 0 {
		return "", nil
	}
	n := batchRows(len(ids))
	args := make([]any, n)
	for i := range args {
		args[i] = ids[min(i, len(ids)-1)]
	}
	return placeholders(n), args
}

// paddedValueRows is valueRows for n rows of cols, padded to batchRows
// with rows of NULLs; it appends the padding's arguments to args. A
// statement that joins the rows on their first column (UPDATE … FROM) or
// keeps those whose first column is not NULL skips the padding.
func paddedValueRows(n, cols int, args []any) (string, []any) {
	size := batchRows(n)
	for range (size - n) * cols {
		args = append(args, nil)
	}
	return valueRows(size, cols), args
}

// placeholders returns "?, ?, ?" for n values.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// valueRows returns n rows of cols placeholders, "(?, ?), (?, ?)", for a
// multi-row VALUES list.
func valueRows(n, cols int) string {
	if n <= 0 {
		return ""
	}
	row := "(" + placeholders(cols) + ")"
	return strings.Repeat(row+", ", n-1) + row
}

// Statements returns how many statements the store has run since it was
// opened, BEGIN and COMMIT included.
func (s *Store) Statements() int64 { return s.statements.Load() }
