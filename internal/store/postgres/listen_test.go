package postgres

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

// A store's listener wakes its process for the changes of other stores
// (other processes) but not for its own once a commit hook has announced
// them: that second wake-up would only cost an empty claim.
func TestWakeUpsLeaveOutOwnChanges(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	schema := pgtest.Schema(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() *Store {
		s, err := Open(ctx, url, Options{Schema: schema, MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	mine, other := open(), open()
	if _, err := mine.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
		Definition: json.RawMessage(`{}`), Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	create := func(s *Store) {
		t.Helper()
		if _, err := s.TaskCreate(ctx, &store.TaskCreateParams{TemplateID: "t", Namespace: "n", Name: "x", Version: "1.0.0",
			Context: json.RawMessage(`{}`), Steps: []store.StepSpec{{Name: "a", Handler: "h", MaxAttempts: 1, Timeout: time.Second}},
			Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	announced := make(chan int, 16)
	mine.OnCommit(func(res *store.ChangeResult) { announced <- len(res.Ready) })
	wakes := mine.WakeUps(ctx)
	// The listener signals once when it connects (it may have missed
	// notifications before).
	select {
	case <-wakes:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up when the listener connected")
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case <-wakes:
			t.Fatalf("%s woke this store's listener", what)
		case <-time.After(300 * time.Millisecond):
		}
	}
	create(mine)
	if n := <-announced; n != 1 {
		t.Fatalf("the commit hook announced %d ready tasks, want 1", n)
	}
	quiet("this store's own ready step")
	create(other)
	select {
	case <-wakes:
	case <-time.After(10 * time.Second):
		t.Fatal("another store's ready step did not wake this store's listener")
	}

	// After a commit whose outcome was lost, the hook announced nothing:
	// the next notification of this store's own wakes it.
	mine.unannounced.Add(1)
	create(mine)
	<-announced
	select {
	case <-wakes:
	case <-time.After(10 * time.Second):
		t.Fatal("this store's notification after a lost commit answer did not wake its listener")
	}
	quiet("the notification after the lost answer was counted off")
	create(mine)
	<-announced
	quiet("this store's own ready step, once the lost answer was counted off")

	// Without a commit hook nothing here has been told: the listener
	// signals this store's own changes too.
	mine.OnCommit(nil)
	create(mine)
	select {
	case <-wakes:
	case <-time.After(10 * time.Second):
		t.Fatal("this store's ready step did not wake its listener while no commit hook was set")
	}
}
