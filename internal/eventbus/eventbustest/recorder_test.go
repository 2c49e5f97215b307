package eventbustest_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tasker-go/tasker/internal/eventbus"
	"github.com/tasker-go/tasker/internal/eventbus/eventbustest"
)

// failAfter bounds the waits of tests that must succeed.
const failAfter = 10 * time.Second

// fakeTB records what a Recorder does to its test. Fatalf ends the calling
// goroutine, as testing.T's does.
type fakeTB struct {
	testing.TB

	mu       sync.Mutex
	fatal    string
	cleanups []func()
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// runCleanups runs the registered cleanups, last first, as testing does.
func (f *fakeTB) runCleanups() {
	f.mu.Lock()
	fns := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// waitFor calls rec.WaitFor on its own goroutine, since a fakeTB's Fatalf
// ends the goroutine, and returns its result and the fatal message, if any.
func waitFor[T any](t *testing.T, tb *fakeTB, rec *eventbustest.Recorder[T], ctx context.Context, cond func([]T) bool) (got []T, fatal string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = rec.WaitFor(ctx, cond)
	}()
	select {
	case <-done:
	case <-time.After(failAfter):
		t.Fatalf("WaitFor did not return within %v", failAfter)
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return got, tb.fatal
}

func newBus(t *testing.T) *eventbus.Bus {
	t.Helper()
	bus := eventbus.New(eventbus.Config{})
	t.Cleanup(bus.Close)
	return bus
}

func TestRecorderWaitFor(t *testing.T) {
	t.Parallel()
	bus := newBus(t)
	rec := eventbustest.NewRecorder[int](t, bus)
	other := eventbustest.NewRecorder[string](t, bus)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for i := range 100 {
			eventbus.Publish(bus, i)
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), failAfter)
	defer cancel()
	got := rec.WaitFor(ctx, func(events []int) bool { return len(events) == 100 })
	want := make([]int, 100)
	for i := range want {
		want[i] = i
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WaitFor (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, rec.All()); diff != "" {
		t.Errorf("All (-want +got):\n%s", diff)
	}
	if got := other.All(); len(got) != 0 {
		t.Errorf("string recorder got %v, want nothing", got)
	}

	// All returns a copy.
	all := rec.All()
	all[0] = -1
	if got := rec.All()[0]; got != 0 {
		t.Errorf("All()[0] = %d after modifying an earlier result, want 0", got)
	}
}

func TestRecorderWaitForAlreadyTrue(t *testing.T) {
	t.Parallel()
	bus := newBus(t)
	rec := eventbustest.NewRecorder[string](t, bus)
	got := rec.WaitFor(t.Context(), func(events []string) bool { return len(events) == 0 })
	if len(got) != 0 {
		t.Errorf("WaitFor = %v, want no events", got)
	}
}

func TestRecorderWaitForContextDone(t *testing.T) {
	t.Parallel()
	bus := newBus(t)
	tb := &fakeTB{}
	defer tb.runCleanups()
	rec := eventbustest.NewRecorder[int](tb, bus)
	eventbus.Publish(bus, 7)
	if _, fatal := waitFor(t, tb, rec, t.Context(), func(events []int) bool { return len(events) == 1 }); fatal != "" {
		t.Fatalf("WaitFor failed the test: %s", fatal)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, fatal := waitFor(t, tb, rec, ctx, func(events []int) bool { return len(events) == 2 })
	for _, want := range []string{"waiting for int events", "context canceled", "recorded 1 events: [7]"} {
		if !strings.Contains(fatal, want) {
			t.Errorf("Fatalf message %q does not contain %q", fatal, want)
		}
	}
}

func TestRecorderWaitForBusClosed(t *testing.T) {
	t.Parallel()
	bus := newBus(t)
	tb := &fakeTB{}
	defer tb.runCleanups()
	rec := eventbustest.NewRecorder[int](tb, bus)
	eventbus.Publish(bus, 1)
	eventbus.Publish(bus, 2)
	bus.Close()

	// Events recorded before the close still satisfy a condition...
	got, fatal := waitFor(t, tb, rec, t.Context(), func(events []int) bool { return len(events) == 2 })
	if fatal != "" {
		t.Fatalf("WaitFor failed the test: %s", fatal)
	}
	if diff := cmp.Diff([]int{1, 2}, got); diff != "" {
		t.Errorf("WaitFor (-want +got):\n%s", diff)
	}

	// ...but a condition that can no longer hold fails at once, without
	// waiting for the context.
	_, fatal = waitFor(t, tb, rec, t.Context(), func(events []int) bool { return len(events) == 3 })
	if !strings.Contains(fatal, "recorder closed before the condition held") {
		t.Errorf("Fatalf message = %q, want it to report the closed recorder", fatal)
	}
}

func TestRecorderCleanup(t *testing.T) {
	t.Parallel()
	bus := newBus(t)
	tb := &fakeTB{}
	rec := eventbustest.NewRecorder[int](tb, bus)
	eventbus.Publish(bus, 1)
	tb.runCleanups() // returns once the recorder has stopped
	eventbus.Publish(bus, 2)
	if diff := cmp.Diff([]int{1}, rec.All()); diff != "" {
		t.Errorf("events after cleanup (-want +got):\n%s", diff)
	}
}
