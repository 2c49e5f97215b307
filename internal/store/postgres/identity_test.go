package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
	"github.com/tasker-go/tasker/internal/store/storetest"
)

// The store works as well on a schema whose unique constraint on
// identity_key is replaced with a partial unique index (no entry for the
// tasks without an identity key), which a later migration may do: the
// task creations of this build must keep working during a rolling upgrade
// to it.
func TestConformanceWithPartialIdentityIndex(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, func(t *testing.T) store.Store {
		t.Helper()
		ctx := context.Background()
		url := pgtest.URL(t)
		schema := pgtest.Schema(t, url)
		s, err := postgres.Open(ctx, url, postgres.Options{Schema: schema, MaxConns: 8})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		tasks := pgx.Identifier{schema, "tasks"}.Sanitize()
		for _, q := range []string{
			"CREATE UNIQUE INDEX tasks_identity ON " + tasks + " (identity_key) WHERE identity_key IS NOT NULL",
			"ALTER TABLE " + tasks + " DROP CONSTRAINT tasks_identity_key_key",
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		return s
	})
}
