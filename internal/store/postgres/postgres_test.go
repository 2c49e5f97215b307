package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
	"github.com/tasker-go/tasker/internal/store/storetest"
)

// open opens a store in a fresh schema that is dropped after the test.
func open(t *testing.T) store.Store {
	t.Helper()
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	s, err := postgres.Open(context.Background(), url, postgres.Options{Schema: schema, MaxConns: 8})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, open)
}

// The store works as well over connections that prepare no statements, as
// the operations guide asks for behind a pooler in transaction mode
// (default_query_exec_mode=exec): pgx then encodes every parameter by its
// Go type, without the server's description of the statement.
func TestConformanceWithoutPreparedStatements(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, func(t *testing.T) store.Store {
		t.Helper()
		url := pgtest.URL(t)
		schema := pgtest.Schema(t, url)
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		s, err := postgres.Open(context.Background(), url+sep+"default_query_exec_mode=exec", postgres.Options{Schema: schema, MaxConns: 8})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestBadSchemaName(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	_, err := postgres.Open(context.Background(), url, postgres.Options{Schema: "Robert'); DROP TABLE"})
	if err == nil || !strings.Contains(err.Error(), "schema") {
		t.Fatalf("bad schema accepted: %v", err)
	}
}
