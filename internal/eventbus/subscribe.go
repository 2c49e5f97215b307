package eventbus

import (
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
)

// Policy says what Publish does when a subscription's queue is full.
type Policy int

const (
	// DropNewest discards the event being published, for the full
	// subscription only, and counts it in the subscription's Dropped.
	// Publish does not wait. Events already queued are kept. DropNewest is
	// the zero value and the default.
	DropNewest Policy = iota

	// Block makes Publish wait until the subscription's queue has room, so
	// the subscription sees every event. While it waits, every other
	// Publish of the same type waits too: use Block for tests and for
	// consumers that must not miss events and are known to keep up.
	Block
)

// String returns the policy's name, such as "DropNewest".
func (p Policy) String() string {
	switch p {
	case DropNewest:
		return "DropNewest"
	case Block:
		return "Block"
	default:
		return "Policy(" + strconv.Itoa(int(p)) + ")"
	}
}

// SubscribeOpts are the optional settings of one subscription to events of
// type T. The zero value is valid.
type SubscribeOpts[T any] struct {
	// Buffer is the capacity, in events, of the subscription's queue.
	// Default (0): the bus's Config.DefaultBuffer, 1024 unless set. Must not
	// be negative.
	Buffer int

	// Policy says what Publish does when the queue is full. Default:
	// DropNewest.
	Policy Policy

	// Filter, if non-nil, selects the events the subscription receives:
	// only events for which it returns true are queued. Events it rejects
	// take no room in the queue and are not counted as dropped.
	//
	// Filter runs on the publisher's goroutine while the bus serializes
	// Publish calls for T, so it must be fast, must not block and must not
	// publish. A panic in Filter is recovered, logged and
	// counted in Panics, and the event is treated as rejected.
	// Default: nil, every event is received.
	Filter func(T) bool

	// Interest, if non-nil, answers cheaply whether the subscription may
	// want an event with a given key (what the key is, such as an event's
	// name, is up to the publishers of T), so that a publisher can skip
	// building events nobody wants: see Interested. It does not select
	// what Publish delivers; Filter does. A panic in Interest counts as
	// interest. Default: nil, interested in every key.
	Interest func(key string) bool
}

// validate reports settings that can only be programming errors.
func (o SubscribeOpts[T]) validate() error {
	if o.Buffer < 0 {
		return fmt.Errorf("eventbus: negative SubscribeOpts.Buffer %d", o.Buffer)
	}
	if o.Policy != DropNewest && o.Policy != Block {
		return fmt.Errorf("eventbus: invalid SubscribeOpts.Policy %v", o.Policy)
	}
	return nil
}

// Subscription receives events of type T on a channel. Create one with
// Subscribe. Its methods are safe for concurrent use.
type Subscription[T any] struct {
	sub subscriber[T]
}

// Subscribe registers a subscription to every event of type T published on b
// from now on (see "Ordering" in the package documentation) and returns it.
// Receive the events from its Events channel, and call Close when done. If b
// is closed, the returned subscription is already closed.
//
// The topic is exactly the type T: a subscription of an interface type
// receives only events published as that interface type, not events of
// concrete types that implement it.
//
// Subscribe panics if opts.Buffer is negative or opts.Policy is not a
// defined Policy.
func Subscribe[T any](b *Bus, opts SubscribeOpts[T]) *Subscription[T] {
	s := &Subscription[T]{}
	s.sub.init(b, opts)
	s.sub.register(nil)
	return s
}

// Interested reports whether an open subscription of type T on b may want
// an event with the given key: one without SubscribeOpts.Interest, or whose
// Interest accepts the key. With no subscription of T it reports false, at
// the cost of a read-locked map lookup. A publisher that skips building an
// event nobody is interested in behaves as if the event had been published
// just before any subscription made concurrently with the check.
func Interested[T any](b *Bus, key string) bool {
	t := lookupTopic[T](b)
	if t == nil {
		return false
	}
	for _, s := range t.list() {
		if s.wants(key) {
			return true
		}
	}
	return false
}

// wants reports the subscription's interest in key; a panic counts as
// interest.
func (s *subscriber[T]) wants(key string) (ok bool) {
	if s.interest == nil {
		return true
	}
	defer func() {
		if r := recover(); r != nil {
			s.recovered("eventbus: subscription interest panicked", r)
			ok = true
		}
	}()
	return s.interest(key)
}

// Events returns the channel on which the subscription's events arrive, in
// publication order. The channel is closed by Close (or Bus.Close); events
// queued before that remain receivable first. The same channel is returned on
// every call.
func (s *Subscription[T]) Events() <-chan T { return s.sub.queue }

// Done returns a channel that is closed when the subscription is closed, at
// the same moment as the Events channel. It is useful in a select statement
// over several subscriptions.
func (s *Subscription[T]) Done() <-chan struct{} { return s.sub.done }

// Close unsubscribes: no event is queued after Close returns, the Events
// channel is closed, and events already queued stay receivable from it
// before the channel reports closed. Close does not wait for the receiver.
// It is idempotent and safe to call concurrently with Publish.
func (s *Subscription[T]) Close() { s.sub.close() }

// Dropped returns how many events the subscription has missed because its
// queue was full: under DropNewest, or under Block when PublishContext's
// context ended the wait.
func (s *Subscription[T]) Dropped() uint64 { return s.sub.dropped.Load() }

// Panics returns how many panics in SubscribeOpts.Filter were recovered.
func (s *Subscription[T]) Panics() uint64 { return s.sub.panics.Load() }

// FuncSubscription delivers events of type T to a callback, on a goroutine
// the subscription owns. Create one with SubscribeFunc. Its methods are safe
// for concurrent use.
type FuncSubscription[T any] struct {
	sub subscriber[T]
	fn  func(T)
}

// SubscribeFunc registers a subscription to every event of type T published
// on b from now on, as Subscribe does, and starts one goroutine that calls fn
// for each event, one at a time, in publication order. A panic in fn is
// recovered, logged with the bus's Logger and counted in Panics, and delivery
// continues with the next event. Call Close to stop the goroutine. If b is
// closed, the returned subscription is already closed, no goroutine is
// started and fn is never called.
//
// If fn ends its goroutine with runtime.Goexit (as testing.T.FailNow does),
// the subscription closes itself and discards the events still queued, so
// that Block publishers do not wait forever.
//
// SubscribeFunc panics if opts.Buffer is negative or opts.Policy is not a
// defined Policy.
func SubscribeFunc[T any](b *Bus, opts SubscribeOpts[T], fn func(T)) *FuncSubscription[T] {
	s := &FuncSubscription[T]{fn: fn}
	s.sub.init(b, opts)
	s.sub.register(s.run)
	return s
}

// Done returns a channel that is closed when the subscription's goroutine
// has returned: after Close, once the callback has returned from the last
// queued event (or after the callback called runtime.Goexit).
func (s *FuncSubscription[T]) Done() <-chan struct{} { return s.sub.done }

// Close unsubscribes: no event is queued after Close returns. Events already
// queued are still delivered to the callback, then the goroutine returns and
// Done is closed. Close does not wait for that, so it may be called from the
// callback itself. It is idempotent and safe to call concurrently with
// Publish.
func (s *FuncSubscription[T]) Close() { s.sub.close() }

// Dropped returns how many events the subscription has missed because its
// queue was full: under DropNewest, or under Block when PublishContext's
// context ended the wait.
func (s *FuncSubscription[T]) Dropped() uint64 { return s.sub.dropped.Load() }

// Panics returns how many panics in the callback and in SubscribeOpts.Filter
// were recovered.
func (s *FuncSubscription[T]) Panics() uint64 { return s.sub.panics.Load() }

// run is the subscription's goroutine. It ends when close has closed the
// queue and the queue is drained, or when the callback calls runtime.Goexit.
func (s *FuncSubscription[T]) run() {
	defer func() {
		// After a Goexit nobody would drain the queue any more, and Block
		// publishers would wait forever: close the subscription. After a
		// normal end this does nothing.
		s.sub.close()
		s.sub.bus.live.Add(-1)
		close(s.sub.done)
	}()
	for v := range s.sub.queue {
		s.call(v)
	}
}

// call runs the callback for one event, containing any panic.
func (s *FuncSubscription[T]) call(v T) {
	defer func() {
		if r := recover(); r != nil {
			s.sub.recovered("eventbus: subscriber callback panicked", r)
		}
	}()
	s.fn(v)
}

// subscriber is the part shared by Subscription and FuncSubscription: the
// bounded queue and the publisher side of delivery.
type subscriber[T any] struct {
	bus      *Bus
	topic    *topic[T] // nil if the bus was closed at registration
	policy   Policy
	filter   func(T) bool
	interest func(string) bool

	queue   chan T        // the bounded queue; closed by close
	closing chan struct{} // closed first by close, to wake a waiting publisher
	done    chan struct{} // see Subscription.Done and FuncSubscription.Done

	// async is set if a goroutine drains queue and closes done when it
	// returns; otherwise close closes done.
	async bool

	// sendMu is held by a publisher while it offers an event, and by close
	// while it closes queue, so that nothing is sent on a closed channel.
	sendMu sync.Mutex
	closed bool // guarded by sendMu

	closeOnce sync.Once
	dropped   atomic.Uint64
	panics    atomic.Uint64
}

// init prepares s for registration on b.
func (s *subscriber[T]) init(b *Bus, opts SubscribeOpts[T]) {
	if err := opts.validate(); err != nil {
		panic(err)
	}
	size := opts.Buffer
	if size == 0 {
		size = b.defaultBuffer
	}
	s.bus = b
	s.policy = opts.Policy
	s.filter = opts.Filter
	s.interest = opts.Interest
	s.queue = make(chan T, size)
	s.closing = make(chan struct{})
	s.done = make(chan struct{})
}

// register adds s to its topic and, if start is non-nil, runs start on a new
// goroutine. If the bus is closed, s is closed instead and start is not run.
func (s *subscriber[T]) register(start func()) {
	b := s.bus
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		s.close()
		return
	}
	s.topic = topicFor[T](b)
	s.topic.add(s)
	if start != nil {
		s.async = true
		b.live.Add(1)
		go start()
	}
	b.mu.Unlock()
}

// offer queues v according to the filter and policy. It reports whether
// cancel ended a wait for room, in which case v was dropped. Only the
// topic's publisher, which holds topic.pubMu, calls offer.
func (s *subscriber[T]) offer(v T, cancel <-chan struct{}) (canceled bool) {
	if s.filter != nil && !s.match(v) {
		return false
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.closed {
		return false
	}
	select {
	case s.queue <- v:
		return false
	default:
	}
	if s.policy != Block {
		s.dropped.Add(1)
		return false
	}
	select {
	case s.queue <- v:
		return false
	case <-s.closing:
		// Closed while we waited: the event arrives after the
		// subscription ended, so it is not a drop.
		return false
	case <-cancel:
		s.dropped.Add(1)
		return true
	}
}

// match runs the filter, treating a panic as a rejection.
func (s *subscriber[T]) match(v T) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			s.recovered("eventbus: subscription filter panicked", r)
			ok = false
		}
	}()
	return s.filter(v)
}

// recovered counts and logs a recovered panic.
func (s *subscriber[T]) recovered(msg string, r any) {
	s.panics.Add(1)
	s.bus.logger.Error(msg,
		slog.String("event_type", reflect.TypeFor[T]().String()),
		slog.Any("panic", r),
		slog.String("stack", string(debug.Stack())),
	)
}

// close unsubscribes s. It waits only for a publisher that is offering an
// event to s, which it wakes first.
func (s *subscriber[T]) close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		if s.topic != nil {
			s.bus.mu.Lock()
			s.topic.remove(s)
			s.bus.mu.Unlock()
		}
		s.sendMu.Lock()
		s.closed = true
		close(s.queue)
		s.sendMu.Unlock()
		if !s.async {
			close(s.done)
		}
	})
}
