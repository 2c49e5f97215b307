package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/clock"
	"github.com/tasker-go/tasker/internal/netguard"
	"github.com/tasker-go/tasker/internal/secret"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/sqlite"
	"github.com/tasker-go/tasker/internal/template"
)

func TestSignAndVerify(t *testing.T) {
	t.Parallel()
	key, body := []byte("k3y"), []byte(`{"delivery_id":"d"}`)
	now := time.Unix(1_800_000_000, 0)
	h := Sign(key, now.Unix(), body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") || len(h) != len("t=1800000000,v1=")+64 {
		t.Fatalf("header = %q", h)
	}
	if err := Verify(key, h, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"other body":   Verify(key, h, []byte(`{}`), now, 0),
		"other key":    Verify([]byte("x"), h, body, now, 0),
		"too old":      Verify(key, h, body, now.Add(time.Hour), 5*time.Minute),
		"malformed":    Verify(key, "v1=abc", body, now, 0),
		"forged t":     Verify(key, strings.Replace(h, "t=1800000000", "t=1800000001", 1), body, now, 0),
		"empty header": Verify(key, "", body, now, 0),
	} {
		if !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: err = %v, want ErrBadSignature", name, err)
		}
	}
	// Several v1 values (a rotated key) verify when one matches.
	if err := Verify(key, h+",v1=00", body, now, 0); err != nil {
		t.Errorf("two signatures: %v", err)
	}
}

// setup opens a store with one subscription to url and n pending
// deliveries.
func setup(t *testing.T, url string, policy string, n int) (*sqlite.Store, *clock.Fake, *Deliverer) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	subs, err := template.ParseSubscriptions("subs.yaml", []byte(`subscriptions:
  - name: ops
    events: ["*"]
    url: `+url+`
    secret: ${env:WH_SECRET}
    headers: {Authorization: "Bearer ${env:WH_TOKEN}"}
    retry: `+policy+`
`))
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	if _, err := SyncServer(ctx, st, subs, clk.Now()); err != nil {
		t.Fatal(err)
	}
	var ds []*store.Delivery
	for i := range n {
		ds = append(ds, &store.Delivery{ID: "d-" + string(rune('a'+i)), SubscriptionName: "ops", EventCursor: int64(i + 1), EventName: "task.completed",
			TaskID: "t", Namespace: "shop", Payload: json.RawMessage(`{"delivery_id":"x"}`)})
	}
	if err := st.SubscriptionAdvance(ctx, &store.SubscriptionAdvanceParams{ID: "server/ops", From: 0, To: int64(n), Deliveries: ds, Now: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	guard, _ := netguard.ParsePolicy([]string{"127.0.0.1"})
	env := map[string]string{"WH_SECRET": "s3cret-value", "WH_TOKEN": "tok-abcdef"}
	d := New(Config{Store: st, Guard: guard, Clock: clk, Rand: func() float64 { return 0.5 },
		Secrets: &secret.Policy{EnvPatterns: []string{"WH_*"}, LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}})
	return st, clk, d
}

func TestDeliveryRetriesThenFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer tok-abcdef" {
			w.WriteHeader(400)
			return
		}
		w.WriteHeader(500)
		w.Write([]byte("broken; your token was tok-abcdef"))
	}))
	defer srv.Close()
	st, clk, d := setup(t, srv.URL+"/in?key=x", "{limit: 3, backoff: {initial: 10s, max: 1m, jitter: 0}}", 1)
	if n, err := d.DeliverDue(ctx); n != 1 || err != nil {
		t.Fatalf("DeliverDue = %d, %v", n, err)
	}
	got, _ := st.DeliveryGet(ctx, "d-a")
	if got.State != store.DeliveryPending || got.Attempts != 1 || got.LastStatus != 500 || !got.NextAttemptAt.Equal(clk.Now().Add(10*time.Second)) {
		t.Fatalf("after one failure: %+v", got)
	}
	if want := "POST " + srv.URL + "/in?…: status 500: broken; your token was [REDACTED]"; got.LastError != want {
		t.Errorf("last error = %q, want %q", got.LastError, want)
	}
	// Not due yet.
	if n, _ := d.DeliverDue(ctx); n != 0 {
		t.Fatalf("sent before its time")
	}
	clk.Advance(10 * time.Second)
	d.DeliverDue(ctx)
	got, _ = st.DeliveryGet(ctx, "d-a")
	if got.Attempts != 2 || !got.NextAttemptAt.Equal(clk.Now().Add(20*time.Second)) {
		t.Fatalf("after two failures: %+v", got)
	}
	clk.Advance(20 * time.Second)
	d.DeliverDue(ctx)
	got, _ = st.DeliveryGet(ctx, "d-a")
	if got.State != store.DeliveryFailed || got.Attempts != 3 || calls.Load() != 3 {
		t.Fatalf("after the last attempt: %+v (%d calls)", got, calls.Load())
	}
}

func TestDeliveryHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(429)
		case 2:
			w.Header().Set("Retry-After", "3600") // capped by the policy's max
			w.WriteHeader(503)
		default:
			w.WriteHeader(202)
		}
	}))
	defer srv.Close()
	st, clk, d := setup(t, srv.URL, "{limit: 5, backoff: {initial: 1s, max: 2m}}", 1)
	d.DeliverDue(ctx)
	got, _ := st.DeliveryGet(ctx, "d-a")
	if !got.NextAttemptAt.Equal(clk.Now().Add(30 * time.Second)) {
		t.Fatalf("next attempt %s, want in 30s", got.NextAttemptAt.Sub(clk.Now()))
	}
	clk.Advance(30 * time.Second)
	d.DeliverDue(ctx)
	got, _ = st.DeliveryGet(ctx, "d-a")
	if !got.NextAttemptAt.Equal(clk.Now().Add(2 * time.Minute)) {
		t.Fatalf("next attempt %s, want the 2m cap", got.NextAttemptAt.Sub(clk.Now()))
	}
	clk.Advance(2 * time.Minute)
	d.DeliverDue(ctx)
	got, _ = st.DeliveryGet(ctx, "d-a")
	if got.State != store.DeliveryDelivered || got.LastStatus != 202 || !got.DeliveredAt.Equal(clk.Now()) {
		t.Fatalf("delivered = %+v", got)
	}
}

func TestDeliveryRefusesPrivateDestinations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	st, _, d := setup(t, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1), "{limit: 1}", 1)
	d.client = (&netguard.Policy{}).Client(time.Second, 5) // nothing allowlisted
	d.DeliverDue(ctx)
	got, _ := st.DeliveryGet(ctx, "d-a")
	if got.State != store.DeliveryFailed || !strings.Contains(got.LastError, "destination refused") || calls.Load() != 0 {
		t.Fatalf("delivery = %+v, %d calls", got, calls.Load())
	}
}

// While no subscription is active, wake-ups (every commit) cost nothing;
// a kick (a new subscription, a delivery queued again) runs a pass.
func TestIdleDelivererIgnoresWakeUps(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := New(Config{Store: st, PollInterval: time.Hour})
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// The first pass finds no subscription.
	settled := func() int64 {
		for last := int64(-1); ; {
			time.Sleep(50 * time.Millisecond)
			n := st.Statements()
			if n == last {
				return n
			}
			last = n
		}
	}
	before := settled()
	for range 20 {
		d.Wake()
		time.Sleep(time.Millisecond)
	}
	if after := settled(); after != before {
		t.Fatalf("wake-ups without a subscription ran %d statements, want none", after-before)
	}
	d.Kick()
	if after := settled(); after == before {
		t.Fatal("a kick ran no pass")
	}
}

// A receiver that hangs holds its send's slot, not the deliverer: a
// delivery queued meanwhile goes out while the first one still waits.
func TestSlowReceiverDoesNotHoldBackOthers(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	defer close(release)
	st, clk, d := setup(t, srv.URL, "{limit: 3}", 1)
	d.cfg.PollInterval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("the first delivery to reach the receiver", func() bool { return calls.Load() == 1 })
	if err := st.SubscriptionAdvance(ctx, &store.SubscriptionAdvanceParams{ID: "server/ops", From: 1, To: 2, Now: clk.Now(),
		Deliveries: []*store.Delivery{{ID: "d-b", SubscriptionName: "ops", EventCursor: 2, EventName: "task.completed",
			TaskID: "t", Namespace: "shop", Payload: json.RawMessage(`{"delivery_id":"y"}`)}}}); err != nil {
		t.Fatal(err)
	}
	d.Kick()
	waitFor("the second delivery to be delivered", func() bool {
		got, err := st.DeliveryGet(ctx, "d-b")
		return err == nil && got.State == store.DeliveryDelivered
	})
	if got, _ := st.DeliveryGet(ctx, "d-a"); got.State != store.DeliveryPending {
		t.Fatalf("the hanging delivery is %s, want still pending", got.State)
	}
}
