// Command orders runs an order workflow whose steps are HTTP calls to other
// services, declared in a YAML template (order.yaml) without Go handlers:
//
//	reserve_stock → charge_card → ship   …then a webhook tells the shop
//
// The program starts two local servers on free ports: a mock of the
// services the order calls (stock, payments, shipping) and the shop's
// webhook receiver. The payment service is briefly unavailable: it answers
// the first charge with 503 and Retry-After: 1, and the engine retries the
// step a second later. The template's subscription delivers task.completed
// to the receiver, which verifies its HMAC-SHA256 signature.
//
// Secrets stay out of the template and the database: the payment token and
// the webhook secret are ${env:...} references, resolved when a step runs or
// a webhook is sent (the program makes up both values for the run). The
// servers listen on 127.0.0.1, which the http handler refuses by default;
// the program allowlists it (tasker run --http-allow 127.0.0.1 does the
// same on the command line).
//
// Usage, from the repository root:
//
//	go run ./examples/orders                   # a temporary database
//	go run ./examples/orders -db orders.db     # keep it: tasker task show ID --db orders.db
//
// Exit status: 0 when the order completes and its webhook arrives, 1
// otherwise.
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tasker-go/tasker"
)

//go:embed order.yaml
var orderTemplate string

// sampleOrder is the task context.
const sampleOrder = `{"order_id": "A-1001", "sku": "tea-rooibos-250g", "quantity": 2, "amount_cents": 1598, "currency": "EUR"}`

func main() {
	db := flag.String("db", "", "SQLite database file (default: a temporary one)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *db == "" {
		dir, err := os.MkdirTemp("", "tasker-orders-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "orders:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
		*db = filepath.Join(dir, "orders.db")
	}
	out, err := Run(ctx, *db, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
	if out.Task.State != tasker.TaskComplete {
		os.Exit(1)
	}
}

// Outcome is what a run produced.
type Outcome struct {
	Task *tasker.Task
	// ChargeCalls counts the requests the payment service answered.
	ChargeCalls int
	// Hook is the verified webhook the shop received for the task.
	Hook *Received
}

// Received is a webhook delivery the receiver verified.
type Received struct {
	DeliveryID string
	Event      tasker.Event
}

// Run starts the services and the receiver, runs one order and waits for
// its webhook.
func Run(ctx context.Context, db string, w io.Writer) (*Outcome, error) {
	// The secrets of this run, handed to the engine through its
	// environment, as a deployment would.
	paymentToken, hookSecret := randomHex(16), randomHex(32)
	os.Setenv("ORDERS_PAYMENT_TOKEN", paymentToken)
	os.Setenv("ORDERS_WEBHOOK_SECRET", hookSecret)

	svc := &services{token: paymentToken}
	svcURL, stopSvc, err := serve(svc)
	if err != nil {
		return nil, err
	}
	defer stopSvc()
	rec := &receiver{secret: []byte(hookSecret), got: make(chan Received, 16)}
	hookURL, stopRec, err := serve(rec)
	if err != nil {
		return nil, err
	}
	defer stopRec()

	client, err := tasker.Open(ctx, tasker.Config{Database: db, SQLiteSynchronous: "NORMAL", PollInterval: 100 * time.Millisecond,
		HTTPAllow: []string{"127.0.0.1"}, SecretEnv: []string{"ORDERS_*"}})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	src := strings.NewReplacer("__SERVICES__", svcURL, "__HOOKS__", hookURL).Replace(orderTemplate)
	tmpl, err := tasker.ParseTemplate("order.yaml", []byte(src), &tasker.TemplateOpts{KnownHandlers: client.HandlerNames()})
	if err != nil {
		return nil, err
	}
	if err := client.RegisterTemplate(ctx, tmpl); err != nil {
		return nil, err
	}
	sub := client.Subscribe(&tasker.SubscribeOpts{Names: []string{"step.*", "task.*"}, Buffer: 256})
	defer sub.Close()
	if err := client.Start(ctx, nil); err != nil {
		return nil, err
	}
	created, err := client.CreateTask(ctx, tasker.TaskRequest{Namespace: tmpl.Namespace, Name: tmpl.Name, Context: json.RawMessage(sampleOrder)})
	if err != nil {
		return nil, err
	}
	id := created.Task.ID
	fmt.Fprintf(w, "order task %s in %s\n", id, db)
	fmt.Fprintf(w, "services at %s, shop webhook at %s/tasker\n", svcURL, hookURL)
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		progress(w, sub, id)
	}()

	task, err := client.WaitTask(ctx, id)
	if err != nil {
		return nil, err
	}
	time.Sleep(50 * time.Millisecond) // let the last events arrive
	sub.Close()
	<-printed
	out := &Outcome{Task: task, ChargeCalls: svc.chargeCalls()}
	fmt.Fprintf(w, "task %s\n", task.State)
	for _, s := range task.Steps {
		fmt.Fprintf(w, "  %-14s %-9s attempts %d  %s\n", s.Name, s.State, s.Attempts, s.Results)
	}
	// The webhook for task.completed (or task.failed).
	wait := time.NewTimer(15 * time.Second)
	defer wait.Stop()
	for {
		select {
		case r := <-rec.got:
			if r.Event.TaskID != id {
				continue
			}
			out.Hook = &r
			fmt.Fprintf(w, "the shop received %s by webhook (delivery %s, signature verified)\n", r.Event.Name, r.DeliveryID)
			return out, nil
		case <-wait.C:
			return out, errors.New("no webhook arrived within 15s")
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// progress prints the task's step events as they happen.
func progress(w io.Writer, sub *tasker.Subscription, id string) {
	for ev := range sub.Events() {
		if ev.TaskID != id {
			continue
		}
		switch ev.Name {
		case tasker.EventStepExecutionRequested:
			fmt.Fprintf(w, "  → %s: attempt %d\n", ev.StepName, ev.Attempt)
		case tasker.EventStepCompleted:
			fmt.Fprintf(w, "  ✓ %s (%d ms)\n", ev.StepName, ev.ExecutionDurationMS)
		case tasker.EventStepAttemptFailed:
			at, _ := ev.Data["next_attempt_at"].(time.Time)
			fmt.Fprintf(w, "  ↻ %s: %s; retrying at %s\n", ev.StepName, ev.ErrorMessage, at.Local().Format("15:04:05.000"))
		case tasker.EventStepFailed:
			fmt.Fprintf(w, "  ✗ %s: %s\n", ev.StepName, ev.ErrorMessage)
		}
	}
}

// services mocks stock, payments and shipping. Payments is unavailable
// for its first request.
type services struct {
	token string
	mu    sync.Mutex
	calls int
	// charges by idempotency key, so that a retried charge is not charged
	// twice.
	charges map[string]string
}

func (s *services) chargeCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *services) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&body) != nil {
		http.Error(w, `{"error": "POST a JSON object"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/v1/reservations":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": "res_%s", "sku": %q, "quantity": %v}`, body["order"], body["sku"], body["quantity"])
	case "/v1/charges":
		if r.Header.Get("Authorization") != "Bearer "+s.token {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error": "bad token"}`)
			return
		}
		if _, ok := body["amount_cents"].(float64); !ok {
			w.WriteHeader(http.StatusUnprocessableEntity)
			io.WriteString(w, `{"error": "amount_cents must be a number"}`)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.calls++
		if s.calls == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error": "payments are briefly unavailable"}`)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		if s.charges == nil {
			s.charges = map[string]string{}
		}
		id, ok := s.charges[key]
		if !ok {
			id = "ch_" + randomHex(6)
			s.charges[key] = id
		}
		w.Header().Set("Location", "/v1/charges/"+id)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": %q, "amount_cents": %v, "currency": %q}`, id, body["amount_cents"], body["currency"])
	case "/v1/shipments":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": "shp_%s", "charge": %q}`, body["order"], body["charge"])
	default:
		http.NotFound(w, r)
	}
}

// receiver is the shop's webhook endpoint.
type receiver struct {
	secret []byte
	got    chan Received
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := tasker.VerifyWebhook(rc.secret, r.Header.Get(tasker.WebhookSignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var doc struct {
		DeliveryID string       `json:"delivery_id"`
		Event      tasker.Event `json:"event"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	select {
	case rc.got <- Received{DeliveryID: doc.DeliveryID, Event: doc.Event}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

// serve starts h on a free local port.
func serve(h http.Handler) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	return "http://" + l.Addr().String(), func() { srv.Close() }, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
