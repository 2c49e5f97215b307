package engine

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/eventbus"
	"github.com/tasker-go/tasker/internal/store/sqlite"
)

// The engine's defaults follow the store. On SQLite, whose writes commit
// one after another, the prefetch is eight times Concurrency, a claim may
// take every step the engine may hold, and a completion claims for every
// free slot; on a store whose transactions run side by side, twice
// Concurrency and Concurrency. Explicit settings win on both.
func TestDefaultsFollowTheStore(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "d.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bus := eventbus.New(eventbus.Config{})
	defer bus.Close()
	for _, tc := range []struct {
		cfg                  Config
		prefetch, claimBatch int
	}{
		{Config{Concurrency: 4}, 32, 36},
		{Config{Concurrency: 4, Prefetch: 5}, 5, 9},
		{Config{Concurrency: 4, Prefetch: -1, ClaimBatch: 3}, 0, 3},
	} {
		e := New(st, bus, tc.cfg)
		if e.cfg.Prefetch != tc.prefetch || e.cfg.ClaimBatch != tc.claimBatch || !e.fillOnCompletion {
			t.Errorf("on SQLite, %+v: prefetch %d, claim batch %d, fill on completion %v; want %d, %d, true",
				tc.cfg, e.cfg.Prefetch, e.cfg.ClaimBatch, e.fillOnCompletion, tc.prefetch, tc.claimBatch)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := e.Close(cctx); err != nil {
			t.Error(err)
		}
		cancel()
	}
	if c := (Config{Concurrency: 4}).withDefaults(false); c.Prefetch != 8 || c.ClaimBatch != 4 {
		t.Errorf("not serial: prefetch %d, claim batch %d; want 8 and 4", c.Prefetch, c.ClaimBatch)
	}
	if c := (Config{Concurrency: 4, Prefetch: 5}).withDefaults(false); c.Prefetch != 5 || c.ClaimBatch != 4 {
		t.Errorf("not serial, prefetch 5: prefetch %d, claim batch %d; want 5 and 4", c.Prefetch, c.ClaimBatch)
	}
}
