package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/engine"
	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/eventbus"
	"github.com/tasker-go/tasker/internal/store"
)

// The engine builds only the events some subscription may want
// (eventbus.SubscribeOpts.Interest): a subscription interested in
// task.completed alone, with no filter, receives exactly what the engine
// built: the tasks' completions, and none of the steps' events or the
// observations of their handlers.
func TestEngineBuildsOnlyWantedEvents(t *testing.T) {
	g := &gate{}
	b := setupGated(t, g, engine.Config{Concurrency: 2, PollInterval: 20 * time.Millisecond})
	sub := eventbus.Subscribe(b.bus, eventbus.SubscribeOpts[event.Event]{Buffer: 1024,
		Interest: func(name string) bool { return name == string(event.TaskCompleted) }})
	defer sub.Close()
	b.workOff(t, 3)
	completed := 0
	deadline := time.After(5 * time.Second)
	for completed < 3 {
		select {
		case ev := <-sub.Events():
			if ev.Name != event.TaskCompleted {
				t.Fatalf("received %s, which no subscription wants", ev.Name)
			}
			completed++
		case <-deadline:
			t.Fatalf("%d task.completed events, want 3", completed)
		}
	}
}

// Stop returns once the events of every change committed before it are
// published: a subscriber that blocks the publisher (a queue of one,
// read slowly) and is closed right after Stop has received the whole
// history of every task, up to its task.completed.
func TestStopPublishesCommittedEvents(t *testing.T) {
	g := &gate{}
	b := setupGated(t, g, engine.Config{Concurrency: 4, PollInterval: 20 * time.Millisecond})
	sub := eventbus.Subscribe(b.bus, eventbus.SubscribeOpts[event.Event]{Buffer: 1, Policy: eventbus.Block})
	var received []event.Event
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range sub.Events() {
			received = append(received, ev)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	const n = 5
	b.workOff(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.eng.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	sub.Close()
	<-done
	evs, err := b.st.EventList(ctx, &store.EventListParams{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, e := range evs {
		want = append(want, e.TaskID+" "+string(e.Name))
	}
	for _, ev := range received {
		if spec, ok := event.Lookup(ev.Name); ok && (spec.Kind == event.KindTaskLifecycle || spec.Kind == event.KindStepLifecycle) {
			got = append(got, ev.TaskID+" "+string(ev.Name))
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("received %d lifecycle events, the log holds %d:\nreceived:\n%s\nlogged:\n%s", len(got), len(want),
			strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A subscriber with the Block policy that stops reading does not hold Stop
// forever: its wait for publication gives up after a while.
func TestStopWithAStuckSubscriber(t *testing.T) {
	t.Parallel()
	g := &gate{}
	b := setupGated(t, g, engine.Config{Concurrency: 2, PollInterval: 20 * time.Millisecond})
	sub := eventbus.Subscribe(b.bus, eventbus.SubscribeOpts[event.Event]{Buffer: 1, Policy: eventbus.Block})
	defer sub.Close()
	b.workOff(t, 2)
	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- b.eng.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 5*time.Second {
			t.Fatalf("Stop returned after %v although a subscriber blocks publication", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Stop still waits for a subscriber that does not read")
	}
}
