package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

// Transactions return in any order; the hook sees them in cursor (commit)
// order, each only once the transactions in flight when it returned have
// returned too.
func TestCommitOrderAnnouncesInCursorOrder(t *testing.T) {
	var o commitOrder
	var got []int64
	hook := recordingHook(&got)
	announced := func(tk *commitTicket) bool {
		select {
		case <-tk.announced:
			return true
		default:
			return false
		}
	}
	expect := func(want ...int64) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("announced %v, want %v", got, want)
		}
	}

	// The later commit returns first: it waits for the one still in flight.
	a, b := o.begin(), o.begin()
	o.end(b, committed(5), hook)
	expect()
	if announced(b) {
		t.Fatal("announced before a transaction in flight returned")
	}
	o.end(a, committed(3), hook)
	expect(3, 5)
	if !announced(a) || !announced(b) {
		t.Fatal("tickets not released")
	}
	o.wait(context.Background(), b)

	// Alone, a commit is announced at once.
	got = nil
	c := o.begin()
	o.end(c, committed(10), hook)
	expect(10)

	// A failed transaction announces nothing and holds nothing up.
	got = nil
	d, e := o.begin(), o.begin()
	o.end(e, committed(12), hook)
	o.end(d, nil, hook)
	expect(12)
	if !announced(d) {
		t.Fatal("a failed transaction's waiter is not released")
	}

	// A transaction that began after another returned does not hold it up,
	// and one returned earlier with a larger cursor waits behind a smaller
	// one that is itself waiting.
	got = nil
	f, g := o.begin(), o.begin()
	o.end(f, committed(20), hook) // g in flight: waits
	h := o.begin()
	o.end(g, committed(18), hook) // h in flight: waits, and so does 20
	expect()
	o.end(h, committed(30), hook)
	expect(18, 20, 30)

	// A waiter whose context ends stops waiting; its hook still runs in turn.
	got = nil
	i, j := o.begin(), o.begin()
	o.end(j, committed(41), hook)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o.wait(ctx, j)
	o.end(i, committed(40), hook)
	if fmt.Sprint(got) != "[40 41]" {
		t.Fatalf("announced %v, want [40 41]", got)
	}
}

// Under concurrency, with commits ordered like the log's advisory lock
// orders them and answers arriving in any order, every commit is announced
// once, in cursor order, and every waiter returns.
func TestCommitOrderUnderConcurrency(t *testing.T) {
	var o commitOrder
	var mu sync.Mutex
	var got []int64
	hook := func() func(*store.ChangeResult) {
		return func(r *store.ChangeResult) {
			mu.Lock()
			got = append(got, r.Events[0].Cursor)
			mu.Unlock()
		}
	}
	var server sync.Mutex // the advisory lock: cursors in commit order
	var next int64
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range each {
				tk := o.begin()
				time.Sleep(time.Duration(rng.IntN(50)) * time.Microsecond)
				if i%17 == 0 { // a failed commit
					o.end(tk, nil, hook)
					continue
				}
				server.Lock()
				next += 2
				c := newChange(time.Now())
				c.events = []*store.Event{{Cursor: next - 1}, {Cursor: next}}
				server.Unlock()
				// The answer travels back, slower or faster.
				time.Sleep(time.Duration(rng.IntN(100)) * time.Microsecond)
				o.end(tk, c, hook)
				o.wait(context.Background(), tk)
			}
		})
	}
	wg.Wait()
	wantN := 0
	for i := range each {
		if i%17 != 0 {
			wantN += workers
		}
	}
	if len(got) != wantN || !slices.IsSorted(got) {
		t.Fatalf("announced %d commits (want %d), sorted %v", len(got), wantN, slices.IsSorted(got))
	}
	if len(o.pending) != 0 || len(o.inflight) != 0 {
		t.Fatalf("left %d pending, %d in flight", len(o.pending), len(o.inflight))
	}
}

// A hook that panics releases its own waiter, and the next commit's end
// announces what is left.
func TestCommitOrderSurvivesAPanickingHook(t *testing.T) {
	var o commitOrder
	var got []int64
	hook := func() func(*store.ChangeResult) {
		return func(r *store.ChangeResult) {
			if r.Events[0].Cursor == 1 {
				panic("hook failed")
			}
			got = append(got, r.Events[0].Cursor)
		}
	}
	a, b := o.begin(), o.begin()
	o.end(b, committed(2), hook) // waits for a
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the hook's panic did not reach the caller")
			}
		}()
		o.end(a, committed(1), hook)
	}()
	select {
	case <-a.announced:
	default:
		t.Fatal("the panicking hook's waiter is not released")
	}
	c := o.begin()
	o.end(c, committed(3), hook)
	o.wait(context.Background(), b)
	if fmt.Sprint(got) != "[2 3]" {
		t.Fatalf("announced %v after the panic, want [2 3]", got)
	}
}

// waitPending waits for the announcement of the commits that returned
// before it was called and are still waiting for their turn, and no longer.
func TestCommitOrderWaitPending(t *testing.T) {
	var o commitOrder
	var got []int64
	hook := recordingHook(&got)
	o.waitPending(context.Background()) // nothing pending: returns at once

	// b returned first and waits for a, still in flight.
	a, b := o.begin(), o.begin()
	o.end(b, committed(5), hook)
	done := make(chan struct{})
	go func() {
		o.waitPending(context.Background())
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("waitPending returned while a commit that returned was not announced")
	case <-time.After(50 * time.Millisecond):
	}
	o.end(a, committed(3), hook)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("waitPending did not return once the pending commit was announced")
	}
	if !slices.Equal(got, []int64{3, 5}) {
		t.Fatalf("announced %v, want [3 5]", got)
	}

	// A transaction still in flight (not returned) is not waited for, and
	// a done context ends the wait.
	c := o.begin()
	o.waitPending(context.Background())
	d := o.begin()
	o.end(d, committed(9), hook)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o.waitPending(ctx)
	o.end(c, nil, hook)
	if !slices.Equal(got, []int64{3, 5, 9}) {
		t.Fatalf("announced %v, want [3 5 9]", got)
	}
}

// recordingHook returns a commit hook that appends the first cursor of
// every change it announces to got.
func recordingHook(got *[]int64) func() func(*store.ChangeResult) {
	return func() func(*store.ChangeResult) {
		return func(r *store.ChangeResult) { *got = append(*got, r.Events[0].Cursor) }
	}
}

// committed is a committed change whose log entries have cursors cursor
// and cursor+1.
func committed(cursor int64) *change {
	c := newChange(time.Now())
	c.events = []*store.Event{{Cursor: cursor}, {Cursor: cursor + 1}}
	return c
}
