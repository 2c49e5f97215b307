// Package eventbus is a typed in-process publish/subscribe bus.
//
// Topics are Go types. [Publish] sends a value of type T to every
// subscription of type T on the same [Bus]; nothing else receives it. The
// topic is exactly the static type T: a subscription of an interface type
// receives only what is published as that interface type, and a defined type
// (type StepID string) is a different topic from its underlying type.
//
//	bus := eventbus.New(eventbus.Config{Logger: logger})
//	defer bus.Close()
//
//	sub := eventbus.Subscribe(bus, eventbus.SubscribeOpts[StepCompleted]{})
//	defer sub.Close()
//	go func() {
//		for ev := range sub.Events() {
//			// ...
//		}
//	}()
//
//	eventbus.Publish(bus, StepCompleted{StepID: id})
//
// Events are consumed in one of two ways: from a channel ([Subscribe],
// [Subscription.Events]), or by a callback that the bus runs on a goroutine
// owned by the subscription ([SubscribeFunc]). Events are passed by value;
// if T holds pointers, maps or slices, every subscriber sees the same
// memory and must treat it as read-only.
//
// In Tasker the bus carries in-process notifications published after a
// change commits. Correctness must never depend on an event arriving: every
// reaction can also be reached from durable state. That is why the default
// policy drops events for slow subscribers rather than slowing the engine.
//
// # Ordering
//
// Publish calls for the same type T are serialized by the bus: each one
// takes effect at a single instant between its start and its return, and no
// two take effect at the same instant. This total order of the events of
// type T is the publication order, and it is the only order the bus
// promises:
//
//   - Every subscription of T receives its events in publication order. The
//     events it receives are exactly those published while it was
//     registered (from the return of Subscribe to the call of Close) that
//     its Filter accepted and that were not dropped for it.
//   - Therefore all subscriptions of T agree on the relative order of any two
//     events they both receive, and events published by one goroutine are
//     received in the order that goroutine published them.
//   - Publish calls on different goroutines that are not otherwise
//     synchronized may be serialized in either order, but in the same order
//     for every subscription.
//   - Different types are independent: there is no ordering between events
//     of different types, even when one goroutine publishes both, and a
//     Publish of one type never waits for a Publish of another.
//   - Subscriptions do not move in lockstep: when one subscription has
//     received an event, another may not have received it yet.
//
// A Publish that races with Subscribe, Close or Bus.Close may or may not
// reach the subscription concerned; either way the order above holds.
//
// # Backpressure
//
// Every subscription has its own bounded FIFO queue of
// [SubscribeOpts].Buffer events (default [Config].DefaultBuffer, itself 1024
// by default). Publish puts the event in the queue of each subscription of
// its type, one after the other; the subscriber takes events out by
// receiving from Events or, for SubscribeFunc, on its goroutine. What
// happens when a queue is full depends on the subscription's [Policy]:
//
//   - [DropNewest] (the default): the event being published is discarded
//     for that subscription only and counted in its Dropped. Events already
//     queued are kept. Publish does not wait, so a slow or stuck DropNewest
//     subscriber never delays a publisher or any other subscriber; it only
//     misses events.
//   - [Block]: Publish waits until that queue has room, the subscription is
//     closed, or the context of [PublishContext] is done (the event is then
//     dropped and counted for each full Block subscription). The waiting
//     publisher holds the serialization of type T, so every other Publish
//     of T waits as well, and so do the other subscribers of T, which
//     receive nothing new meanwhile. A stuck Block subscriber stalls every
//     publisher of T indefinitely. Use Block for tests and for consumers
//     that must see every event and are known to keep up.
//
// A bus whose subscriptions all use DropNewest never blocks a publisher
// beyond the short time other Publish calls of the same type spend queueing
// their events. A Filter runs on the publisher's goroutine during Publish,
// so it must be fast; rejected events take no room in the queue. Publishing
// a type that has no subscriptions costs a read-locked map lookup and does
// not allocate. A publisher whose events are costly to build can ask
// [Interested] first: subscriptions that declare an Interest (by a key
// such as the event's name) let it skip the events none of them may want.
//
// A callback run by SubscribeFunc receives events one at a time on its own
// goroutine, so a slow callback fills only its own queue. A callback must not
// publish its own type to a Block subscription it is the consumer of: once
// the queue is full, Publish would wait for the callback, which waits for
// Publish. A panic in a
// callback or a Filter is recovered, logged with [Config].Logger and counted
// in the subscription's Panics; delivery continues with the next event.
//
// # Lifecycle
//
// [New] returns an open bus; the bus itself starts no goroutine. Subscribe
// starts none either. SubscribeFunc starts exactly one, owned by the
// returned [FuncSubscription].
//
// Closing a subscription ([Subscription.Close], [FuncSubscription.Close]) is
// idempotent, never waits for the consumer, and may be called from any
// goroutine, including the subscription's own callback. Once Close returns,
// no further event is queued for the subscription. Events queued before
// that are not discarded; they are drained:
//
//   - For a Subscription, the Events channel is closed when Close returns;
//     the events still queued in it can be received before the channel
//     reports closed. Done is closed at the same moment.
//   - For a FuncSubscription, the goroutine keeps calling the callback for
//     the events still queued, then returns, and Done is closed. A callback
//     that never returns keeps the goroutine alive; that is the callback's
//     bug.
//
// [Bus.Close] closes every subscription as above, makes later Publish calls
// no-ops, and makes later Subscribe and SubscribeFunc calls return
// subscriptions that are already closed (Events and Done closed, no
// goroutine, the callback never called). It is idempotent and does not wait
// for callbacks: wait on each FuncSubscription's Done to know that its
// goroutine has returned. Closing wakes a Publish waiting for room in a
// Block subscription, which then skips that subscription.
//
// There is no global bus and no package state: the program creates a Bus
// and passes it to the code that publishes or subscribes. Package
// eventbustest helps tests wait for events without sleeping.
package eventbus
