// Command ecommerce runs a customer order through Tasker, with the engine
// embedded as a library and every step performed by a Go handler:
//
//	validate_cart → process_payment → update_inventory → create_order → send_confirmation
//
// The workflow is the template order.yaml, embedded in the binary. Its
// context is the order (cart items, payment, customer), checked against the
// template's JSON Schema before anything is stored. The handlers work on an
// in-memory Shop that stands for real services:
//
//   - process_payment meets a gateway time-out on its first attempt and asks
//     to be retried 200 ms later (tasker.RetryAfter); a card number that
//     fails the Luhn check is a permanent failure (tasker.Permanent);
//   - create_order publishes the custom event order.created, declared in
//     the template (in.Publish).
//
// The program opens a client on a SQLite database, registers the template,
// prints the task's progress from the engine's events, runs the task to its
// end and prints each step's result.
//
// Usage, from the repository root:
//
//	go run ./examples/ecommerce                      # the sample order, a temporary database
//	go run ./examples/ecommerce -context order.json  # another order
//	go run ./examples/ecommerce -db orders.db        # keep the database (tasker task show ... --db orders.db)
//
// Exit status: 0 when the order's task completes, 1 when it does not, 2 for
// bad input (including an order that does not match the schema).
package main

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tasker-go/tasker"
)

// orderTemplate is the workflow: steps, dependencies, retry policy, the
// context's JSON Schema and the order.created event.
//
//go:embed order.yaml
var orderTemplate []byte

// sampleOrder is the order run when no -context file is given.
const sampleOrder = `{
  "items": [
    {"product_id": "espresso-beans-1kg", "quantity": 2, "price": 14.50},
    {"product_id": "burr-grinder", "quantity": 1, "price": 89.00}
  ],
  "payment": {"method": "card", "amount": 118.00, "card_number": "4242424242424242"},
  "customer": {"email": "ada@example.com", "name": "Ada Lovelace"}
}`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is the program, with its exit status.
func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("ecommerce", flag.ContinueOnError)
	flags.SetOutput(stderr)
	dbPath := flags.String("db", "", "SQLite database file (default: a temporary file, removed on exit)")
	contextFile := flags.String("context", "", "read the order, the task context, from this JSON file (default: a sample order)")
	timeout := flags.Duration("timeout", time.Minute, "give up waiting for the task after this long")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "ecommerce: unexpected arguments: %v\n", flags.Args())
		return 2
	}

	order := json.RawMessage(sampleOrder)
	if *contextFile != "" {
		b, err := os.ReadFile(*contextFile)
		if err != nil {
			fmt.Fprintf(stderr, "ecommerce: %v\n", err)
			return 2
		}
		order = b
	}
	if *dbPath == "" {
		dir, err := os.MkdirTemp("", "tasker-ecommerce-")
		if err != nil {
			fmt.Fprintf(stderr, "ecommerce: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		*dbPath = filepath.Join(dir, "orders.db")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	client, err := Open(ctx, *dbPath, NewShop())
	if err != nil {
		fmt.Fprintf(stderr, "ecommerce: %v\n", err)
		return 1
	}
	defer client.Close()

	task, err := RunOrder(ctx, client, order, stdout)
	if errors.Is(err, tasker.ErrInvalidRequest) {
		fmt.Fprintf(stderr, "ecommerce: the order was refused: %v\n", err)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "ecommerce: %v\n", err)
		return 1
	}
	PrintResults(stdout, task)
	if task.State != tasker.TaskComplete {
		return 1
	}
	return 0
}

// Open opens a client on the SQLite database at path, with the shop's step
// handlers, and registers the order template. The built-in "command"
// handler is left out: this workflow needs only Go handlers.
func Open(ctx context.Context, path string, shop *Shop) (*tasker.Client, error) {
	client, err := tasker.Open(ctx, tasker.Config{Database: path, Handlers: shop.Handlers(), DisableCommandHandler: true})
	if err != nil {
		return nil, err
	}
	tmpl, err := tasker.ParseTemplate("order.yaml", orderTemplate, &tasker.TemplateOpts{KnownHandlers: client.HandlerNames()})
	if err == nil {
		err = client.RegisterTemplate(ctx, tmpl)
	}
	if err != nil {
		client.Close()
		return nil, err
	}
	return client, nil
}

// RunOrder creates a task for the order, runs it in this process until it
// is finished, and returns it with its steps. It prints a line to out for
// each step event and for order.created. The client must not be started
// yet; RunOrder starts it and stops it.
//
// An order that does not match the template's schema returns a
// *tasker.ContextError (which wraps tasker.ErrInvalidRequest) and stores
// nothing.
func RunOrder(ctx context.Context, client *tasker.Client, order json.RawMessage, out io.Writer) (*tasker.Task, error) {
	created, err := client.CreateTask(ctx, tasker.TaskRequest{Namespace: "ecommerce", Name: "order", Context: order})
	if err != nil {
		return nil, err
	}
	task := created.Task
	fmt.Fprintf(out, "task %s (%s/%s@%s) created\n", task.ID, task.Namespace, task.Name, task.Version)

	// Subscribe before Start, so no event of the task is missed.
	sub := client.Subscribe(&tasker.SubscribeOpts{TaskID: task.ID, Buffer: 1024, Names: []string{
		"task.completed", "task.failed", "step.execution_requested", "step.completed",
		"step.attempt_failed", "step.failed", "order.created",
	}})
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for ev := range sub.Events() {
			fmt.Fprintf(out, "%+8.3fs  %s\n", ev.OccurredAt.Sub(task.CreatedAt).Seconds(), describe(ev))
		}
	}()

	if err := client.Start(ctx, &tasker.StartOpts{TaskIDs: []string{task.ID}}); err != nil {
		sub.Close()
		<-printed
		return nil, err
	}
	final, waitErr := client.WaitTask(ctx, task.ID)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	stopErr := client.Stop(stopCtx)
	// The engine has stopped: Close delivers the queued events, then ends
	// the printer's loop.
	sub.Close()
	<-printed
	if waitErr != nil {
		return nil, fmt.Errorf("wait for task %s: %w", task.ID, waitErr)
	}
	return final, stopErr
}

// describe renders an event as a progress line.
func describe(ev tasker.Event) string {
	switch ev.Name {
	case tasker.EventStepExecutionRequested:
		return fmt.Sprintf("%-18s attempt %d/%d started", ev.StepName, ev.Attempt, ev.RetryLimit)
	case tasker.EventStepCompleted:
		return fmt.Sprintf("%-18s complete (%dms)", ev.StepName, ev.ExecutionDurationMS)
	case tasker.EventStepAttemptFailed:
		return fmt.Sprintf("%-18s attempt %d failed, will retry: %s", ev.StepName, ev.Attempt, ev.ErrorMessage)
	case tasker.EventStepFailed:
		return fmt.Sprintf("%-18s failed after %d attempt(s): %s", ev.StepName, ev.Attempt, ev.ErrorMessage)
	case tasker.EventTaskCompleted:
		return "task complete"
	case tasker.EventTaskFailed:
		return "task failed: " + ev.ErrorMessage
	case "order.created":
		return fmt.Sprintf("%-18s event: order %v for %v, total %.2f", ev.Name, ev.Data["order_id"], ev.Data["customer_email"], ev.Data["total"])
	}
	return string(ev.Name)
}

// PrintResults prints the final state of a task and the result or last
// error of each step.
func PrintResults(out io.Writer, task *tasker.Task) {
	fmt.Fprintf(out, "\ntask %s: %s, %d/%d steps done in %s\n", task.ID, task.State, task.StepsDone, task.StepsTotal,
		task.FinishedAt.Sub(task.StartedAt).Round(time.Millisecond))
	for _, s := range task.Steps {
		detail := string(s.Results)
		if s.State != tasker.StepComplete {
			detail = s.LastError
		}
		line := fmt.Sprintf("  %-18s %-9s attempts %d/%d  %s", s.Name, s.State, s.Attempts, s.RetryLimit, detail)
		fmt.Fprintln(out, strings.TrimRight(line, " "))
	}
}

// Order is the task context: what the customer bought and how they pay.
type Order struct {
	Items    []Item   `json:"items"`
	Payment  Payment  `json:"payment"`
	Customer Customer `json:"customer"`
}

// Item is one line of the cart; Price is the unit price.
type Item struct {
	ProductID string  `json:"product_id"`
	Quantity  int     `json:"quantity"`
	Price     float64 `json:"price"`
}

// Payment is how the customer pays; Amount must equal the cart's total.
type Payment struct {
	Method     string  `json:"method"`
	Amount     float64 `json:"amount"`
	CardNumber string  `json:"card_number,omitempty"`
}

// Customer is who placed the order.
type Customer struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

// Cart is the result of validate_cart.
type Cart struct {
	Lines int     `json:"lines"`
	Units int     `json:"units"`
	Total float64 `json:"total"`
}

// Charge is the result of process_payment.
type Charge struct {
	TransactionID string  `json:"transaction_id"`
	Method        string  `json:"method"`
	Amount        float64 `json:"amount"`
	// Attempt is the attempt of the step that charged the customer.
	Attempt int `json:"attempt"`
}

// Reservation is the result of update_inventory.
type Reservation struct {
	Items []Reserved `json:"items"`
}

// Reserved is the stock reserved for one product.
type Reserved struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
	Remaining int    `json:"remaining"`
}

// Placed is the result of create_order.
type Placed struct {
	OrderID       string  `json:"order_id"`
	TransactionID string  `json:"transaction_id"`
	Total         float64 `json:"total"`
}

// Confirmation is the result of send_confirmation.
type Confirmation struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

// Shop stands for the services the step handlers call: a catalog with
// stock, a payment gateway, an order database and a mailer, all in memory.
// A step may run more than once (a retry, or a worker crash), so every
// operation with a side effect is idempotent per task: it is keyed by the
// task ID, never by the attempt. Shop is safe for concurrent use.
type Shop struct {
	mu      sync.Mutex
	stock   map[string]int
	charges map[string]Charge      // by task ID
	holds   map[string]Reservation // by task ID
	orders  map[string]Placed      // by task ID
	outbox  map[string]Confirmation
}

// NewShop returns a shop with a small catalog in stock.
func NewShop() *Shop {
	return &Shop{
		stock: map[string]int{
			"espresso-beans-1kg": 120,
			"burr-grinder":       8,
			"milk-jug":           40,
			"paper-filters":      500,
		},
		charges: map[string]Charge{},
		holds:   map[string]Reservation{},
		orders:  map[string]Placed{},
		outbox:  map[string]Confirmation{},
	}
}

// Handlers returns the shop's step handlers by name, as the template names
// them.
func (s *Shop) Handlers() map[string]tasker.Handler {
	return map[string]tasker.Handler{
		"validate_cart":     tasker.HandlerFunc(s.validateCart),
		"process_payment":   tasker.HandlerFunc(s.processPayment),
		"update_inventory":  tasker.HandlerFunc(s.updateInventory),
		"create_order":      tasker.HandlerFunc(s.createOrder),
		"send_confirmation": tasker.HandlerFunc(s.sendConfirmation),
	}
}

// Stock returns how many units of a product are left.
func (s *Shop) Stock(productID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stock[productID]
}

// decodeOrder reads the task context. The schema was checked when the task
// was created, so a failure here cannot be fixed by a retry.
func decodeOrder(in *tasker.StepInput) (Order, error) {
	var o Order
	if err := in.DecodeContext(&o); err != nil {
		return o, tasker.Permanent(err)
	}
	return o, nil
}

// validateCart checks that every product exists and that the payment
// amount is the cart's total.
func (s *Shop) validateCart(_ context.Context, in *tasker.StepInput) (any, error) {
	order, err := decodeOrder(in)
	if err != nil {
		return nil, err
	}
	cart := Cart{Lines: len(order.Items)}
	var totalCents int64
	s.mu.Lock()
	for _, it := range order.Items {
		if _, ok := s.stock[it.ProductID]; !ok {
			s.mu.Unlock()
			return nil, tasker.Permanent(fmt.Errorf("unknown product %q", it.ProductID))
		}
		cart.Units += it.Quantity
		totalCents += cents(it.Price) * int64(it.Quantity)
	}
	s.mu.Unlock()
	if paid := cents(order.Payment.Amount); paid != totalCents {
		return nil, tasker.Permanent(fmt.Errorf("payment amount %.2f does not match the cart total %.2f",
			float64(paid)/100, float64(totalCents)/100))
	}
	cart.Total = float64(totalCents) / 100
	return cart, nil
}

// processPayment charges the customer. The gateway times out on the first
// attempt of every charge, and the engine retries 200 ms later. An invalid
// card number fails at once: retrying cannot fix it.
func (s *Shop) processPayment(ctx context.Context, in *tasker.StepInput) (any, error) {
	order, err := decodeOrder(in)
	if err != nil {
		return nil, err
	}
	var cart Cart
	if err := in.DecodeDependency("validate_cart", &cart); err != nil {
		return nil, tasker.Permanent(err)
	}
	if order.Payment.Method == "card" && !luhnValid(order.Payment.CardNumber) {
		return nil, tasker.Permanent(fmt.Errorf("card number ending in %s is invalid", lastDigits(order.Payment.CardNumber, 4)))
	}

	s.mu.Lock()
	charge, done := s.charges[in.TaskID]
	s.mu.Unlock()
	if done { // an earlier attempt charged the customer but its result was lost
		return charge, nil
	}

	// Talking to the gateway takes a moment.
	select {
	case <-time.After(50 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if in.Attempt == 1 {
		in.Logger.Info("payment gateway timed out")
		return nil, tasker.RetryAfter(200*time.Millisecond, errors.New("payment gateway timed out"))
	}

	charge = Charge{TransactionID: "txn_" + shortID(in.TaskID, in.StepName), Method: order.Payment.Method,
		Amount: cart.Total, Attempt: in.Attempt}
	s.mu.Lock()
	s.charges[in.TaskID] = charge
	s.mu.Unlock()
	return charge, nil
}

// updateInventory reserves the stock of every item, all or nothing.
func (s *Shop) updateInventory(_ context.Context, in *tasker.StepInput) (any, error) {
	order, err := decodeOrder(in)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if hold, done := s.holds[in.TaskID]; done {
		return hold, nil
	}
	want := map[string]int{}
	for _, it := range order.Items {
		want[it.ProductID] += it.Quantity
	}
	for id, n := range want {
		if s.stock[id] < n {
			return nil, tasker.Permanent(fmt.Errorf("out of stock: %s (%d wanted, %d left)", id, n, s.stock[id]))
		}
	}
	var hold Reservation
	for _, it := range order.Items {
		s.stock[it.ProductID] -= it.Quantity
		hold.Items = append(hold.Items, Reserved{ProductID: it.ProductID, Quantity: it.Quantity, Remaining: s.stock[it.ProductID]})
	}
	s.holds[in.TaskID] = hold
	return hold, nil
}

// createOrder records the order and publishes order.created. The event is
// delivered, and stored in the event log, only once the step's success is
// committed.
func (s *Shop) createOrder(_ context.Context, in *tasker.StepInput) (any, error) {
	order, err := decodeOrder(in)
	if err != nil {
		return nil, err
	}
	var charge Charge
	if err := in.DecodeDependency("process_payment", &charge); err != nil {
		return nil, tasker.Permanent(err)
	}
	placed := Placed{OrderID: "ord_" + shortID(in.TaskID), TransactionID: charge.TransactionID, Total: charge.Amount}
	s.mu.Lock()
	s.orders[in.TaskID] = placed
	s.mu.Unlock()

	err = in.Publish("order.created", map[string]any{
		"order_id":       placed.OrderID,
		"customer_email": order.Customer.Email,
		"total":          placed.Total,
		"items":          len(order.Items),
	})
	if err != nil { // the payload does not match the event's schema: a bug
		return nil, tasker.Permanent(err)
	}
	return placed, nil
}

// sendConfirmation emails the customer, once per order.
func (s *Shop) sendConfirmation(_ context.Context, in *tasker.StepInput) (any, error) {
	order, err := decodeOrder(in)
	if err != nil {
		return nil, err
	}
	var placed Placed
	if err := in.DecodeDependency("create_order", &placed); err != nil {
		return nil, tasker.Permanent(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sent, done := s.outbox[in.TaskID]; done {
		return sent, nil
	}
	mail := Confirmation{
		To:      order.Customer.Email,
		Subject: fmt.Sprintf("%s, your order %s is confirmed (%.2f)", order.Customer.Name, placed.OrderID, placed.Total),
	}
	s.outbox[in.TaskID] = mail
	return mail, nil
}

// cents converts an amount to whole cents.
func cents(amount float64) int64 { return int64(math.Round(amount * 100)) }

// shortID derives a stable identifier from its parts.
func shortID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "/")))
	return hex.EncodeToString(sum[:6])
}

// luhnValid reports whether a card number passes the Luhn checksum.
func luhnValid(number string) bool {
	if len(number) < 12 {
		return false
	}
	sum := 0
	for i := range len(number) {
		c := number[len(number)-1-i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// lastDigits returns the last n characters of s, for messages that must not
// show a whole card number.
func lastDigits(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
