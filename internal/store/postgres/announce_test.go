package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/store"
)

// A claim returns as soon as it committed, while a transaction that
// committed before it still waits for its answer; the commit hook then
// announces both in commit order once that answer arrives. (Every other
// write waits for the announcement of the commits before its own.)
func TestClaimReturnsBeforeEarlierCommitsAreAnnounced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	proxy, s, create := proxiedStore(t, `{}`)
	var (
		mu        sync.Mutex
		announced []string // the first event of every change announced
	)
	s.OnCommit(func(res *store.ChangeResult) {
		mu.Lock()
		defer mu.Unlock()
		announced = append(announced, string(res.Events[0].Name))
	})
	now := time.Now().UTC().Truncate(time.Millisecond)
	if _, err := create(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	announced = nil
	mu.Unlock()

	proxy.holdNext.Store(true)
	created := make(chan error, 1)
	go func() {
		_, err := create()
		created <- err
	}()
	select {
	case <-proxy.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the creation's commit never reached the proxy")
	}
	claimed := make(chan error, 1)
	go func() {
		res, err := s.StepClaim(ctx, &store.StepClaimParams{Worker: "w", LeaseToken: 1, LeaseTTL: time.Minute, Limit: 1, Now: now})
		if err == nil && len(res.Steps) != 1 {
			t.Errorf("claimed %d steps, want 1", len(res.Steps))
		}
		claimed <- err
	}()
	select {
	case err := <-claimed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(proxy.release)
		t.Fatal("the claim waited for the answer to an earlier commit")
	}
	mu.Lock()
	early := append([]string(nil), announced...)
	mu.Unlock()
	if len(early) != 0 {
		t.Errorf("announced %v while the creation's answer was held; want nothing before it", early)
	}
	close(proxy.release)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{string(event.TaskInitializeRequested), string(event.StepExecutionRequested)}
	if len(announced) != 2 || announced[0] != want[0] || announced[1] != want[1] {
		t.Errorf("announced %v, want the creation, then the claim: %v", announced, want)
	}
}
