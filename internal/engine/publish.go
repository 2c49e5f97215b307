package engine

import (
	"context"
	"sync"
	"time"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

// publisher delivers events to the bus in commit order. The store announces
// every committed change on its commit path (OnCommit); announcements and
// observations are queued here without blocking, and one goroutine
// publishes them in order, so a slow subscriber with the Block policy slows
// publication, never the store.
type publisher struct {
	mu     sync.Mutex
	queue  []publication
	signal chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

type publication struct {
	change   *store.ChangeResult
	observed []event.Event
	// flushed, when set, marks a flush: it is closed once everything
	// queued before it is published.
	flushed chan struct{}
}

func newPublisher() *publisher {
	return &publisher{signal: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (p *publisher) push(pub publication) {
	p.mu.Lock()
	p.queue = append(p.queue, pub)
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

func (p *publisher) take() []publication {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queue
	p.queue = nil
	return q
}

// flushWait bounds how long Stop waits for the events of committed changes
// to be published: a subscriber with the Block policy that stopped reading
// would otherwise hold Stop forever.
const flushWait = 10 * time.Second

// flush returns true once everything queued before it was called has been
// published (handed to the bus: with the Block policy, queued in every
// subscription), and false when ctx is done first or the publisher has
// stopped.
func (p *publisher) flush(ctx context.Context) bool {
	done := make(chan struct{})
	p.push(publication{flushed: done})
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	case <-p.done:
		return false
	}
}

// run publishes until stop is closed, then drains what is queued.
func (e *Engine) runPublisher() {
	p := e.pub
	defer close(p.done)
	ctx := context.Background()
	for {
		select {
		case <-p.signal:
		case <-p.stop:
			e.publishAll(ctx, p.take())
			return
		}
		e.publishAll(ctx, p.take())
	}
}

// publishAll publishes queued publications in order and releases the
// flushes among them.
func (e *Engine) publishAll(ctx context.Context, pubs []publication) {
	for _, pub := range pubs {
		if pub.flushed != nil {
			close(pub.flushed)
			continue
		}
		e.publishChange(ctx, pub.change, pub.observed)
	}
}

// announce is the store's commit hook: it queues the change for
// publication, counts finalizations and wakes the dispatcher when steps
// became ready that the change did not claim itself. It never blocks.
func (e *Engine) announce(res *store.ChangeResult) {
	e.stats.finalized.Add(int64(len(res.Finalized)))
	for _, ev := range res.Events {
		if ev.Name == event.StepCancelled && ev.From == string(lifecycle.StepInProgress) {
			e.interrupt(ev.StepID)
		}
	}
	e.pub.push(publication{change: res})
	ready := 0
	for _, r := range res.Ready {
		ready += len(r.Steps)
	}
	// Steps the change claimed itself need no claim from the dispatcher.
	if ready > res.ClaimedReady {
		e.Wake()
	}
}

// observe queues observability events behind the changes announced so far.
func (e *Engine) observe(evs []event.Event) {
	if len(evs) > 0 {
		e.pub.push(publication{observed: evs})
	}
}

// interrupt cancels the handlers running a step that was cancelled.
func (e *Engine) interrupt(stepID string) {
	e.mu.Lock()
	var hit []*attempt
	for a := range e.inflight {
		if a.cs.Step.ID == stepID {
			hit = append(hit, a)
		}
	}
	e.mu.Unlock()
	for _, a := range hit {
		if a.cancel != nil {
			a.cancel()
		}
	}
}
