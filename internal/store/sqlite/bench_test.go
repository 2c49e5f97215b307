package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/sqlite"
)

// The benchmarks below measure the store's hot paths without the engine:
//
//	go test -bench . -run '^$' ./internal/store/sqlite/
//
// Every sub-benchmark runs with synchronous=FULL (the product's default)
// and NORMAL, on a fresh database file. See docs/performance.md.

var benchSync = []string{"FULL", "NORMAL"}

// benchStore opens a fresh store and registers one template.
func benchStore(b *testing.B, synchronous string) (*sqlite.Store, *store.Template) {
	b.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{Synchronous: synchronous})
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(func() { s.Close() })
	tp, err := s.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: "bench", Namespace: "bench", Name: "bench",
		Version: "1.0.0", Definition: json.RawMessage(`{"id":"bench"}`), Now: time.Now()})
	if err != nil {
		b.Fatalf("register template: %v", err)
	}
	return s, tp
}

// chainSpecs returns the steps of a linear chain of n steps.
func chainSpecs(n int) []store.StepSpec {
	specs := make([]store.StepSpec, n)
	for i := range specs {
		specs[i] = store.StepSpec{Name: fmt.Sprintf("s%05d", i), Handler: "noop", MaxAttempts: 3, Timeout: time.Minute}
		if i > 0 {
			specs[i].Parents = []int{i - 1}
		}
	}
	return specs
}

func createParams(tp *store.Template, specs []store.StepSpec) *store.TaskCreateParams {
	return &store.TaskCreateParams{TemplateID: tp.ID, Namespace: tp.Namespace, Name: tp.Name, Version: tp.Version,
		Context: json.RawMessage(`{}`), Steps: specs, Now: time.Now()}
}

// fill creates n single-step tasks from 32 goroutines, so the writer's group
// commit stores them quickly.
func fill(b *testing.B, s *sqlite.Store, tp *store.Template, n int) {
	b.Helper()
	ctx := context.Background()
	specs := chainSpecs(1)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := s.TaskCreate(ctx, createParams(tp, specs)); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatalf("create tasks: %v", *err)
	}
}

// BenchmarkClaimComplete measures the engine's two writes per step at the
// store level: claim a batch of ready single-step tasks under a lease, then
// complete the whole batch in one StepCompleteMany call (which also
// finalizes each task). One op is one step, so ns/op is the cost per step
// at that batch size; claim-ns/step and complete-ns/step split it.
func BenchmarkClaimComplete(b *testing.B) {
	for _, syn := range benchSync {
		for _, batch := range []int{1, 16, 128} {
			b.Run(fmt.Sprintf("sync=%s/batch=%d", syn, batch), func(b *testing.B) {
				benchClaimComplete(b, syn, batch)
			})
		}
	}
}

func benchClaimComplete(b *testing.B, synchronous string, batch int) {
	ctx := context.Background()
	s, tp := benchStore(b, synchronous)
	ready := 0
	var claimTime, completeTime time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		if ready < n {
			b.StopTimer()
			more := max(n, 8*batch, 256)
			fill(b, s, tp, more)
			ready += more
			b.StartTimer()
		}
		t0 := time.Now()
		claimed, err := s.StepClaim(ctx, &store.StepClaimParams{Worker: "bench", LeaseToken: int64(done + 1), Limit: n,
			Now: t0, LeaseTTL: time.Minute})
		if err != nil {
			b.Fatalf("claim: %v", err)
		}
		if len(claimed.Steps) != n {
			b.Fatalf("claimed %d steps, want %d", len(claimed.Steps), n)
		}
		t1 := time.Now()
		outs := make([]store.StepOutcome, n)
		for i, cs := range claimed.Steps {
			outs[i] = store.StepOutcome{StepID: cs.Step.ID, LeaseToken: cs.Step.LeaseToken, Attempt: cs.Step.Attempts,
				Kind: store.OutcomeComplete, Result: json.RawMessage(`null`)}
		}
		res, err := s.StepCompleteMany(ctx, &store.StepCompleteManyParams{Worker: "bench", Now: t1, Outcomes: outs})
		if err != nil {
			b.Fatalf("complete: %v", err)
		}
		if len(res.Stale) != 0 || len(res.Finalized) != n {
			b.Fatalf("complete: %d stale, %d tasks finalized, want 0 and %d", len(res.Stale), len(res.Finalized), n)
		}
		t2 := time.Now()
		claimTime += t1.Sub(t0)
		completeTime += t2.Sub(t1)
		done += n
		ready -= n
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "steps/s")
	b.ReportMetric(float64(claimTime.Nanoseconds())/float64(b.N), "claim-ns/step")
	b.ReportMetric(float64(completeTime.Nanoseconds())/float64(b.N), "complete-ns/step")
}

// BenchmarkTaskCreate measures TaskCreate for single-step tasks and 40-step
// chains: "serial" is one caller (a commit per task), "parallel" is 8
// callers per CPU, whose writes the store's group commit batches. One op is
// one task.
func BenchmarkTaskCreate(b *testing.B) {
	for _, syn := range benchSync {
		for _, steps := range []int{1, 40} {
			for _, mode := range []string{"serial", "parallel"} {
				b.Run(fmt.Sprintf("sync=%s/steps=%d/%s", syn, steps, mode), func(b *testing.B) {
					benchTaskCreate(b, syn, steps, mode == "parallel")
				})
			}
		}
	}
}

func benchTaskCreate(b *testing.B, synchronous string, steps int, parallel bool) {
	ctx := context.Background()
	s, tp := benchStore(b, synchronous)
	specs := chainSpecs(steps)
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.TaskCreate(ctx, createParams(tp, specs)); err != nil {
					b.Errorf("create: %v", err)
					return
				}
			}
		})
	} else {
		for b.Loop() {
			if _, err := s.TaskCreate(ctx, createParams(tp, specs)); err != nil {
				b.Fatalf("create: %v", err)
			}
		}
	}
	b.StopTimer()
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/sec, "tasks/s")
	b.ReportMetric(float64(b.N*steps)/sec, "steps/s")
}
