package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

// The kept statements must behave like fresh ones: a query nested in the
// rows of the same query, more distinct statements than are kept, and
// scripts of several statements.
func TestCachedStatements(t *testing.T) {
	for _, name := range Drivers() {
		t.Run(name, func(t *testing.T) { testCachedStatements(t, name) })
	}
}

func testCachedStatements(t *testing.T, name string) {
	ctx := context.Background()
	d, err := pickDriver(name)
	if err != nil {
		t.Fatal(err)
	}
	drv, dsn := d.open("file:"+filepath.Join(t.TempDir(), "c.db")+"?_busy_timeout=1000", nil)
	db := sql.OpenDB(&connector{dsn: dsn, drv: drv})
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

// Both drivers' connections get the store's settings: WAL, the
// synchronous setting asked for, foreign keys, a busy timeout, readers
// that cannot write, and a writer that keeps statement journals (one per
// savepoint of a batch) in memory while the readers keep SQLite's
// default.
func TestConnectionSettings(t *testing.T) {
	for _, name := range Drivers() {
		for _, sync := range []string{"FULL", "NORMAL"} {
			t.Run(name+"/"+sync, func(t *testing.T) {
				ctx := context.Background()
				s, err := Open(ctx, filepath.Join(t.TempDir(), "w.db"), Options{Driver: name, Synchronous: sync, BusyTimeout: 3 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				wantSync := map[string]int{"FULL": 2, "NORMAL": 1}[sync]
				for _, c := range []struct {
					who       string
					db        *sql.DB
					tempStore int
				}{{"writer", s.wdb, 2}, {"reader", s.rdb, 0}} {
					var mode string
					var tempStore, synchronous, fk, busy int
					for q, dst := range map[string]any{"PRAGMA journal_mode": &mode, "PRAGMA temp_store": &tempStore,
						"PRAGMA synchronous": &synchronous, "PRAGMA foreign_keys": &fk, "PRAGMA busy_timeout": &busy} {
						if err := c.db.QueryRowContext(ctx, q).Scan(dst); err != nil {
							t.Fatalf("%s: %s: %v", c.who, q, err)
						}
					}
					if mode != "wal" || tempStore != c.tempStore || synchronous != wantSync || fk != 1 || busy != 3000 {
						t.Errorf("%s: journal_mode %s, temp_store %d, synchronous %d, foreign_keys %d, busy_timeout %d; want wal, %d, %d, 1, 3000",
							c.who, mode, tempStore, synchronous, fk, busy, c.tempStore, wantSync)
					}
				}
				if _, err := s.rdb.ExecContext(ctx, "CREATE TABLE reader_wrote (x INTEGER)"); err == nil {
					t.Error("a reader created a table")
				}
			})
		}
	}
}

// The driver is the C one when the program has it, and a driver that is
// not there or does not exist is refused by name.
func TestDriverChoice(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "d.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := s.Driver()
	s.Close()
	_, withC := cDriver()
	if want := map[bool]string{true: DriverC, false: DriverGo}[withC]; got != want || DefaultDriver() != want {
		t.Fatalf("default driver %q (DefaultDriver %q), want %q", got, DefaultDriver(), want)
	}
	_, err = Open(ctx, filepath.Join(t.TempDir(), "x.db"), Options{Driver: "oracle"})
	if err == nil || !strings.Contains(err.Error(), `unknown driver "oracle"`) {
		t.Fatalf("driver oracle: %v", err)
	}
	_, err = Open(ctx, filepath.Join(t.TempDir(), "c.db"), Options{Driver: DriverC})
	if withC != (err == nil) {
		t.Fatalf("driver c in a build with cgo %v: %v", withC, err)
	}
	if !withC && !strings.Contains(err.Error(), "built without cgo") {
		t.Fatalf("driver c without cgo: %v", err)
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

// The two drivers share the file format: what one wrote, the other reads,
// and a duplicate is the same conflict on both.
func TestDriversShareFiles(t *testing.T) {
	if len(Drivers()) < 2 {
		t.Skip("built without cgo: only driver go is here")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, name := range []string{DriverGo, DriverC} {
		s, err := Open(ctx, path, Options{Driver: name})
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("tok-%s", name)
		if _, err := s.TokenCreate(ctx, &store.TokenCreateParams{ID: id, Name: name, Role: "admin", Hash: "h-" + name, Now: now}); err != nil {
			t.Fatalf("%s: create: %v", name, err)
		}
		if _, err := s.TokenCreate(ctx, &store.TokenCreateParams{ID: id, Name: name, Role: "admin", Hash: "other-" + name, Now: now}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("%s: a second token %s: %v, want ErrConflict", name, id, err)
		}
		if i == 1 {
			// The C driver reads what the Go one wrote.
			tok, err := s.TokenGetByHash(ctx, "h-go")
			if err != nil || tok.ID != "tok-go" || !tok.CreatedAt.Equal(now) {
				t.Fatalf("c read the go token as %+v, %v", tok, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(ctx, path, Options{Driver: DriverGo})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if tok, err := s.TokenGetByHash(ctx, "h-c"); err != nil || tok.ID != "tok-c" {
		t.Fatalf("go read the c token as %+v, %v", tok, err)
	}
}
