package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

// A commit whose answer is lost after the server committed is looked up
// by the store (txid_status) and reported as the success it was: a claim
// returns the steps it leased, instead of an error that would leave them
// leased to nobody until the lease expires, and a creation returns its
// task, instead of an error whose retry would create a second one.
func TestLostCommitAnswerIsResolved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	proxy, s, create := proxiedStore(t, `{"n":1}`)
	now := time.Now().UTC().Truncate(time.Millisecond)
	if _, err := create(); err != nil {
		t.Fatal(err)
	}

	proxy.armed.Store(true)
	res, err := s.StepClaim(ctx, &store.StepClaimParams{Worker: "w1", LeaseToken: 77, LeaseTTL: time.Minute, Limit: 1, Now: now})
	if n := proxy.fired.Load(); n != 1 {
		t.Fatalf("the proxy dropped %d answers, want 1", n)
	}
	if err != nil {
		t.Fatalf("claim whose commit answer was lost: %v", err)
	}
	if len(res.Steps) != 1 || string(res.Steps[0].Context) != `{"n":1}` {
		t.Fatalf("claimed %+v, want the task's one step with its context", res.Steps)
	}
	// The cursors of the claim's log entries came with the lost answer;
	// the store reads them back.
	history, err := s.EventList(ctx, &store.EventListParams{TaskID: res.Steps[0].Step.TaskID})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) == 0 || len(history) < len(res.Events) {
		t.Fatalf("the claim reported %d events, the log holds %d", len(res.Events), len(history))
	}
	tail := history[len(history)-len(res.Events):]
	for i, e := range res.Events {
		if e.Cursor == 0 || e.Cursor != tail[i].Cursor || e.Name != tail[i].Name {
			t.Fatalf("event %d of the claim: %s at cursor %d; the log has %s at %d", i, e.Name, e.Cursor, tail[i].Name, tail[i].Cursor)
		}
	}
	st, err := s.StepGet(ctx, res.Steps[0].Step.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != lifecycle.StepInProgress || st.LeaseToken != 77 || st.LeaseOwner != "w1" {
		t.Fatalf("the claimed step is %s, leased to %q with token %d; want in_progress, w1, 77", st.State, st.LeaseOwner, st.LeaseToken)
	}

	proxy.armed.Store(true)
	created, err := create()
	if n := proxy.fired.Load(); n != 2 {
		t.Fatalf("the proxy dropped %d answers, want 2", n)
	}
	if err != nil {
		t.Fatalf("creation whose commit answer was lost: %v", err)
	}
	for _, e := range created.Events {
		if e.Cursor == 0 {
			t.Fatalf("event %s of the creation has no cursor", e.Name)
		}
	}
	got, err := s.TaskGet(ctx, created.Task.ID)
	if err != nil {
		t.Fatalf("the created task: %v", err)
	}
	if got.StepsTotal != 1 {
		t.Fatalf("the created task has %d steps, want 1", got.StepsTotal)
	}
	tasks, err := s.TaskList(ctx, &store.TaskListParams{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 2 {
		t.Fatalf("%d tasks stored, want 2", len(tasks))
	}
}
