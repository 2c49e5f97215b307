package engine_test

import (
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/engine"
	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/eventbus"
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
