package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"strings"
	"sync/atomic"
)

// SQLite spends more time parsing and planning a statement than running
// the small ones the store sends, and database/sql prepares every
// statement it is given anew. The connections below keep what they
// prepared, so the store's statements are parsed once per connection.

// maxCachedStmts bounds the prepared statements a connection keeps (the
// store builds some statements with a varying number of placeholders).
const maxCachedStmts = 256

// connector opens SQLite connections that keep their prepared statements.
type connector struct {
	dsn string
	drv driver.Driver
	// statements, when set, counts the statements the connections run
	// (BEGIN and COMMIT included), for benchmarks.
	statements *atomic.Int64
}

// Connect opens a connection.
func (c *connector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	n := c.statements
	if n == nil {
		n = &atomic.Int64{}
	}
	return &cachingConn{Conn: conn, stmts: map[string]*cachedStmt{}, statements: n}, nil
}

// Driver returns the SQLite driver.
func (c *connector) Driver() driver.Driver { return c.drv }

// cachingConn is a driver connection that runs statements through
// prepared statements it keeps. A statement that is in use (its rows are
// open) is not shared: a second use meanwhile is prepared on its own.
type cachingConn struct {
	driver.Conn
	stmts      map[string]*cachedStmt
	order      []string
	statements *atomic.Int64
}

type cachedStmt struct {
	st   driver.Stmt
	busy bool
}

var (
	_ driver.ExecerContext      = (*cachingConn)(nil)
	_ driver.QueryerContext     = (*cachingConn)(nil)
	_ driver.ConnBeginTx        = (*cachingConn)(nil)
	_ driver.ConnPrepareContext = (*cachingConn)(nil)
	_ driver.Pinger             = (*cachingConn)(nil)
	_ driver.SessionResetter    = (*cachingConn)(nil)
	_ driver.Validator          = (*cachingConn)(nil)
)

// stmt returns the kept statement for query, preparing it if needed, or
// nil if it is in use.
func (c *cachingConn) stmt(ctx context.Context, query string) (*cachedStmt, error) {
	if cs, ok := c.stmts[query]; ok {
		if cs.busy {
			return nil, nil
		}
		return cs, nil
	}
	c.evict(maxCachedStmts - 1)
	st, err := c.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	cs := &cachedStmt{st: st}
	c.stmts[query] = cs
	c.order = append(c.order, query)
	return cs, nil
}

// evict closes the oldest kept statements that are not in use while
// there are more than keep.
func (c *cachingConn) evict(keep int) {
	for i := 0; len(c.stmts) > keep && i < len(c.order); {
		q := c.order[i]
		if cs := c.stmts[q]; cs.busy {
			i++
			continue
		}
		_ = c.stmts[q].st.Close()
		delete(c.stmts, q)
		c.order = append(c.order[:i], c.order[i+1:]...)
	}
}

// ExecContext runs a statement through its kept prepared statement, and
// a script of several statements (migrations) through the connection
// itself: a prepared statement is its script's first statement alone in
// one of the drivers.
func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.statements.Add(1)
	if isScript(query) {
		return c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
	}
	cs, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		return c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
	}
	return cs.st.(driver.StmtExecContext).ExecContext(ctx, args)
}

// isScript reports whether query holds more than one statement: text
// other than white space after a semicolon. (None of the store's own
// statements has a semicolon in a literal.)
func isScript(query string) bool {
	i := strings.IndexByte(query, ';')
	return i >= 0 && strings.TrimSpace(query[i+1:]) != ""
}

// QueryContext runs a query through its kept prepared statement, which
// stays in use until the rows are closed.
func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.statements.Add(1)
	cs, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		return c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
	}
	rows, err := cs.st.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	cs.busy = true
	return &cachedRows{Rows: rows, cs: cs}, nil
}

// PrepareContext prepares a statement the caller owns.
func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

// BeginTx begins a transaction.
func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.statements.Add(1)
	tx, err := c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return countedTx{Tx: tx, statements: c.statements}, nil
}

// countedTx counts its COMMIT or ROLLBACK.
type countedTx struct {
	driver.Tx
	statements *atomic.Int64
}

func (t countedTx) Commit() error {
	t.statements.Add(1)
	return t.Tx.Commit()
}

func (t countedTx) Rollback() error {
	t.statements.Add(1)
	return t.Tx.Rollback()
}

// Ping checks the connection, if the driver's connection can; database/sql
// treats a connection without Ping as alive.
func (c *cachingConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// ResetSession prepares the connection for reuse, if the driver's
// connection needs it.
func (c *cachingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// IsValid reports whether the connection can be reused; without the
// driver's answer it can.
func (c *cachingConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// Close closes the kept statements and the connection.
func (c *cachingConn) Close() error {
	var errs []error
	for _, cs := range c.stmts {
		errs = append(errs, cs.st.Close())
	}
	c.stmts, c.order = nil, nil
	return errors.Join(append(errs, c.Conn.Close())...)
}

// cachedRows are the rows of a kept statement; closing them frees it.
type cachedRows struct {
	driver.Rows
	cs *cachedStmt
}

func (r *cachedRows) Close() error {
	r.cs.busy = false
	return r.Rows.Close()
}
