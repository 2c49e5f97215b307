package eventbus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tasker-go/tasker/internal/eventbus"
)

// failAfter bounds every wait in these tests. It only turns a hang into a
// failure; no test sleeps to let something happen.
const failAfter = 10 * time.Second

// waitClosed fails the test if ch is not closed within failAfter.
func waitClosed[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	timer := time.NewTimer(failAfter)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatalf("%s: not closed after %v", what, failAfter)
		}
	}
}

// returnsPromptly runs fn on a new goroutine and fails the test if it has
// not returned within failAfter.
func returnsPromptly(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	waitClosed(t, done, what)
}

// drain closes sub and returns every event that was queued for it.
func drain[T any](sub *eventbus.Subscription[T]) []T {
	sub.Close()
	var got []T
	for v := range sub.Events() {
		got = append(got, v)
	}
	return got
}

// seq returns 0, 1, ..., n-1.
func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// lockedBuffer is an io.Writer safe for the concurrent writes of a logger.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testBundle struct {
	bus *eventbus.Bus
	log *lockedBuffer
}

// setup returns a bus that logs to a buffer and is closed when the test ends.
func setup(t *testing.T, cfg eventbus.Config) *testBundle {
	t.Helper()
	log := &lockedBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	bus := eventbus.New(cfg)
	t.Cleanup(bus.Close)
	return &testBundle{bus: bus, log: log}
}

// TestPublishWithoutSubscribers does not call t.Parallel: testing.AllocsPerRun
// refuses to run in a parallel test, whose neighbors would skew the count.
func TestPublishWithoutSubscribers(t *testing.T) {
	tb := setup(t, eventbus.Config{})

	// A subscription to another type must not make int publishing costly.
	_ = eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[string]{})
	allocs := testing.AllocsPerRun(1000, func() {
		eventbus.Publish(tb.bus, 42)
	})
	if allocs != 0 {
		t.Errorf("Publish with no subscribers: got %v allocations, want 0", allocs)
	}

	// A type whose only subscription was closed is back to the cheap path.
	sub := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int64]{})
	sub.Close()
	eventbus.Publish(tb.bus, int64(1))
	if got := drain(sub); len(got) != 0 {
		t.Errorf("closed subscription got %v, want nothing", got)
	}
}

// stamped is an event that records who published it and in which order.
type stamped struct {
	Publisher int
	Seq       int
}

func TestOrderingConcurrentPublishers(t *testing.T) {
	t.Parallel()
	tb := setup(t, eventbus.Config{})
	const publishers, perPublisher = 8, 500

	blockCh := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[stamped]{Policy: eventbus.Block, Buffer: 3})
	// Large enough never to drop, so it too must see everything.
	dropCh := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[stamped]{Buffer: publishers * perPublisher})
	var (
		mu        sync.Mutex
		fromFunc  []stamped
		consumers sync.WaitGroup
		fromBlock []stamped
	)
	blockFn := eventbus.SubscribeFunc(tb.bus, eventbus.SubscribeOpts[stamped]{Policy: eventbus.Block, Buffer: 1}, func(e stamped) {
		mu.Lock()
		defer mu.Unlock()
		fromFunc = append(fromFunc, e)
	})
	consumers.Go(func() {
		for e := range blockCh.Events() {
			fromBlock = append(fromBlock, e)
		}
	})

	var pubs sync.WaitGroup
	for p := range publishers {
		pubs.Go(func() {
			for i := range perPublisher {
				eventbus.Publish(tb.bus, stamped{Publisher: p, Seq: i})
			}
		})
	}
	returnsPromptly(t, "publishers", pubs.Wait)

	blockCh.Close()
	blockFn.Close()
	returnsPromptly(t, "consumer of Block channel subscription", consumers.Wait)
	waitClosed(t, blockFn.Done(), "Block func subscription Done")
	fromDrop := drain(dropCh)

	mu.Lock()
	defer mu.Unlock()
	checkPerPublisher := func(name string, got []stamped) {
		t.Helper()
		if len(got) != publishers*perPublisher {
			t.Fatalf("%s: got %d events, want %d", name, len(got), publishers*perPublisher)
		}
		next := make([]int, publishers)
		for i, e := range got {
			if e.Seq != next[e.Publisher] {
				t.Fatalf("%s: event %d is %+v, want seq %d for publisher %d", name, i, e, next[e.Publisher], e.Publisher)
			}
			next[e.Publisher]++
		}
	}
	checkPerPublisher("Block channel", fromBlock)
	checkPerPublisher("Block func", fromFunc)
	checkPerPublisher("DropNewest channel", fromDrop)

	// All subscriptions observe the same serialization of the publishers.
	if diff := cmp.Diff(fromBlock, fromFunc); diff != "" {
		t.Errorf("Block func order differs from Block channel order (-channel +func):\n%s", diff)
	}
	if diff := cmp.Diff(fromBlock, fromDrop); diff != "" {
		t.Errorf("DropNewest order differs from Block channel order (-block +drop):\n%s", diff)
	}
}

func TestDropNewestDoesNotBlock(t *testing.T) {
	t.Parallel()

	t.Run("stuck channel", func(t *testing.T) {
		t.Parallel()
		tb := setup(t, eventbus.Config{})
		stuck := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{Buffer: 4}) // never read
		healthy := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{Buffer: 100})

		returnsPromptly(t, "publishing past a full DropNewest queue", func() {
			for i := range 100 {
				eventbus.Publish(tb.bus, i)
			}
		})

		if got, want := stuck.Dropped(), uint64(96); got != want {
			t.Errorf("stuck.Dropped() = %d, want %d", got, want)
		}
		if diff := cmp.Diff(seq(4), drain(stuck)); diff != "" {
			t.Errorf("stuck subscription kept the wrong events (-want +got):\n%s", diff)
		}
		if got := healthy.Dropped(); got != 0 {
			t.Errorf("healthy.Dropped() = %d, want 0", got)
		}
		if diff := cmp.Diff(seq(100), drain(healthy)); diff != "" {
			t.Errorf("healthy subscription (-want +got):\n%s", diff)
		}
	})

	t.Run("stuck callback", func(t *testing.T) {
		t.Parallel()
		tb := setup(t, eventbus.Config{})
		entered := make(chan struct{})
		release := make(chan struct{})
		var got []int
		stuck := eventbus.SubscribeFunc(tb.bus, eventbus.SubscribeOpts[int]{Buffer: 2}, func(v int) {
			if v == 0 {
				close(entered)
				<-release
			}
			got = append(got, v)
		})

		eventbus.Publish(tb.bus, 0)
		waitClosed(t, entered, "callback entered")
		returnsPromptly(t, "publishing while the callback is stuck", func() {
			for i := 1; i < 10; i++ {
				eventbus.Publish(tb.bus, i)
			}
		})
		// 0 is in the callback, 1 and 2 fill the queue, 3..9 are dropped.
		if got, want := stuck.Dropped(), uint64(7); got != want {
			t.Errorf("Dropped() = %d, want %d", got, want)
		}
		close(release)
		stuck.Close()
		waitClosed(t, stuck.Done(), "Done")
		if diff := cmp.Diff([]int{0, 1, 2}, got); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
	})
}

func TestBlockDeliversEverything(t *testing.T) {
	t.Parallel()
	tb := setup(t, eventbus.Config{})
	const n = 2000
	var got []int
	sub := eventbus.SubscribeFunc(tb.bus, eventbus.SubscribeOpts[int]{Policy: eventbus.Block, Buffer: 1}, func(v int) {
		if v%100 == 0 {
			runtime.Gosched() // be a slow consumer now and then
		}
		got = append(got, v)
	})
	for i := range n {
		eventbus.Publish(tb.bus, i)
	}
	sub.Close()
	waitClosed(t, sub.Done(), "Done")
	if diff := cmp.Diff(seq(n), got); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if got := sub.Dropped(); got != 0 {
		t.Errorf("Dropped() = %d, want 0", got)
	}
}

func TestDefaultBuffer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         eventbus.Config
		buffer      int
		wantDropped uint64
	}{
		{name: "package default", cfg: eventbus.Config{}, wantDropped: 1030 - 1024},
		{name: "bus default", cfg: eventbus.Config{DefaultBuffer: 10}, wantDropped: 1030 - 10},
		{name: "per subscription", cfg: eventbus.Config{DefaultBuffer: 10}, buffer: 1000, wantDropped: 1030 - 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t, tt.cfg)
			sub := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{Buffer: tt.buffer})
			for i := range 1030 {
				eventbus.Publish(tb.bus, i)
			}
			if got := sub.Dropped(); got != tt.wantDropped {
				t.Errorf("Dropped() = %d, want %d", got, tt.wantDropped)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	t.Parallel()
	tb := setup(t, eventbus.Config{})
	even := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{
		Buffer: 5,
		Filter: func(v int) bool { return v%2 == 0 },
	})
	panicky := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{
		Filter: func(v int) bool {
			if v == 3 {
				panic("filter boom")
			}
			return true
		},
	})
	for i := range 10 {
		eventbus.Publish(tb.bus, i)
	}

	// Rejected events take no room: five even numbers fit a queue of five.
	if diff := cmp.Diff([]int{0, 2, 4, 6, 8}, drain(even)); diff != "" {
		t.Errorf("filtered subscription (-want +got):\n%s", diff)
	}
	if got := even.Dropped(); got != 0 {
		t.Errorf("Dropped() = %d, want 0", got)
	}

	if diff := cmp.Diff([]int{0, 1, 2, 4, 5, 6, 7, 8, 9}, drain(panicky)); diff != "" {
		t.Errorf("subscription with panicking filter (-want +got):\n%s", diff)
	}
	if got := panicky.Panics(); got != 1 {
		t.Errorf("Panics() = %d, want 1", got)
	}
	if log := tb.log.String(); !strings.Contains(log, "filter boom") {
		t.Errorf("log does not mention the filter panic:\n%s", log)
	}
}

func TestInterested(t *testing.T) {
	t.Parallel()
	tb := setup(t, eventbus.Config{})
	if eventbus.Interested[string](tb.bus, "a") {
		t.Error("Interested with no subscription = true, want false")
	}
	onlyA := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[string]{Interest: func(k string) bool { return k == "a" }})
	if !eventbus.Interested[string](tb.bus, "a") || eventbus.Interested[string](tb.bus, "b") {
		t.Error("Interested does not follow the subscription's Interest")
	}
	if eventbus.Interested[int](tb.bus, "a") {
		t.Error("Interested in another type's topic = true, want false")
	}
	// Interest does not filter: what is published is delivered.
	eventbus.Publish(tb.bus, "b")
	if diff := cmp.Diff([]string{"b"}, drain(onlyA)); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	all := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[string]{})
	if !eventbus.Interested[string](tb.bus, "b") {
		t.Error("Interested with a subscription without Interest = false, want true")
	}
	all.Close()
	onlyA.Close()
	if eventbus.Interested[string](tb.bus, "a") {
		t.Error("Interested after every subscription closed = true, want false")
	}
	panicky := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[string]{Interest: func(string) bool { panic("interest boom") }})
	if !eventbus.Interested[string](tb.bus, "x") {
		t.Error("a panicking Interest does not count as interest")
	}
	if got := panicky.Panics(); got != 1 {
		t.Errorf("Panics() = %d, want 1", got)
	}
	if log := tb.log.String(); !strings.Contains(log, "interest boom") {
		t.Errorf("log does not mention the interest panic:\n%s", log)
	}
}

func TestCallbackPanicIsContained(t *testing.T) {
	t.Parallel()
	tb := setup(t, eventbus.Config{})
	var got []int
	sub := eventbus.SubscribeFunc(tb.bus, eventbus.SubscribeOpts[int]{Policy: eventbus.Block}, func(v int) {
		got = append(got, v)
		if v%3 == 0 {
			panic(fmt.Sprintf("callback boom %d", v))
		}
	})
	for i := range 10 {
		eventbus.Publish(tb.bus, i)
	}
	sub.Close()
	waitClosed(t, sub.Done(), "Done")

	if diff := cmp.Diff(seq(10), got); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if got, want := sub.Panics(), uint64(4); got != want { // 0, 3, 6, 9
		t.Errorf("Panics() = %d, want %d", got, want)
	}
	log := tb.log.String()
	for _, want := range []string{"eventbus: subscriber callback panicked", "event_type=int", "callback boom 9"} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not contain %q:\n%s", want, log)
		}
	}
}

func TestSubscriptionClose(t *testing.T) {
	t.Parallel()

	t.Run("channel drains queued events", func(t *testing.T) {
		t.Parallel()
		tb := setup(t, eventbus.Config{})
		sub := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{})
		other := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{})
		eventbus.Publish(tb.bus, 1)
		eventbus.Publish(tb.bus, 2)

		sub.Close()
		sub.Close() // idempotent
		waitClosed(t, sub.Done(), "Done")
		eventbus.Publish(tb.bus, 3) // not queued for sub any more

		var got []int
		for v := range sub.Events() {
			got = append(got, v)
		}
		if diff := cmp.Diff([]int{1, 2}, got); diff != "" {
			t.Errorf("closed subscription (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]int{1, 2, 3}, drain(other)); diff != "" {
			t.Errorf("other subscription (-want +got):\n%s", diff)
		}
	})

	t.Run("callback drains queued events", func(t *testing.T) {
		t.Parallel()
		tb := setup(t, eventbus.Config{})
		entered := make(chan struct{})
		release := make(chan struct{})
		var got []int
		sub := eventbus.SubscribeFunc(tb.bus, eventbus.SubscribeOpts[int]{}, func(v int) {
			if v == 1 {
				close(entered)
				<-release
			}
			got = append(got, v)
		})
		eventbus.Publish(tb.bus, 1)
		waitClosed(t, entered, "callback entered")
		eventbus.Publish(tb.bus, 2)
		eventbus.Publish(tb.bus, 3)

		returnsPromptly(t, "Close with a stuck callback", sub.Close)
		eventbus.Publish(tb.bus, 4)
		select {
		case <-sub.Done():
			t.Fatal("Done closed while the callback is still running")
		default:
		}
		close(release)
		waitClosed(t, sub.Done(), "Done")
		if diff := cmp.Diff([]int{1, 2, 3}, got); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
	})

	t.Run("close from callback", func(t *testing.T) {
		t.Parallel()
		tb := setup(t, eventbus.Config{})
		var (
			sub *eventbus.FuncSubscription[int]
			got []int
		)
		ready := make(chan struct{})
		sub = eventbus.SubscribeFunc(tb.bus, eventbus.SubscribeOpts[int]{Policy: eventbus.Block}, func(v int) {
			<-ready
			got = append(got, v)
			sub.Close()
		})
		close(ready)
		eventbus.Publish(tb.bus, 1)
		waitClosed(t, sub.Done(), "Done")
		eventbus.Publish(tb.bus, 2)
		if diff := cmp.Diff([]int{1}, got); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
	})

	t.Run("callback calls Goexit", func(t *testing.T) {
		t.Parallel()
		tb := setup(t, eventbus.Config{})
		sub := eventbus.SubscribeFunc(tb.bus, eventbus.SubscribeOpts[int]{Policy: eventbus.Block, Buffer: 1}, func(int) {
			runtime.Goexit()
		})
		eventbus.Publish(tb.bus, 1)
		waitClosed(t, sub.Done(), "Done")
		returnsPromptly(t, "Block publishing after the callback's goroutine exited", func() {
			for i := range 10 {
				eventbus.Publish(tb.bus, i)
			}
		})
		if n := eventbus.LiveGoroutines(tb.bus); n != 0 {
			t.Errorf("LiveGoroutines = %d, want 0", n)
		}
	})

	t.Run("concurrent close and publish", func(t *testing.T) {
		t.Parallel()
		tb := setup(t, eventbus.Config{})
		subs := make([]*eventbus.Subscription[int], 20)
		for i := range subs {
			subs[i] = eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{Policy: eventbus.Policy(i % 2), Buffer: 1})
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range 1000 {
				eventbus.Publish(tb.bus, i)
			}
		})
		for _, sub := range subs {
			wg.Go(sub.Close)
			wg.Go(sub.Close)
		}
		returnsPromptly(t, "publishing while subscriptions close", wg.Wait)
		for i, sub := range subs {
			if got := drain(sub); len(got) > 1 {
				t.Errorf("subscription %d holds %d events, more than its buffer of 1", i, len(got))
			}
		}
	})
}

func TestCloseWakesBlockedPublisher(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		close func(*eventbus.Bus, *eventbus.Subscription[int])
	}{
		{name: "Subscription.Close", close: func(_ *eventbus.Bus, s *eventbus.Subscription[int]) { s.Close() }},
		{name: "Bus.Close", close: func(b *eventbus.Bus, _ *eventbus.Subscription[int]) { b.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t, eventbus.Config{})
			sub := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{Policy: eventbus.Block, Buffer: 1})
			eventbus.Publish(tb.bus, 1) // fills the queue

			published := make(chan struct{})
			go func() {
				defer close(published)
				eventbus.Publish(tb.bus, 2) // waits for room
			}()
			tt.close(tb.bus, sub)
			waitClosed(t, published, "blocked Publish")

			// 2 never fits in the full queue: it is skipped, not dropped.
			if diff := cmp.Diff([]int{1}, drain(sub)); diff != "" {
				t.Errorf("closed subscription (-want +got):\n%s", diff)
			}
			if got := sub.Dropped(); got != 0 {
				t.Errorf("Dropped() = %d, want 0", got)
			}
		})
	}
}

func TestPublishContext(t *testing.T) {
	t.Parallel()
	tb := setup(t, eventbus.Config{})
	block := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{Policy: eventbus.Block, Buffer: 1})
	drop := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{Buffer: 10})

	if err := eventbus.PublishContext(t.Context(), tb.bus, 1); err != nil {
		t.Fatalf("PublishContext with room: %v", err)
	}

	// The Block queue is full: the wait ends with the context.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var err error
	returnsPromptly(t, "PublishContext with a canceled context", func() {
		err = eventbus.PublishContext(ctx, tb.bus, 2)
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("PublishContext error = %v, want context.Canceled", err)
	}
	if got := block.Dropped(); got != 1 {
		t.Errorf("block.Dropped() = %d, want 1", got)
	}

	// A done context does not matter when nothing has to wait.
	<-block.Events()
	if err := eventbus.PublishContext(ctx, tb.bus, 3); err != nil {
		t.Errorf("PublishContext with room and a done context: %v", err)
	}
	if err := eventbus.PublishContext(ctx, tb.bus, "no subscribers"); err != nil {
		t.Errorf("PublishContext without subscribers: %v", err)
	}

	if diff := cmp.Diff([]int{3}, drain(block)); diff != "" {
		t.Errorf("block subscription (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{1, 2, 3}, drain(drop)); diff != "" {
		t.Errorf("DropNewest subscription (-want +got):\n%s", diff)
	}
}

func TestBusClose(t *testing.T) {
	t.Parallel()
	tb := setup(t, eventbus.Config{})
	ch := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{})
	var got []int
	fn := eventbus.SubscribeFunc(tb.bus, eventbus.SubscribeOpts[int]{Policy: eventbus.Block}, func(v int) {
		got = append(got, v)
	})
	eventbus.Publish(tb.bus, 1)

	tb.bus.Close()
	tb.bus.Close() // idempotent
	waitClosed(t, ch.Done(), "channel subscription Done")
	waitClosed(t, fn.Done(), "func subscription Done")
	if diff := cmp.Diff([]int{1}, drain(ch)); diff != "" {
		t.Errorf("channel subscription (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{1}, got); diff != "" {
		t.Errorf("func subscription (-want +got):\n%s", diff)
	}

	// Publish after Close is a no-op.
	eventbus.Publish(tb.bus, 2)
	if err := eventbus.PublishContext(t.Context(), tb.bus, 2); err != nil {
		t.Errorf("PublishContext after Close: %v", err)
	}

	// Subscribe after Close returns a closed subscription.
	late := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{})
	waitClosed(t, late.Done(), "late subscription Done")
	waitClosed(t, late.Events(), "late subscription Events")
	lateFn := eventbus.SubscribeFunc(tb.bus, eventbus.SubscribeOpts[int]{}, func(int) {
		t.Error("callback of a subscription made after Close was called")
	})
	waitClosed(t, lateFn.Done(), "late func subscription Done")
	lateFn.Close()
	late.Close()

	if n := eventbus.LiveGoroutines(tb.bus); n != 0 {
		t.Errorf("%d delivery goroutines still running after Close", n)
	}
}

func TestManyTypes(t *testing.T) {
	t.Parallel()
	tb := setup(t, eventbus.Config{})
	type stepID string
	type taskDone struct{ ID string }

	ints := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[int]{})
	strs := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[string]{})
	ids := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[stepID]{})
	dones := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[taskDone]{})
	ptrs := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[*taskDone]{})
	errs := eventbus.Subscribe(tb.bus, eventbus.SubscribeOpts[error]{})

	boom := errors.New("boom")
	eventbus.Publish(tb.bus, 1)
	eventbus.Publish(tb.bus, "a")
	eventbus.Publish(tb.bus, stepID("s1"))
	eventbus.Publish(tb.bus, taskDone{ID: "t1"})
	eventbus.Publish(tb.bus, &taskDone{ID: "t2"})
	eventbus.Publish(tb.bus, boom)                      // static type error
	eventbus.Publish(tb.bus, fmt.Errorf("w: %w", boom)) // static type error
	eventbus.Publish(tb.bus, int64(2))                  // nobody subscribes to int64
	eventbus.Publish(tb.bus, 3)

	if diff := cmp.Diff([]int{1, 3}, drain(ints)); diff != "" {
		t.Errorf("int (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a"}, drain(strs)); diff != "" {
		t.Errorf("string (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]stepID{"s1"}, drain(ids)); diff != "" {
		t.Errorf("stepID (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]taskDone{{ID: "t1"}}, drain(dones)); diff != "" {
		t.Errorf("taskDone (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*taskDone{{ID: "t2"}}, drain(ptrs)); diff != "" {
		t.Errorf("*taskDone (-want +got):\n%s", diff)
	}
	if got := drain(errs); len(got) != 2 || got[0] != boom || !errors.Is(got[1], boom) {
		t.Errorf("error subscription got %v, want [boom w: boom]", got)
	}
}

func TestSubscribeOptsValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts eventbus.SubscribeOpts[int]
	}{
		{name: "negative buffer", opts: eventbus.SubscribeOpts[int]{Buffer: -1}},
		{name: "unknown policy", opts: eventbus.SubscribeOpts[int]{Policy: eventbus.Policy(7)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t, eventbus.Config{})
			for _, subscribe := range []func(){
				func() { eventbus.Subscribe(tb.bus, tt.opts) },
				func() { eventbus.SubscribeFunc(tb.bus, tt.opts, func(int) {}) },
			} {
				func() {
					defer func() {
						if recover() == nil {
							t.Errorf("subscribing with %+v did not panic", tt.opts)
						}
					}()
					subscribe()
				}()
			}
			if n := eventbus.LiveGoroutines(tb.bus); n != 0 {
				t.Errorf("%d delivery goroutines started by rejected subscriptions", n)
			}
		})
	}
}

func TestPolicyString(t *testing.T) {
	t.Parallel()
	for p, want := range map[eventbus.Policy]string{
		eventbus.DropNewest:  "DropNewest",
		eventbus.Block:       "Block",
		eventbus.Policy(-1):  "Policy(-1)",
		eventbus.Policy(100): "Policy(100)",
	} {
		if got := p.String(); got != want {
			t.Errorf("Policy(%d).String() = %q, want %q", int(p), got, want)
		}
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	t.Parallel()
	tb := setup(t, eventbus.Config{})
	const n = 50
	subs := make([]*eventbus.FuncSubscription[int], n)
	for i := range subs {
		subs[i] = eventbus.SubscribeFunc(tb.bus, eventbus.SubscribeOpts[int]{Policy: eventbus.Policy(i % 2)}, func(int) {})
	}
	for i := range 100 {
		eventbus.Publish(tb.bus, i)
	}
	if got := eventbus.LiveGoroutines(tb.bus); got != n {
		t.Errorf("LiveGoroutines = %d, want %d (one per SubscribeFunc)", got, n)
	}
	subs[0].Close() // some closed individually, the rest by the bus
	tb.bus.Close()
	for i, s := range subs {
		waitClosed(t, s.Done(), fmt.Sprintf("subscription %d Done", i))
	}
	if got := eventbus.LiveGoroutines(tb.bus); got != 0 {
		t.Errorf("LiveGoroutines after Close = %d, want 0", got)
	}
}

// TestNoGoroutineLeakProcessWide checks the real goroutine count, so that a
// goroutine the bus forgot to count would also be caught. It deliberately
// does not call t.Parallel: Go runs sequential top-level tests before it
// releases the parallel ones, so no other test starts goroutines meanwhile.
func TestNoGoroutineLeakProcessWide(t *testing.T) {
	before := runtime.NumGoroutine()
	bus := eventbus.New(eventbus.Config{})
	var subs []*eventbus.FuncSubscription[int]
	for range 20 {
		subs = append(subs, eventbus.SubscribeFunc(bus, eventbus.SubscribeOpts[int]{}, func(int) {}))
		_ = eventbus.Subscribe(bus, eventbus.SubscribeOpts[int]{})
	}
	for i := range 100 {
		eventbus.Publish(bus, i)
	}
	bus.Close()
	for _, s := range subs {
		waitClosed(t, s.Done(), "Done")
	}
	// A goroutine that has closed Done still needs a moment to exit; poll
	// the count instead of sleeping a fixed time.
	deadline := time.Now().Add(failAfter)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before, %d after Close", before, runtime.NumGoroutine())
		}
		runtime.Gosched()
	}
}

func BenchmarkPublish(b *testing.B) {
	type event struct {
		TaskID string
		Seq    int
	}
	for _, n := range []int{0, 1, 4} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			bus := eventbus.New(eventbus.Config{})
			var consumers sync.WaitGroup
			for range n {
				sub := eventbus.Subscribe(bus, eventbus.SubscribeOpts[event]{})
				consumers.Go(func() {
					for range sub.Events() {
					}
				})
			}
			b.ReportAllocs()
			ev := event{TaskID: "task-1"}
			for b.Loop() {
				ev.Seq++
				eventbus.Publish(bus, ev)
			}
			b.StopTimer()
			bus.Close()
			consumers.Wait()
		})
	}
}
