package engine

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/handler"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/sqlite"
	"github.com/tasker-go/tasker/internal/template"
)

// A renewal that races with a completion reports the completed step's
// lease as lost: the store released it when the outcome committed. The
// attempt has left the engine's flight by then, so it must not be counted
// or logged as a lost lease; a step whose lease was really taken away
// while its handler runs still is.
func TestRenewalAfterCompletionIsNoLostLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tmpl, err := template.Parse("t.yaml", []byte("namespace: e\nname: race\nversion: 1.0.0\nsteps:\n  - {name: a, handler: noop}\n"), template.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	def, err := tmpl.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := st.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: tmpl.Digest(), Namespace: tmpl.Namespace,
		Name: tmpl.Name, Version: tmpl.Version, Definition: def, Now: now}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := st.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: tmpl.Digest(), Namespace: tmpl.Namespace,
			Name: tmpl.Name, Version: tmpl.Version, Context: []byte(`{}`),
			Steps: []store.StepSpec{{Name: "a", Handler: "noop", MaxAttempts: 1, Timeout: time.Minute}}, Now: now}); err != nil {
			t.Fatal(err)
		}
	}
	noop := handler.Func(func(context.Context, *handler.Input) (any, error) { return nil, nil })
	e := New(st, nil, Config{WorkerID: "w-test/1/a", Handlers: map[string]handler.Handler{"noop": noop}})
	claimed, err := st.StepClaim(ctx, &store.StepClaimParams{Worker: e.cfg.WorkerID, LeaseToken: 7, Limit: 2, Now: now, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed.Steps) != 2 {
		t.Fatalf("claimed %d steps, want 2", len(claimed.Steps))
	}
	cancelled := make([]bool, 2)
	var attempts []*attempt
	for i, cs := range claimed.Steps {
		a := &attempt{cs: cs, leaseUntil: cs.Step.LeaseExpiresAt, cancel: func() { cancelled[i] = true }}
		attempts = append(attempts, a)
		e.inflight[a] = struct{}{}
	}
	snapAttempts, snapLeases := e.leaseSnapshot()

	// The first attempt's handler finishes and its outcome commits before
	// the renewal reaches the store.
	done := attempts[0]
	delete(e.inflight, done)
	if _, err := st.StepCompleteMany(ctx, &store.StepCompleteManyParams{Worker: e.cfg.WorkerID, Now: now, Outcomes: []store.StepOutcome{{
		StepID: done.cs.Step.ID, LeaseToken: done.cs.Step.LeaseToken, Attempt: done.cs.Step.Attempts, Kind: store.OutcomeComplete, Result: []byte(`null`)}}}); err != nil {
		t.Fatal(err)
	}
	// The second one's lease is taken away while its handler runs.
	if res, err := st.StepRescue(ctx, &store.StepRescueParams{Now: now.Add(2 * time.Minute)}); err != nil || len(res.Events) == 0 {
		t.Fatalf("rescue: %+v, %v", res, err)
	}

	e.renewLeases(ctx, snapAttempts, snapLeases)
	if cancelled[0] {
		t.Error("the finished attempt was cancelled as if its lease were lost")
	}
	if !cancelled[1] {
		t.Error("the attempt whose lease was rescued was not cancelled")
	}
	if n := e.stats.leasesLost.Load(); n != 1 {
		t.Errorf("%d lost leases counted, want 1 (only the rescued step)", n)
	}
}
