package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/engine"
	"github.com/tasker-go/tasker/internal/handler"
	"github.com/tasker-go/tasker/internal/store/sqlite"
)

// warmingStore is the SQLite store with a Warm method, as the PostgreSQL
// store has: it counts the calls and fails them with err.
type warmingStore struct {
	*sqlite.Store
	calls atomic.Int32
	err   error
}

func (s *warmingStore) Warm(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("warm called without a deadline")
	}
	s.calls.Add(1)
	return s.err
}

// Start readies a store that can warm up, once, before it claims; a store
// that fails to warm up is started all the same.
func TestStartWarmsTheStore(t *testing.T) {
	t.Parallel()
	noop := handler.Func(func(context.Context, *handler.Input) (any, error) { return nil, nil })
	for _, fail := range []bool{false, true} {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "t.db"), sqlite.Options{Synchronous: "NORMAL"})
		if err != nil {
			t.Fatal(err)
		}
		ws := &warmingStore{Store: st}
		if fail {
			ws.err = errors.New("no connections today")
		}
		eng := engine.New(ws, nil, engine.Config{Handlers: map[string]handler.Handler{"noop": noop}})
		if err := eng.Start(context.Background()); err != nil {
			t.Fatalf("start (warm fails: %v): %v", fail, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := eng.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		eng.Close(context.Background())
		st.Close()
		if n := ws.calls.Load(); n != 1 {
			t.Errorf("warm fails: %v: Warm called %d times, want once", fail, n)
		}
	}
}
