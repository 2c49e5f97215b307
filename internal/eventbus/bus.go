package eventbus

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
)

// defaultBuffer is the queue capacity used when neither SubscribeOpts.Buffer
// nor Config.DefaultBuffer is set.
const defaultBuffer = 1024

// Config configures a Bus. The zero value is usable.
type Config struct {
	// Logger receives reports of recovered panics in subscription callbacks
	// and filters. Default: a logger that discards everything.
	Logger *slog.Logger

	// DefaultBuffer is the queue capacity, in events, of subscriptions whose
	// SubscribeOpts.Buffer is zero. Values <= 0 select the default, 1024.
	DefaultBuffer int
}

// WithDefaults returns a copy of c with every unset field set to its
// documented default.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DefaultBuffer <= 0 {
		c.DefaultBuffer = defaultBuffer
	}
	return c
}

// Bus is a typed in-process publish/subscribe bus. Topics are Go types: see
// Publish and Subscribe. A Bus is safe for concurrent use. The package
// documentation describes its ordering, backpressure and lifecycle
// guarantees.
type Bus struct {
	logger        *slog.Logger
	defaultBuffer int

	// mu guards closed and topics, and serializes every change to a topic's
	// subscriber list. Publish holds it (read-locked) only for the map
	// lookup, never while it offers an event to subscribers.
	mu     sync.RWMutex
	closed bool
	topics map[reflect.Type]anyTopic

	// live counts running delivery goroutines (one per FuncSubscription).
	// It exists so tests can prove that Close leaves none behind.
	live atomic.Int64
}

// New returns an open Bus configured by cfg. A Bus starts no goroutines of
// its own; only SubscribeFunc does, one per subscription.
func New(cfg Config) *Bus {
	cfg = cfg.WithDefaults()
	return &Bus{
		logger:        cfg.Logger,
		defaultBuffer: cfg.DefaultBuffer,
		topics:        make(map[reflect.Type]anyTopic),
	}
}

// Close closes every subscription on b (see Subscription.Close and
// FuncSubscription.Close for what happens to events already queued), turns
// later Publish calls into no-ops and makes later Subscribe and SubscribeFunc
// calls return subscriptions that are already closed. Close does not wait for
// running callbacks; wait on each FuncSubscription's Done for that. Calling
// Close more than once is harmless.
func (b *Bus) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	var subs []closer
	for _, t := range b.topics {
		subs = t.detachAll(subs)
	}
	b.topics = nil
	b.mu.Unlock()

	// Closing a subscription may wait for a publisher that is offering it an
	// event (Close wakes that publisher), so it happens without b.mu held.
	for _, s := range subs {
		s.close()
	}
}

// Publish delivers v to every open subscription of type T on b, following
// each subscription's Policy and Filter. Publish calls for the same T are
// serialized by the bus, and every subscription of T receives events in that
// order (see "Ordering" in the package documentation).
//
// Publish never waits for a DropNewest subscription. It waits for room in a
// Block subscription's queue, for as long as it takes; use PublishContext to
// bound that wait. With no subscription of type T, Publish costs a read-locked
// map lookup and does not allocate. After b.Close, Publish does nothing.
func Publish[T any](b *Bus, v T) {
	if t := lookupTopic[T](b); t != nil {
		t.publish(v, nil)
	}
}

// PublishContext is Publish, except that waiting for room in Block
// subscriptions ends when ctx is done. From then on the event is dropped for
// every Block subscription whose queue is full (counted in its Dropped, as for
// DropNewest), and PublishContext returns ctx.Err(). It returns nil if the
// event was offered to every subscription without ctx cutting a wait short,
// even if ctx is already done.
func PublishContext[T any](ctx context.Context, b *Bus, v T) error {
	t := lookupTopic[T](b)
	if t == nil {
		return nil
	}
	if t.publish(v, ctx.Done()) {
		return ctx.Err()
	}
	return nil
}

// lookupTopic returns the topic for T, or nil if b is closed or nobody ever
// subscribed to T.
func lookupTopic[T any](b *Bus) *topic[T] {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil
	}
	t, _ := b.topics[reflect.TypeFor[T]()].(*topic[T])
	return t
}

// topicFor returns the topic for T, creating it if needed. b.mu must be held
// for writing and b must be open.
func topicFor[T any](b *Bus) *topic[T] {
	key := reflect.TypeFor[T]()
	if t, ok := b.topics[key].(*topic[T]); ok {
		return t
	}
	t := &topic[T]{}
	b.topics[key] = t
	return t
}

// anyTopic lets Bus.Close reach topics of every type.
type anyTopic interface {
	// detachAll removes every subscriber from the topic and appends them to
	// dst. Bus.mu must be held for writing.
	detachAll(dst []closer) []closer
}

// closer is a subscriber of any type.
type closer interface {
	close()
}

// topic holds the subscriptions of one event type.
type topic[T any] struct {
	// pubMu serializes Publish calls for T: the order in which they acquire
	// it is the publication order every subscriber observes. It is held
	// while the event is offered to each subscriber, including any wait
	// for a Block subscriber.
	pubMu sync.Mutex

	// subs is the current subscriber list. It is replaced, never modified
	// in place, with Bus.mu held for writing, and loaded without locks so
	// that subscribing never waits for a blocked publisher.
	subs atomic.Pointer[[]*subscriber[T]]
}

// list returns the current subscribers. The slice must not be modified.
func (t *topic[T]) list() []*subscriber[T] {
	if p := t.subs.Load(); p != nil {
		return *p
	}
	return nil
}

// publish offers v to every subscriber, in subscription order. It reports
// whether cancel cut short a wait for a Block subscriber.
func (t *topic[T]) publish(v T, cancel <-chan struct{}) (canceled bool) {
	if len(t.list()) == 0 {
		return false
	}
	t.pubMu.Lock()
	defer t.pubMu.Unlock()
	// Reload under pubMu so that a subscriber receives exactly the events
	// serialized after it was added.
	for _, s := range t.list() {
		if s.offer(v, cancel) {
			canceled = true
		}
	}
	return canceled
}

// add appends s to the subscriber list. Bus.mu must be held for writing.
func (t *topic[T]) add(s *subscriber[T]) {
	old := t.list()
	next := make([]*subscriber[T], 0, len(old)+1)
	next = append(next, old...)
	next = append(next, s)
	t.subs.Store(&next)
}

// remove deletes s from the subscriber list if present. Bus.mu must be held
// for writing.
func (t *topic[T]) remove(s *subscriber[T]) {
	old := t.list()
	next := make([]*subscriber[T], 0, len(old))
	for _, o := range old {
		if o != s {
			next = append(next, o)
		}
	}
	if len(next) != len(old) {
		t.subs.Store(&next)
	}
}

// detachAll implements anyTopic.
func (t *topic[T]) detachAll(dst []closer) []closer {
	for _, s := range t.list() {
		dst = append(dst, s)
	}
	t.subs.Store(nil)
	return dst
}
