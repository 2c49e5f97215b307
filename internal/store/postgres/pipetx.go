package postgres

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pipeTx is a transaction that saves the round trips of BEGIN and COMMIT:
// BEGIN goes out with the transaction's first batch and COMMIT with its
// last (commitWith). A statement sent on its own still begins the
// transaction first. It implements pgx.Tx for the store's transaction
// functions; nested transactions and large objects are not supported.
type pipeTx struct {
	conn   *pgx.Conn
	begun  bool
	closed bool
	// xid is the transaction's id once a batch has seen one assigned (0
	// before): with it, a commit whose answer was lost can be looked up
	// (resolveCommit).
	xid int64
}

// keepXID records the transaction id a statement of tx returned
// (txid_current()) on a batch that was sent before it was known; such a
// statement spares the batches after it the question for the id.
func keepXID(tx pgx.Tx, xid int64) {
	if t, ok := tx.(*pipeTx); ok && xid != 0 {
		t.xid = xid
	}
}

var _ pgx.Tx = (*pipeTx)(nil)

var errPipeTxClosed = errors.New("transaction already committed or rolled back")

// begin sends BEGIN unless the transaction has begun.
func (t *pipeTx) begin(ctx context.Context) error {
	if t.closed {
		return errPipeTxClosed
	}
	if t.begun {
		return nil
	}
	if _, err := t.conn.Exec(ctx, "BEGIN"); err != nil {
		return err
	}
	t.begun = true
	return nil
}

// Begin is not supported: the store's transactions are not nested.
func (t *pipeTx) Begin(context.Context) (pgx.Tx, error) {
	return nil, errors.New("nested transactions are not supported")
}

// Commit commits what has been sent.
func (t *pipeTx) Commit(ctx context.Context) error {
	if t.closed {
		return errPipeTxClosed
	}
	t.closed = true
	if !t.begun {
		return nil
	}
	tag, err := t.conn.Exec(ctx, "COMMIT")
	if err != nil {
		return err
	}
	return commitTag(tag)
}

// commitTag turns the answer ROLLBACK to a COMMIT (the transaction had
// failed) into an error.
func commitTag(tag pgconn.CommandTag) error {
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// commitWith sends b followed by COMMIT in one round trip. If a statement
// of b fails, the server skips the rest, COMMIT included, and the
// transaction is rolled back by Rollback.
func (t *pipeTx) commitWith(ctx context.Context, b *pgx.Batch) error {
	if b.Len() == 0 {
		return t.Commit(ctx)
	}
	if t.closed {
		return errPipeTxClosed
	}
	b.Queue("COMMIT").Exec(commitTag)
	if err := t.send(ctx, b).Close(); err != nil {
		return err
	}
	t.closed = true
	return nil
}

// Rollback rolls back a transaction that has not been committed.
func (t *pipeTx) Rollback(ctx context.Context) error {
	if t.closed {
		return errPipeTxClosed
	}
	t.closed = true
	if !t.begun {
		return nil
	}
	_, err := t.conn.Exec(ctx, "ROLLBACK")
	return err
}

// SendBatch sends b, with BEGIN in front if the transaction has not begun
// and, after b, a question for the transaction's id if it has one by then
// (a transaction gets one at its first write), which the transaction
// keeps (xid). A batch with a statement that returns the id itself
// (txid_current(), passed to keepXID) is sent without the question.
func (t *pipeTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.closed {
		return errBatch{errPipeTxClosed}
	}
	if t.xid == 0 && !asksXID(b) {
		b.Queue(xidSQL).QueryRow(func(row pgx.Row) error {
			var xid *int64
			if err := row.Scan(&xid); err != nil {
				return err
			}
			if xid != nil {
				t.xid = *xid
			}
			return nil
		})
	}
	return t.send(ctx, b)
}

// asksXID reports whether a statement of b returns the transaction id.
func asksXID(b *pgx.Batch) bool {
	for _, q := range b.QueuedQueries {
		if strings.Contains(q.SQL, "txid_current()") {
			return true
		}
	}
	return false
}

// send sends b, with BEGIN in front if the transaction has not begun.
func (t *pipeTx) send(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.closed {
		return errBatch{errPipeTxClosed}
	}
	if !t.begun {
		b.QueuedQueries = append([]*pgx.QueuedQuery{{SQL: "BEGIN"}}, b.QueuedQueries...)
		t.begun = true
	}
	return t.conn.SendBatch(ctx, b)
}

// CopyFrom copies rows in, inside the transaction.
func (t *pipeTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.begin(ctx); err != nil {
		return 0, err
	}
	return t.conn.CopyFrom(ctx, table, columns, src)
}

// LargeObjects is not supported.
func (t *pipeTx) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} }

// Prepare prepares a statement on the transaction's connection.
func (t *pipeTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.conn.Prepare(ctx, name, sql)
}

// Exec runs a statement inside the transaction.
func (t *pipeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.begin(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.conn.Exec(ctx, sql, args...)
}

// Query runs a query inside the transaction.
func (t *pipeTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.begin(ctx); err != nil {
		return nil, err
	}
	return t.conn.Query(ctx, sql, args...)
}

// QueryRow runs a query for one row inside the transaction.
func (t *pipeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.begin(ctx); err != nil {
		return errRow{err}
	}
	return t.conn.QueryRow(ctx, sql, args...)
}

// Conn returns the transaction's connection.
func (t *pipeTx) Conn() *pgx.Conn { return t.conn }

// errBatch is the result of a batch that could not be sent.
type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }

// errRow is a row that reports an error.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
