package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/internal/store"
)

// A guarded write that does not change the rows it expects aborts its
// transaction on the server, even when COMMIT is in the same batch: the
// writes before it are rolled back and the caller gets a conflict.
func TestGuardedWriteAbortsCommitInSameBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openWithTemplate(t)
	res, err := s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
		Context: json.RawMessage(`{}`), Steps: []store.StepSpec{{Name: "a", Handler: "h", MaxAttempts: 1, Timeout: time.Second}},
		Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Task.ID
	send := func(want int) error {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		tx := &pipeTx{conn: conn.Conn()}
		defer func() { _ = tx.Rollback(ctx) }()
		b := &pgx.Batch{}
		b.Queue("UPDATE tasks SET name = 'changed' WHERE id = $1", id)
		queueGuarded(b, "UPDATE tasks SET updated_at = updated_at WHERE id = ANY($1)", []any{[]string{id, "missing"}}, want, "test guard")
		return guardConflict(tx.commitWith(ctx, b))
	}
	if err := send(2); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a guard expecting 2 rows of 1: %v, want a conflict", err)
	}
	if task, err := s.TaskGet(ctx, id); err != nil || task.Name != "x" {
		t.Fatalf("after the failed guard: %+v, %v; the write before it was committed", task, err)
	}
	if err := send(1); err != nil {
		t.Fatalf("a guard that holds: %v", err)
	}
	if task, err := s.TaskGet(ctx, id); err != nil || task.Name != "changed" {
		t.Fatalf("after the guard held: %+v, %v; want the write committed", task, err)
	}
}
