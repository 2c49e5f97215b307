package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/sqlite"
	"github.com/tasker-go/tasker/internal/store/storetest"
)

func opener(driver string) func(t *testing.T) store.Store {
	return func(t *testing.T) store.Store {
		t.Helper()
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tasker.db"),
			sqlite.Options{Synchronous: "NORMAL", Driver: driver})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if s.Driver() != driver {
			t.Fatalf("opened on driver %q, want %q", s.Driver(), driver)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// The conformance suite runs on each SQLite build this program has: the
// C one is there when the tests are built with cgo.
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, d := range sqlite.Drivers() {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			storetest.Exercise(t, opener(d))
		})
	}
	if len(sqlite.Drivers()) == 1 {
		t.Log("built without cgo: the suite ran on driver go only")
	}
}
