package sqlite

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

// Retention deletes a finished task's log entries, and only that task's:
// the listing by task reads through the tasks table and would not show
// entries left behind, so this reads the log table itself.
func TestRetentionDeletesTheTaskLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tp := openWithTemplate(t, "retention")
	now := time.Now()
	create := func() string {
		t.Helper()
		res, err := s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: tp.ID, Namespace: tp.Namespace, Name: tp.Name,
			Version: tp.Version, Context: json.RawMessage(`{}`), Now: now,
			Steps: []store.StepSpec{{Name: "work", Handler: "noop", MaxAttempts: 1, Timeout: time.Minute}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Task.ID
	}
	done, kept := create(), create()
	claimed, err := s.StepClaim(ctx, &store.StepClaimParams{Worker: "w", LeaseToken: 1, Limit: 1, TaskIDs: []string{done},
		Now: now, LeaseTTL: time.Minute})
	if err != nil || len(claimed.Steps) != 1 {
		t.Fatalf("claim: %v", err)
	}
	cs := claimed.Steps[0]
	if _, err := s.StepCompleteMany(ctx, &store.StepCompleteManyParams{Worker: "w", Now: now, Outcomes: []store.StepOutcome{{
		StepID: cs.Step.ID, LeaseToken: cs.Step.LeaseToken, Attempt: cs.Step.Attempts, Kind: store.OutcomeComplete}}}); err != nil {
		t.Fatal(err)
	}
	entries := func(id string) int {
		t.Helper()
		var n int
		if err := s.rdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM events WHERE task_id = ?", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	keptBefore := entries(kept)
	if entries(done) == 0 || keptBefore == 0 {
		t.Fatalf("no log entries to delete: %d, %d", entries(done), keptBefore)
	}
	n, err := s.TaskDeleteFinished(ctx, &store.TaskDeleteFinishedParams{Before: now.Add(time.Hour)})
	if err != nil || n != 1 {
		t.Fatalf("deleted %d tasks (%v), want the finished one", n, err)
	}
	if left := entries(done); left != 0 {
		t.Errorf("%d log entries of the deleted task remain", left)
	}
	if after := entries(kept); after != keptBefore {
		t.Errorf("the unfinished task has %d log entries after the deletion, %d before", after, keptBefore)
	}
}
