package postgres

import (
	"context"
	"sync"

	"github.com/tasker-go/tasker/internal/store"
)

// commitOrder calls the commit hook for this process's transactions that
// wrote log entries in the order they committed, without making them wait
// for each other to send their last batch: their task and step writes run
// on the server side by side, and only the log's advisory lock (taken just
// before the log entries, held until COMMIT) orders them.
//
// Under that lock, cursors are assigned in commit order, so the hook runs
// in cursor order. A committed transaction T waits for the ones of this
// process that were still in flight when its COMMIT returned: any
// transaction that committed before T (a smaller cursor) had sent its
// COMMIT by then, so it is either among those or has returned already.
// Among the returned ones, the smallest cursor goes first, once everything
// it waits for has returned.
type commitOrder struct {
	mu       sync.Mutex
	next     uint64
	inflight map[uint64]struct{}
	// pending are committed transactions whose hook has not run, in no
	// particular order.
	pending []*commitTicket
}

// commitTicket is one transaction's place in commitOrder.
type commitTicket struct {
	id     uint64
	cursor int64
	change *change
	// after are the transactions in flight when this one returned.
	after []uint64
	// announced is closed once the hook has run for this transaction.
	announced chan struct{}
}

// begin registers a transaction about to send its COMMIT.
func (o *commitOrder) begin() *commitTicket {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inflight == nil {
		o.inflight = map[uint64]struct{}{}
	}
	o.next++
	t := &commitTicket{id: o.next, announced: make(chan struct{})}
	o.inflight[t.id] = struct{}{}
	return t
}

// end records that t's COMMIT returned (committed or not) and runs hook
// for every committed transaction whose turn has come. c is the committed
// change with its log entries' cursors, or nil when the commit failed.
func (o *commitOrder) end(t *commitTicket, c *change, hook func() func(*store.ChangeResult)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.inflight, t.id)
	if c == nil {
		close(t.announced)
	} else {
		t.change, t.cursor = c, c.events[0].Cursor
		for id := range o.inflight {
			t.after = append(t.after, id)
		}
		o.pending = append(o.pending, t)
	}
	for len(o.pending) > 0 {
		first := 0
		for i, p := range o.pending {
			if p.cursor < o.pending[first].cursor {
				first = i
			}
		}
		p := o.pending[first]
		for _, id := range p.after {
			if _, waiting := o.inflight[id]; waiting {
				return
			}
		}
		o.pending = append(o.pending[:first], o.pending[first+1:]...)
		o.announce(p, hook)
	}
}

// announce runs the hook for p and releases p's waiter, even if the hook
// panics (the panic goes on to the caller; the next end announces the
// rest).
func (o *commitOrder) announce(p *commitTicket, hook func() func(*store.ChangeResult)) {
	defer close(p.announced)
	if h := hook(); h != nil {
		h(p.change.result())
	}
}

// wait returns once the hook has run for t, or when ctx is done: the hook
// then runs later, still in order, possibly after the write has returned.
func (o *commitOrder) wait(ctx context.Context, t *commitTicket) {
	select {
	case <-t.announced:
	case <-ctx.Done():
	}
}

// waitPending returns once the hook has run for every transaction that had
// returned committed but was not announced yet when it was called, or when
// ctx is done. A write without log entries, which takes no turn of its
// own, calls it so that what its caller does next comes after the
// announcement of the claims it may follow (StepClaim returns before its
// turn).
func (o *commitOrder) waitPending(ctx context.Context) {
	o.mu.Lock()
	waits := make([]chan struct{}, len(o.pending))
	for i, p := range o.pending {
		waits[i] = p.announced
	}
	o.mu.Unlock()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return
		}
	}
}
