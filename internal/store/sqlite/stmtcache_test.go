package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"modernc.org/sqlite"
)

// The kept statements must behave like fresh ones: a query nested in the
// rows of the same query, more distinct statements than are kept, and
// scripts of several statements.
func TestCachedStatements(t *testing.T) {
	ctx := context.Background()
	db := sql.OpenDB(&connector{dsn: "file:" + filepath.Join(t.TempDir(), "c.db"), drv: &sqlite.Driver{}})
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (x INTEGER); CREATE TABLE u (y INTEGER)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('t', 'u')").Scan(&n); err != nil || n != 2 {
		t.Fatalf("a script of two statements created %d tables (%v)", n, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (?)", i); err != nil {
			t.Fatal(err)
		}
	}
	const q = "SELECT x FROM t ORDER BY x"
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var outer, inner []int
	for rows.Next() {
		var x int
		if err := rows.Scan(&x); err != nil {
			t.Fatal(err)
		}
		outer = append(outer, x)
		if x == 1 {
			// The same statement while its rows are open.
			in, err := tx.QueryContext(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for in.Next() {
				var y int
				if err := in.Scan(&y); err != nil {
					t.Fatal(err)
				}
				inner = append(inner, y)
			}
			in.Close()
		}
	}
	rows.Close()
	if fmt.Sprint(outer) != "[0 1 2]" || fmt.Sprint(inner) != "[0 1 2]" {
		t.Fatalf("outer %v, inner %v; want [0 1 2] both", outer, inner)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// More distinct statements than a connection keeps, each run twice.
	for round := range 2 {
		for i := range maxCachedStmts + 20 {
			var got int
			if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT %d + x FROM t WHERE x = ?", i), 2).Scan(&got); err != nil || got != i+2 {
				t.Fatalf("round %d statement %d: %d, %v", round, i, got, err)
			}
		}
	}
}

// The writer keeps statement journals (one per savepoint of a batch) in
// memory; the readers keep SQLite's default.
func TestWriterTempStoreInMemory(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "w.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var w, r int
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA temp_store").Scan(&w); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA temp_store").Scan(&r); err != nil {
		t.Fatal(err)
	}
	if w != 2 || r != 0 {
		t.Fatalf("temp_store: writer %d, readers %d; want 2 (MEMORY) and 0 (DEFAULT)", w, r)
	}
}

// bareConn is a driver connection with none of the optional interfaces.
type bareConn struct{}

func (bareConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not supported") }
func (bareConn) Close() error                        { return nil }
func (bareConn) Begin() (driver.Tx, error)           { return nil, errors.New("not supported") }

// The connection wrapper answers for a driver connection that cannot
// ping, reset or validate itself the way database/sql does for such a
// connection, instead of failing a type assertion.
func TestCachingConnWithoutOptionalInterfaces(t *testing.T) {
	t.Parallel()
	c := &cachingConn{Conn: bareConn{}, stmts: map[string]*cachedStmt{}}
	if err := c.Ping(context.Background()); err != nil {
		t.Errorf("Ping = %v, want nil", err)
	}
	if err := c.ResetSession(context.Background()); err != nil {
		t.Errorf("ResetSession = %v, want nil", err)
	}
	if !c.IsValid() {
		t.Error("IsValid = false, want true")
	}
}
