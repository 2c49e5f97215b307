// Package eventbustest helps tests observe events on an eventbus.Bus without
// sleeping.
package eventbustest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/tasker-go/tasker/internal/eventbus"
)

// maxShown is how many recorded events a failure message lists.
const maxShown = 20

// Recorder records every event of type T published on a bus, in publication
// order. It subscribes with the Block policy, so it never misses an event
// (publishers of T wait while it appends, which is quick). Its methods are
// safe for concurrent use.
type Recorder[T any] struct {
	tb  testing.TB
	sub *eventbus.FuncSubscription[T]

	mu      sync.Mutex
	events  []T
	changed chan struct{} // closed and replaced whenever events grows
}

// NewRecorder subscribes a Recorder to every event of type T that is
// published on bus from now on. The subscription is closed when the test
// ends, and cleanup waits until the recorder has stopped.
func NewRecorder[T any](tb testing.TB, bus *eventbus.Bus) *Recorder[T] {
	tb.Helper()
	r := &Recorder[T]{tb: tb, changed: make(chan struct{})}
	r.sub = eventbus.SubscribeFunc(bus, eventbus.SubscribeOpts[T]{Policy: eventbus.Block}, r.record)
	tb.Cleanup(func() {
		r.sub.Close()
		<-r.sub.Done()
	})
	return r
}

// record is the subscription's callback.
func (r *Recorder[T]) record(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, v)
	close(r.changed)
	r.changed = make(chan struct{})
}

// snapshot returns a copy of the events so far and a channel that is closed
// when another event is recorded.
func (r *Recorder[T]) snapshot() ([]T, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events), r.changed
}

// All returns a copy of the events recorded so far, in publication order.
func (r *Recorder[T]) All() []T {
	events, _ := r.snapshot()
	return events
}

// WaitFor waits until cond, called with a copy of the events recorded so far,
// returns true, and returns the events it last passed to cond. cond is called
// once at the start and again after each new event, on the caller's
// goroutine. If ctx is done first, or the recorder's subscription is closed
// (for example by Bus.Close) before cond holds, WaitFor fails the test with
// tb.Fatalf, so it must be called from the test's goroutine.
func (r *Recorder[T]) WaitFor(ctx context.Context, cond func([]T) bool) []T {
	r.tb.Helper()
	for {
		events, changed := r.snapshot()
		if cond(events) {
			return events
		}
		select {
		case <-changed:
		case <-r.sub.Done():
			// Everything delivered is recorded now; look one last time.
			if events = r.All(); cond(events) {
				return events
			}
			r.tb.Fatalf("eventbustest: %s recorder closed before the condition held; %s", typeName[T](), describe(events))
			return nil
		case <-ctx.Done():
			r.tb.Fatalf("eventbustest: waiting for %s events: %v; %s", typeName[T](), context.Cause(ctx), describe(r.All()))
			return nil
		}
	}
}

// typeName returns the name of T for messages.
func typeName[T any]() string {
	return reflect.TypeFor[T]().String()
}

// describe summarizes recorded events for a failure message.
func describe[T any](events []T) string {
	if len(events) > maxShown {
		return fmt.Sprintf("recorded %d events, the first %d: %+v", len(events), maxShown, events[:maxShown])
	}
	return fmt.Sprintf("recorded %d events: %+v", len(events), events)
}
