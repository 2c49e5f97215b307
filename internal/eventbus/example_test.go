package eventbus_test

import (
	"fmt"
	"strings"

	"github.com/tasker-go/tasker/internal/eventbus"
)

type stepCompleted struct {
	TaskID string
	Step   string
}

// A channel subscription: Close stops new events, and the ones already queued
// can still be received before the channel reports closed.
func Example() {
	bus := eventbus.New(eventbus.Config{})
	defer bus.Close()

	sub := eventbus.Subscribe(bus, eventbus.SubscribeOpts[stepCompleted]{})
	eventbus.Publish(bus, stepCompleted{TaskID: "t1", Step: "fetch"})
	eventbus.Publish(bus, stepCompleted{TaskID: "t1", Step: "transform"})
	eventbus.Publish(bus, "a string is another topic")
	sub.Close()
	eventbus.Publish(bus, stepCompleted{TaskID: "t1", Step: "too late"})

	for ev := range sub.Events() {
		fmt.Println(ev.TaskID, ev.Step)
	}
	// Output:
	// t1 fetch
	// t1 transform
}

// A callback subscription with a filter. The callback runs on the
// subscription's goroutine; Done reports that it has returned.
func ExampleSubscribeFunc() {
	bus := eventbus.New(eventbus.Config{})
	defer bus.Close()

	var steps []string // written only by the callback until Done is closed
	sub := eventbus.SubscribeFunc(bus, eventbus.SubscribeOpts[stepCompleted]{
		Policy: eventbus.Block, // see every event
		Filter: func(ev stepCompleted) bool { return ev.TaskID == "t2" },
	}, func(ev stepCompleted) {
		steps = append(steps, ev.Step)
	})

	eventbus.Publish(bus, stepCompleted{TaskID: "t1", Step: "fetch"})
	eventbus.Publish(bus, stepCompleted{TaskID: "t2", Step: "fetch"})
	eventbus.Publish(bus, stepCompleted{TaskID: "t2", Step: "load"})

	sub.Close()
	<-sub.Done()
	fmt.Println(strings.Join(steps, ", "))
	// Output: fetch, load
}
