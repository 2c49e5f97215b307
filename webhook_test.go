package tasker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
	"github.com/tasker-go/tasker/internal/webhook"
)

const hookTemplate = `namespace: hooks
name: order
version: 1.0.0
events:
  - {name: order.noted}
subscriptions:
  - name: ops
    events: [task.completed, step.completed, order.noted]
    url: %s/hook?team=ops
    secret: ${env:HOOK_TEST_SECRET}
    headers: {X-Team: ops}
    retry: {limit: 100, backoff: {initial: 20ms, max: 100ms}}
steps:
  - {name: a, handler: note}
  - {name: b, handler: noop, depends_on: [a]}
`

// receiver records deliveries whose signature verifies.
type receiver struct {
	secret []byte
	mu     sync.Mutex
	got    map[int64][]string // event cursor -> delivery ids
	bad    []string
	srv    *http.Server
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := webhook.Verify(r.secret, req.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		r.bad = append(r.bad, err.Error())
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var doc struct {
		DeliveryID   string `json:"delivery_id"`
		Subscription string `json:"subscription"`
		Event        tasker.Event
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.DeliveryID != req.Header.Get(webhook.HeaderDelivery) ||
		string(doc.Event.Name) != req.Header.Get(webhook.HeaderEvent) || req.Header.Get("X-Team") != "ops" || doc.Subscription != "ops" {
		r.bad = append(r.bad, fmt.Sprintf("bad delivery %v: %s %v", err, body, req.Header))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.got[doc.Event.Cursor] = append(r.got[doc.Event.Cursor], doc.DeliveryID)
	w.WriteHeader(http.StatusNoContent)
}

// Webhook deliveries survive a receiver that is down for a while and a
// restart of the engine in between: every matching event arrives at least
// once, signed.
func TestWebhooksDeliverAtLeastOnce(t *testing.T) {
	t.Setenv("HOOK_TEST_SECRET", "whsec-test-4711")
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			db, schema := filepath.Join(t.TempDir(), "hooks.db"), ""
			if backend == "postgres" {
				db = pgtest.URL(t)
				schema = pgtest.Schema(t, db)
			}
			testWebhookDelivery(t, db, schema)
		})
	}
}

func testWebhookDelivery(t *testing.T, db, schema string) {
	ctx := context.Background()
	// The receiver's address, with nothing listening yet: it is down.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	note := tasker.HandlerFunc(func(_ context.Context, in *tasker.StepInput) (any, error) {
		return map[string]bool{"noted": true}, in.Publish("order.noted", map[string]any{"by": in.StepName})
	})
	open := func() *tasker.Client {
		c, err := tasker.Open(ctx, tasker.Config{Database: db, Schema: schema, SQLiteSynchronous: "NORMAL", PollInterval: 50 * time.Millisecond,
			SweepInterval: time.Second, Handlers: map[string]tasker.Handler{"note": note}, SecretEnv: []string{"HOOK_TEST_*"},
			HTTPAllow: []string{"127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := open()
	tmpl, err := tasker.ParseTemplate("hooks.yaml", []byte(fmt.Sprintf(hookTemplate, "http://"+addr)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterTemplate(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 6 {
		res, err := c.CreateTask(ctx, tasker.TaskRequest{Namespace: "hooks", Name: "order", Context: json.RawMessage(fmt.Sprintf(`{"n": %d}`, i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Task.ID)
	}
	for _, id := range ids {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if task, err := c.WaitTask(wctx, id); err != nil || task.State != tasker.TaskComplete {
			t.Fatalf("task %s: %v", id, err)
		}
		cancel()
	}
	// The receiver is down: deliveries are retried, and stay pending.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ds, err := c.Deliveries(ctx, &tasker.DeliveryListOpts{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		retried := 0
		for _, d := range ds {
			if d.State != tasker.DeliveryPending {
				t.Fatalf("delivery %s is %s while the receiver is down", d.ID, d.State)
			}
			if d.Attempts >= 2 && d.LastStatus == 0 && d.LastError != "" {
				retried++
			}
		}
		if len(ds) == 6*4 && retried == len(ds) {
			if want := "POST http://" + addr + "/hook?…"; !slices.ContainsFunc(ds, func(d *tasker.Delivery) bool { return len(d.LastError) > len(want) && d.LastError[:len(want)] == want }) {
				t.Errorf("errors do not name the request: %q", ds[0].LastError)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries, %d retried; want 24 retried", len(ds), retried)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Restart the engine while deliveries are pending.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	rec := &receiver{secret: []byte("whsec-test-4711"), got: map[int64][]string{}}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the receiver's port was taken meanwhile: %v", err)
	}
	rec.srv = &http.Server{Handler: rec}
	go rec.srv.Serve(l)
	defer rec.srv.Close()
	c = open()
	defer c.Close()
	if err := c.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// Every matching event arrives.
	var want []int64
	for _, id := range ids {
		evs, err := c.Events(ctx, &tasker.EventListOpts{TaskID: id, Names: []string{"task.completed", "step.completed", "order.noted"}, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			want = append(want, e.Cursor)
		}
	}
	if len(want) != 24 {
		t.Fatalf("%d matching events, want 24", len(want))
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		rec.mu.Lock()
		missing := 0
		for _, cur := range want {
			if len(rec.got[cur]) == 0 {
				missing++
			}
		}
		bad := slices.Clone(rec.bad)
		rec.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("bad deliveries: %v", bad)
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events not delivered", missing, len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The deliveries are recorded as delivered, and the subscription counts
	// them.
	deadline = time.Now().Add(10 * time.Second)
	for {
		subs, err := c.Webhooks(ctx, "")
		if err != nil || len(subs) != 1 {
			t.Fatalf("webhooks: %v, %v", subs, err)
		}
		if subs[0].Delivered == 24 && subs[0].Pending == 0 {
			if subs[0].URL != "http://"+addr+"/hook?…" || subs[0].Source != "template:hooks/order@1.0.0" || !slices.Equal(subs[0].Headers, []string{"X-Team"}) {
				t.Errorf("webhook info = %+v", subs[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook counts = %+v", subs[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Each delivery id came with one event, and one event never had two ids.
	rec.mu.Lock()
	for cur, dids := range rec.got {
		for _, d := range dids[1:] {
			if d != dids[0] {
				t.Errorf("event %d arrived under two delivery ids: %v", cur, dids)
			}
		}
	}
	rec.mu.Unlock()
	// An operator can send a delivered one again.
	ds, _ := c.Deliveries(ctx, &tasker.DeliveryListOpts{State: tasker.DeliveryDelivered, Limit: 1})
	again, err := c.RetryDelivery(ctx, ds[0].ID)
	if err != nil || again.State != tasker.DeliveryPending {
		t.Fatalf("retry: %+v, %v", again, err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		d, err := c.Delivery(ctx, ds[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		rec.mu.Lock()
		n := len(rec.got[d.EventCursor])
		rec.mu.Unlock()
		if d.State == tasker.DeliveryDelivered && n >= 2 {
			if !json.Valid(d.Payload) || d.Attempts != 1 {
				t.Errorf("redelivered = %+v", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the retried delivery is %s after %d receipts", d.State, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
