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

func TestBadSchemaName(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	_, err := postgres.Open(context.Background(), url, postgres.Options{Schema: "Robert'); DROP TABLE"})
	if err == nil || !strings.Contains(err.Error(), "schema") {
		t.Fatalf("bad schema accepted: %v", err)
	}
}
