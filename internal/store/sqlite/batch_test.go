package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

// Claims and completions of every batch size from 1 to maxBatch share a
// few statement texts (batchRows): the writer keeps a bounded number of
// prepared statements instead of one per size and statement, and the
// padding changes no outcome: every claim takes exactly what it asked
// for, every completion finalizes its tasks, and each task's log holds
// its three work-phase entries once.
func TestBatchesOfEverySizeShareStatements(t *testing.T) {
	ctx := context.Background()
	s, tp := openWithTemplate(t, "batch")
	now := time.Now()
	const maxBatch = 40
	total := maxBatch * (maxBatch + 1) / 2
	for range total {
		if _, err := s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: tp.ID, Namespace: tp.Namespace, Name: tp.Name,
			Version: tp.Version, Context: json.RawMessage(`{}`), Now: now,
			Steps: []store.StepSpec{{Name: "work", Handler: "noop", MaxAttempts: 1, Timeout: time.Minute}}}); err != nil {
			t.Fatal(err)
		}
	}
	before := keptStatements(ctx, t, s)
	for n := 1; n <= maxBatch; n++ {
		claimed, err := s.StepClaim(ctx, &store.StepClaimParams{Worker: "w", LeaseToken: int64(n), Limit: n,
			Now: time.Now(), LeaseTTL: time.Minute})
		if err != nil {
			t.Fatalf("claim %d: %v", n, err)
		}
		if len(claimed.Steps) != n {
			t.Fatalf("a claim of %d took %d steps", n, len(claimed.Steps))
		}
		outs := make([]store.StepOutcome, n)
		for i, cs := range claimed.Steps {
			outs[i] = store.StepOutcome{StepID: cs.Step.ID, LeaseToken: cs.Step.LeaseToken, Attempt: cs.Step.Attempts,
				Kind: store.OutcomeComplete, Result: json.RawMessage(`{"n":1}`)}
		}
		res, err := s.StepCompleteMany(ctx, &store.StepCompleteManyParams{Worker: "w", Now: time.Now(), Outcomes: outs})
		if err != nil {
			t.Fatalf("complete %d: %v", n, err)
		}
		if len(res.Stale) != 0 || len(res.Finalized) != n {
			t.Fatalf("a completion of %d: %d stale, %d tasks finalized", n, len(res.Stale), len(res.Finalized))
		}
	}
	var open, entries int
	if err := s.rdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM tasks WHERE state <> 'complete'").Scan(&open); err != nil || open != 0 {
		t.Fatalf("%d tasks not complete (%v)", open, err)
	}
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE name IN
		('step.execution_requested', 'step.completed', 'task.completed')`).Scan(&entries); err != nil || entries != 3*total {
		t.Fatalf("%d work-phase log entries for %d tasks, want %d (%v)", entries, total, 3*total, err)
	}
	var dup int
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT task_id, name FROM events
		GROUP BY task_id, name, step_id HAVING COUNT(*) > 1)`).Scan(&dup); err != nil || dup != 0 {
		t.Fatalf("%d log entries written twice (%v)", dup, err)
	}

	// The writer's kept statements: one per statement and size would be
	// over 200 new ones here (six statements of the claim and completion,
	// in 40 sizes each); rounded sizes keep them to a few per statement.
	after := keptStatements(ctx, t, s)
	t.Logf("the writer keeps %d statements before the batches and %d after", before, after)
	if after-before > 100 {
		t.Errorf("the batches of 1 to %d left %d more statements kept on the writer", maxBatch, after-before)
	}
}

// keptStatements returns the number of statements the writer's connection
// keeps prepared.
func keptStatements(ctx context.Context, t *testing.T, s *Store) int {
	t.Helper()
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n := 0
	if err := conn.Raw(func(dc any) error {
		c, ok := dc.(*cachingConn)
		if !ok {
			return errors.New("the writer's connection keeps no statements")
		}
		n = len(c.stmts)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// The padding helpers: sizes only grow, IN lists repeat their last id
// (and an empty list stays empty), VALUES lists add NULL rows.
func TestBatchPadding(t *testing.T) {
	t.Parallel()
	for n := 1; n <= 600; n++ {
		if r := batchRows(n); r < n || r > n*3/2+1 {
			t.Fatalf("batchRows(%d) = %d", n, r)
		}
	}
	if in, args := inList(nil); in != "" || args != nil {
		t.Errorf("inList(nil) = %q, %v", in, args)
	}
	in, args := inList([]string{"a", "b", "c", "d", "e"})
	if in != placeholders(6) || len(args) != 6 || args[4] != "e" || args[5] != "e" {
		t.Errorf("inList of 5 = %q, %v", in, args)
	}
	rows, vals := paddedValueRows(5, 2, []any{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	if rows != valueRows(6, 2) || len(vals) != 12 || vals[10] != nil || vals[11] != nil {
		t.Errorf("paddedValueRows(5, 2) = %q, %v", rows, vals)
	}
}

// A claim and a completion larger than one statement can carry: SQLite
// binds at most 32,766 values to a statement, and an engine with a large
// concurrency claims Concurrency + Prefetch steps at once. Every list of
// ids is written in pieces (maxIDsPerStatement), so a claim of 33,000
// steps takes them all and one completion of them all finalizes the task.
func TestBatchesBeyondOneStatement(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a task of 33,000 steps")
	}
	t.Parallel()
	// The bound is each SQLite build's own: checked on every driver.
	for _, d := range Drivers() {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			testBatchesBeyondOneStatement(t, d)
		})
	}
}

func testBatchesBeyondOneStatement(t *testing.T, driver string) {
	ctx := context.Background()
	s, tp := openWithTemplateOn(t, "big", driver)
	now := time.Now()
	const n = 33000
	specs := make([]store.StepSpec, n)
	for i := range specs {
		specs[i] = store.StepSpec{Name: fmt.Sprintf("s%d", i), Handler: "noop", MaxAttempts: 1, Timeout: time.Minute}
	}
	task, err := s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: tp.ID, Namespace: tp.Namespace, Name: tp.Name,
		Version: tp.Version, Context: json.RawMessage(`{}`), Now: now, Steps: specs})
	if err != nil {
		t.Fatal(err)
	}
	claimed, err := s.StepClaim(ctx, &store.StepClaimParams{Worker: "w", LeaseToken: 1, Limit: n + 100,
		Now: time.Now(), LeaseTTL: time.Minute})
	if err != nil {
		t.Fatalf("claim of %d: %v", n, err)
	}
	if len(claimed.Steps) != n {
		t.Fatalf("a claim of up to %d took %d of %d ready steps", n+100, len(claimed.Steps), n)
	}
	outs := make([]store.StepOutcome, n)
	seen := make(map[string]bool, n)
	for i, cs := range claimed.Steps {
		if seen[cs.Step.ID] {
			t.Fatalf("step %s claimed twice", cs.Step.ID)
		}
		seen[cs.Step.ID] = true
		outs[i] = store.StepOutcome{StepID: cs.Step.ID, LeaseToken: cs.Step.LeaseToken, Attempt: cs.Step.Attempts,
			Kind: store.OutcomeComplete, Result: json.RawMessage(`{}`)}
	}
	res, err := s.StepCompleteMany(ctx, &store.StepCompleteManyParams{Worker: "w", Now: time.Now(), Outcomes: outs})
	if err != nil {
		t.Fatalf("completion of %d: %v", n, err)
	}
	if len(res.Stale) != 0 || len(res.Finalized) != 1 || res.Finalized[0].TaskID != task.Task.ID {
		t.Fatalf("completion of %d: %d stale, finalized %v", n, len(res.Stale), res.Finalized)
	}
	var done, entries int
	if err := s.rdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM steps WHERE task_id = ? AND state = 'complete'", task.Task.ID).Scan(&done); err != nil || done != n {
		t.Fatalf("%d of %d steps complete (%v)", done, n, err)
	}
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE task_id = ? AND name IN
		('step.execution_requested', 'step.completed')`, task.Task.ID).Scan(&entries); err != nil || entries != 2*n {
		t.Fatalf("%d claim and completion log entries, want %d (%v)", entries, 2*n, err)
	}
}

// openWithTemplate opens a store on a new file, closed when the test
// ends, and registers a template named name.
func openWithTemplate(t *testing.T, name string) (*Store, *store.Template) {
	t.Helper()
	return openWithTemplateOn(t, name, "")
}

// openWithTemplateOn is openWithTemplate on driver ("" for the default).
func openWithTemplateOn(t *testing.T, name, driver string) (*Store, *store.Template) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), name+".db"), Options{Driver: driver})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tp, err := s.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: name, Namespace: name, Name: name,
		Version: "1.0.0", Definition: json.RawMessage(`{"id":"` + name + `"}`), Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return s, tp
}
