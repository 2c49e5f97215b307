package postgres

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

// openWithTemplate opens a store on a fresh schema, closed when the test
// ends, with a template "t" (namespace "n", name "x", version 1.0.0).
func openWithTemplate(t *testing.T) *Store {
	t.Helper()
	url := pgtest.URL(t)
	ctx := context.Background()
	s, err := Open(ctx, url, Options{Schema: pgtest.Schema(t, url)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
		Definition: json.RawMessage(`{}`), Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return s
}
