package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

// The benchmarks below measure the store's hot paths without the engine,
// on the PostgreSQL of TASKER_TEST_POSTGRES_URL, in a fresh schema:
//
//	go test -bench . -run '^$' ./internal/store/postgres/
//
// See docs/performance.md.

// BenchmarkChainStep is the cost of one step of a linear chain: its
// completion, which releases the next step and claims it in the same
// transaction. This is the per-step overhead the chain scenario measures
// end to end.
func BenchmarkChainStep(b *testing.B) {
	ctx := context.Background()
	url := pgtest.URL(b)
	s, err := postgres.Open(ctx, url, postgres.Options{Schema: pgtest.Schema(b, url)})
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(func() { s.Close() })
	tp, err := s.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: "bench", Namespace: "bench", Name: "bench",
		Version: "1.0.0", Definition: json.RawMessage(`{"id":"bench"}`), Now: time.Now()})
	if err != nil {
		b.Fatalf("register template: %v", err)
	}
	const length = 100
	specs := make([]store.StepSpec, length)
	for i := range specs {
		specs[i] = store.StepSpec{Name: fmt.Sprintf("s%03d", i), Handler: "noop", MaxAttempts: 3, Timeout: time.Minute}
		if i > 0 {
			specs[i].Parents = []int{i - 1}
		}
	}
	claim := func() *store.StepClaimParams {
		return &store.StepClaimParams{Worker: "bench", LeaseToken: 7, LeaseTTL: time.Minute, Limit: 1, Now: time.Now()}
	}
	var cur *store.ClaimedStep
	b.ResetTimer()
	for i := range b.N {
		if i%length == 0 {
			b.StopTimer()
			if _, err := s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: tp.ID, Namespace: tp.Namespace, Name: tp.Name,
				Version: tp.Version, Context: json.RawMessage(`{}`), Steps: specs, Now: time.Now()}); err != nil {
				b.Fatalf("create: %v", err)
			}
			res, err := s.StepClaim(ctx, claim())
			if err != nil || len(res.Steps) != 1 {
				b.Fatalf("claim the first step: %v, %v", res, err)
			}
			cur = res.Steps[0]
			b.StartTimer()
		}
		st := cur.Step
		res, err := s.StepCompleteMany(ctx, &store.StepCompleteManyParams{Worker: "bench", Now: time.Now(), Claim: claim(),
			Outcomes: []store.StepOutcome{{StepID: st.ID, LeaseToken: st.LeaseToken, Attempt: st.Attempts, Kind: store.OutcomeComplete,
				Result: json.RawMessage(`{}`)}}})
		if err != nil || len(res.Stale) != 0 {
			b.Fatalf("complete %s: %v, %v", st.Name, res, err)
		}
		if (i+1)%length != 0 {
			if len(res.Claimed) != 1 {
				b.Fatalf("completing %s claimed %d steps, want its child", st.Name, len(res.Claimed))
			}
			cur = res.Claimed[0]
		}
	}
}
