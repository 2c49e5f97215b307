package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

func sub(source, name, namespace string) *store.Subscription {
	return &store.Subscription{ID: source + "/" + name, Source: source, Name: name, Namespace: namespace,
		Spec: json.RawMessage(fmt.Sprintf(`{"url": "https://hooks.example/%s"}`, name))}
}

// testSubscriptionSync: new subscriptions start at the end of the log,
// re-syncing keeps the cursor, and dropped ones are deactivated.
func testSubscriptionSync(t *testing.T, b *bundle) {
	b.create(t, single("a"), createOpts{})
	head := lastCursor(t, b)
	subs, err := b.s.SubscriptionSync(b.ctx, &store.SubscriptionSyncParams{Source: "server",
		Subscriptions: []*store.Subscription{sub("server", "one", ""), sub("server", "two", "shop")}, Now: b.now})
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 || subs[0].Cursor != head || !subs[0].Active || subs[1].Namespace != "shop" || subs[0].ID != "server/one" {
		t.Fatalf("synced = %+v, want two active at cursor %d", subs, head)
	}
	if err := b.s.SubscriptionAdvance(b.ctx, &store.SubscriptionAdvanceParams{ID: "server/one", From: head, To: head + 5, Now: b.now}); err != nil {
		t.Fatal(err)
	}
	b.tick(time.Second)
	changed := sub("server", "one", "")
	changed.Spec = json.RawMessage(`{"url": "https://hooks.example/moved"}`)
	subs, err = b.s.SubscriptionSync(b.ctx, &store.SubscriptionSyncParams{Source: "server", Subscriptions: []*store.Subscription{changed}, Now: b.now})
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 || subs[0].Cursor != head+5 || !subs[0].UpdatedAt.Equal(b.now) || subs[1].Active {
		t.Fatalf("re-synced = %+v, want one kept at %d and updated, two inactive", subs, head+5)
	}
	var spec map[string]string
	if err := json.Unmarshal(subs[0].Spec, &spec); err != nil || spec["url"] != "https://hooks.example/moved" {
		t.Fatalf("spec = %s", subs[0].Spec)
	}
	// Another source is independent.
	if _, err := b.s.SubscriptionSync(b.ctx, &store.SubscriptionSyncParams{Source: "template:shop/order@1.0.0",
		Subscriptions: []*store.Subscription{sub("template:shop/order@1.0.0", "one", "shop")}, Now: b.now}); err != nil {
		t.Fatal(err)
	}
	all, err := b.s.SubscriptionList(b.ctx, &store.SubscriptionListParams{})
	if err != nil || len(all) != 3 {
		t.Fatalf("list = %d, %v", len(all), err)
	}
	active, _ := b.s.SubscriptionList(b.ctx, &store.SubscriptionListParams{ActiveOnly: true})
	shop, _ := b.s.SubscriptionList(b.ctx, &store.SubscriptionListParams{Namespace: "shop"})
	if len(active) != 2 || len(shop) != 2 {
		t.Fatalf("active = %d, shop = %d; want 2 and 2", len(active), len(shop))
	}
	// A stale advance changes nothing.
	err = b.s.SubscriptionAdvance(b.ctx, &store.SubscriptionAdvanceParams{ID: "server/one", From: head, To: head + 9, Now: b.now,
		Deliveries: []*store.Delivery{delivery("d-stale", head+1)}})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale advance: err = %v, want ErrConflict", err)
	}
	if _, err := b.s.DeliveryGet(b.ctx, "d-stale"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a stale advance created a delivery: %v", err)
	}
}

func lastCursor(t *testing.T, b *bundle) int64 {
	t.Helper()
	evs, err := b.s.EventList(b.ctx, &store.EventListParams{Limit: 10000})
	if err != nil || len(evs) == 0 {
		t.Fatalf("events: %d, %v", len(evs), err)
	}
	return evs[len(evs)-1].Cursor
}

func delivery(id string, cursor int64) *store.Delivery {
	return &store.Delivery{ID: id, SubscriptionName: "one", EventCursor: cursor, EventName: "task.completed", TaskID: "t-" + id,
		Namespace: "shop", Payload: json.RawMessage(`{"event": {"name": "task.completed"}}`)}
}

// testDeliveries: the lifecycle of deliveries, claims that never overlap,
// stale outcomes refused, operator retries and retention.
func testDeliveries(t *testing.T, b *bundle) {
	if _, err := b.s.SubscriptionSync(b.ctx, &store.SubscriptionSyncParams{Source: "server",
		Subscriptions: []*store.Subscription{sub("server", "one", "")}, Now: b.now}); err != nil {
		t.Fatal(err)
	}
	var ds []*store.Delivery
	for i := range 30 {
		ds = append(ds, delivery(fmt.Sprintf("d-%02d", i), int64(i+1)))
	}
	if err := b.s.SubscriptionAdvance(b.ctx, &store.SubscriptionAdvanceParams{ID: "server/one", From: 0, To: 30, Deliveries: ds, Now: b.now}); err != nil {
		t.Fatal(err)
	}
	// The same events again (a retried fan-out) create nothing new.
	if err := b.s.SubscriptionAdvance(b.ctx, &store.SubscriptionAdvanceParams{ID: "server/one", From: 30, To: 31,
		Deliveries: []*store.Delivery{delivery("d-dup", 5)}, Now: b.now}); err != nil {
		t.Fatal(err)
	}
	list, err := b.s.DeliveryList(b.ctx, &store.DeliveryListParams{Limit: 100})
	if err != nil || len(list) != 30 || list[0].ID != "d-29" || list[0].State != store.DeliveryPending || list[0].SubscriptionID != "server/one" {
		t.Fatalf("list = %d, %v", len(list), err)
	}
	if string(list[0].Payload) == "" || !json.Valid(list[0].Payload) || list[0].EventCursor != 30 {
		t.Fatalf("delivery = %+v", list[0])
	}
	page, _ := b.s.DeliveryList(b.ctx, &store.DeliveryListParams{Before: "d-10", Limit: 5})
	if len(page) != 5 || page[0].ID != "d-09" {
		t.Fatalf("page before d-10 = %v", ids(page))
	}

	// Four concurrent claimers share the due deliveries without overlap.
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := b.s.DeliveryClaim(b.ctx, &store.DeliveryClaimParams{Now: b.now, Lease: time.Minute, Limit: 3})
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, d := range got {
					seen[d.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 30 {
		t.Fatalf("claimed %d deliveries, want 30", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s claimed %d times", id, n)
		}
	}
	// Claimed ones are not due again until the lease passes.
	if again, _ := b.s.DeliveryClaim(b.ctx, &store.DeliveryClaimParams{Now: b.now.Add(30 * time.Second), Lease: time.Minute}); len(again) != 0 {
		t.Fatalf("claimed %d leased deliveries", len(again))
	}
	d0, _ := b.s.DeliveryGet(b.ctx, "d-00")
	if d0.Attempts != 1 || !d0.NextAttemptAt.Equal(b.now.Add(time.Minute)) {
		t.Fatalf("claimed delivery = %+v", d0)
	}
	// Outcomes.
	finish := func(id string, attempt int, state string, next time.Time, status int, msg string) error {
		return b.s.DeliveryFinish(b.ctx, &store.DeliveryFinishParams{ID: id, Attempt: attempt, State: state, NextAttemptAt: next,
			LastStatus: status, LastError: msg, Now: b.now})
	}
	if err := finish("d-00", 1, store.DeliveryDelivered, b.now, 204, ""); err != nil {
		t.Fatal(err)
	}
	if err := finish("d-01", 1, store.DeliveryPending, b.now.Add(5*time.Second), 503, "status 503"); err != nil {
		t.Fatal(err)
	}
	if err := finish("d-02", 1, store.DeliveryFailed, b.now, 0, "connection refused"); err != nil {
		t.Fatal(err)
	}
	if err := finish("d-00", 1, store.DeliveryFailed, b.now, 0, "late"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("finishing a delivered delivery: err = %v, want ErrConflict", err)
	}
	if err := finish("d-03", 7, store.DeliveryDelivered, b.now, 200, ""); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("finishing with a stale attempt: err = %v, want ErrConflict", err)
	}
	d0, _ = b.s.DeliveryGet(b.ctx, "d-00")
	if d0.State != store.DeliveryDelivered || d0.LastStatus != 204 || !d0.DeliveredAt.Equal(b.now) {
		t.Fatalf("delivered = %+v", d0)
	}
	// The retried one is due again at its time, with its attempt counted.
	due, _ := b.s.DeliveryClaim(b.ctx, &store.DeliveryClaimParams{Now: b.now.Add(6 * time.Second), Lease: time.Minute})
	if len(due) != 1 || due[0].ID != "d-01" || due[0].Attempts != 2 || due[0].LastStatus != 503 {
		t.Fatalf("due = %+v", due)
	}
	failed, _ := b.s.DeliveryList(b.ctx, &store.DeliveryListParams{State: store.DeliveryFailed})
	if len(failed) != 1 || failed[0].LastError != "connection refused" {
		t.Fatalf("failed = %+v", failed)
	}
	subs, _ := b.s.SubscriptionList(b.ctx, &store.SubscriptionListParams{})
	if subs[0].Pending != 28 || subs[0].Delivered != 1 || subs[0].Failed != 1 {
		t.Fatalf("counts = %d/%d/%d", subs[0].Pending, subs[0].Delivered, subs[0].Failed)
	}
	// An operator sends the failed one again; a pending one cannot be.
	b.tick(time.Minute)
	r, err := b.s.DeliveryRetry(b.ctx, "d-02", b.now)
	if err != nil || r.State != store.DeliveryPending || r.Attempts != 0 || !r.NextAttemptAt.Equal(b.now) {
		t.Fatalf("retry = %+v, %v", r, err)
	}
	if _, err := b.s.DeliveryRetry(b.ctx, "d-02", b.now); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("retrying a pending delivery: err = %v, want ErrConflict", err)
	}
	if _, err := b.s.DeliveryRetry(b.ctx, "nope", b.now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("retrying an unknown delivery: err = %v, want ErrNotFound", err)
	}
	byTask, _ := b.s.DeliveryList(b.ctx, &store.DeliveryListParams{TaskID: "t-d-02"})
	bySub, _ := b.s.DeliveryList(b.ctx, &store.DeliveryListParams{SubscriptionID: "server/other"})
	byNS, _ := b.s.DeliveryList(b.ctx, &store.DeliveryListParams{Namespace: "shop", Limit: 3})
	if len(byTask) != 1 || len(bySub) != 0 || len(byNS) != 3 {
		t.Fatalf("filters: task %d, subscription %d, namespace %d", len(byTask), len(bySub), len(byNS))
	}
	// Retention deletes delivered deliveries only.
	n, err := b.s.DeliveryDeleteDelivered(b.ctx, b.now)
	if err != nil || n != 1 {
		t.Fatalf("deleted %d, %v; want 1", n, err)
	}
	if _, err := b.s.DeliveryGet(b.ctx, "d-00"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the delivered delivery survived: %v", err)
	}
}

func ids(ds []*store.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}
