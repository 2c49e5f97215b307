package postgres

import (
	"context"
	"fmt"
	"slices"
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
	hook := func() func(*store.ChangeResult) {
		return func(r *store.ChangeResult) { got = append(got, r.Events[0].Cursor) }
	}
	committed := func(cursor int64) *change {
		c := newChange(time.Now())
		c.events = []*store.Event{{Cursor: cursor}, {Cursor: cursor + 1}}
		return c
	}
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
