package sqlite

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/pressly/goose/v3"
)

// Migration 00008 moves every task's context to task_contexts and back on
// the way down, losing none.
func TestTaskContextsMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	provider := func(db *sql.DB) *goose.Provider {
		sub, err := fs.Sub(migrations, "migrations")
		if err != nil {
			t.Fatal(err)
		}
		p, err := goose.NewProvider(goose.DialectSQLite3, db, sub, goose.WithDisableGlobalRegistry(true))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider(db).UpTo(ctx, 7); err != nil {
		t.Fatal(err)
	}
	contexts := map[string]string{"t1": `{"order":42}`, "t2": `{}`}
	if _, err := db.ExecContext(ctx, `INSERT INTO templates (id, namespace, name, version, definition, registered_at)
		VALUES ('tp', 'ns', 'n', '1.0.0', '{}', 1)`); err != nil {
		t.Fatal(err)
	}
	for id, c := range contexts {
		if _, err := db.ExecContext(ctx, `INSERT INTO tasks (id, template_id, namespace, name, version, state, context,
			steps_total, created_at, updated_at) VALUES (?, 'tp', 'ns', 'n', '1.0.0', 'complete', ?, 0, 1, 1)`, id, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range contexts {
		task, err := s.TaskGet(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if string(task.Context) != want {
			t.Fatalf("task %s: context %s after the migration, want %s", id, task.Context, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := provider(db).DownTo(ctx, 7); err != nil {
		t.Fatal(err)
	}
	for id, want := range contexts {
		var got string
		if err := db.QueryRowContext(ctx, "SELECT context FROM tasks WHERE id = ?", id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("task %s: context %s after migrating down, want %s", id, got, want)
		}
	}
}
