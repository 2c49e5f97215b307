package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
)

// openTest opens a client on a fresh SQLite file with a fresh shop.
func openTest(t *testing.T) (context.Context, *tasker.Client, *Shop) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	shop := NewShop()
	client, err := Open(ctx, filepath.Join(t.TempDir(), "orders.db"), shop)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := client.Close(); err != nil {
			t.Error(err)
		}
	})
	return ctx, client, shop
}

func step(t *testing.T, task *tasker.Task, name string) *tasker.Step {
	t.Helper()
	for _, s := range task.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("task %s has no step %q", task.ID, name)
	return nil
}

// withOrder returns the sample order changed by edit.
func withOrder(t *testing.T, edit func(o map[string]any)) json.RawMessage {
	t.Helper()
	var o map[string]any
	if err := json.Unmarshal([]byte(sampleOrder), &o); err != nil {
		t.Fatal(err)
	}
	edit(o)
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOrderCompletes(t *testing.T) {
	t.Parallel()
	ctx, client, shop := openTest(t)
	// Block: the test must see every order.created event.
	sub := client.Subscribe(&tasker.SubscribeOpts{Names: []string{"order.created"}, Buffer: 8, Block: true})
	defer sub.Close()

	var out bytes.Buffer
	task, err := RunOrder(ctx, client, json.RawMessage(sampleOrder), &out)
	if err != nil {
		t.Fatal(err)
	}
	if task.State != tasker.TaskComplete {
		t.Fatalf("task is %s, want complete; output:\n%s", task.State, out.String())
	}
	for _, s := range task.Steps {
		if s.State != tasker.StepComplete {
			t.Errorf("step %s is %s, want complete", s.Name, s.State)
		}
	}

	pay := step(t, task, "process_payment")
	if pay.Attempts != 2 {
		t.Errorf("process_payment took %d attempts, want 2 (a gateway time-out, then success)", pay.Attempts)
	}
	var charge Charge
	if err := json.Unmarshal(pay.Results, &charge); err != nil {
		t.Fatal(err)
	}
	if charge.Amount != 118 || charge.Attempt != 2 || !strings.HasPrefix(charge.TransactionID, "txn_") {
		t.Errorf("charge = %+v, want 118.00 charged on attempt 2", charge)
	}
	var placed Placed
	if err := json.Unmarshal(step(t, task, "create_order").Results, &placed); err != nil {
		t.Fatal(err)
	}
	if placed.TransactionID != charge.TransactionID {
		t.Errorf("order has transaction %q, payment %q", placed.TransactionID, charge.TransactionID)
	}
	if got := shop.Stock("burr-grinder"); got != 7 {
		t.Errorf("burr-grinder stock = %d, want 7", got)
	}

	// order.created was delivered in process...
	select {
	case ev := <-sub.Events():
		if ev.TaskID != task.ID || ev.StepName != "create_order" || ev.Data["order_id"] != placed.OrderID {
			t.Errorf("received order.created = %+v, want order %s of task %s from create_order", ev, placed.OrderID, task.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no order.created event received")
	}
	// ...and stored in the durable event log.
	events, err := client.Events(ctx, &tasker.EventListOpts{TaskID: task.ID})
	if err != nil {
		t.Fatal(err)
	}
	var stored []tasker.Event
	for _, ev := range events {
		if ev.Name == "order.created" {
			stored = append(stored, ev)
		}
	}
	if len(stored) != 1 || stored[0].Data["order_id"] != placed.OrderID || stored[0].Data["customer_email"] != "ada@example.com" {
		t.Errorf("stored order.created events = %+v, want one for order %s", stored, placed.OrderID)
	}

	for _, want := range []string{"process_payment    attempt 1 failed, will retry: payment gateway timed out", "order.created", "task complete"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestInvalidContextIsRejected(t *testing.T) {
	t.Parallel()
	ctx, client, _ := openTest(t)
	order := withOrder(t, func(o map[string]any) {
		o["items"].([]any)[0].(map[string]any)["quantity"] = 0
	})

	task, err := RunOrder(ctx, client, order, io.Discard)
	if err == nil {
		t.Fatalf("an order with quantity 0 was accepted: task %s", task.ID)
	}
	var ce *tasker.ContextError
	if !errors.As(err, &ce) || !errors.Is(err, tasker.ErrInvalidRequest) {
		t.Fatalf("error = %v (%T), want a *tasker.ContextError wrapping ErrInvalidRequest", err, err)
	}
	if !strings.Contains(strings.Join(ce.Problems, "\n"), "/items/0/quantity") {
		t.Errorf("problems %q do not point at /items/0/quantity", ce.Problems)
	}
	tasks, err := client.Tasks(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 0 {
		t.Errorf("an invalid request stored %d task(s)", len(tasks))
	}
}

func TestInvalidCardFailsPermanently(t *testing.T) {
	t.Parallel()
	ctx, client, shop := openTest(t)
	order := withOrder(t, func(o map[string]any) {
		o["payment"].(map[string]any)["card_number"] = "4242424242424241" // fails the Luhn check
	})

	task, err := RunOrder(ctx, client, order, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if task.State != tasker.TaskError {
		t.Fatalf("task is %s, want error", task.State)
	}
	pay := step(t, task, "process_payment")
	if pay.State != tasker.StepError || pay.Attempts != 1 || !strings.Contains(pay.LastError, "card number ending in 4241 is invalid") {
		t.Errorf("process_payment: %s after %d attempt(s), error %q; want error after 1 attempt for an invalid card",
			pay.State, pay.Attempts, pay.LastError)
	}
	for _, name := range []string{"update_inventory", "create_order", "send_confirmation"} {
		if s := step(t, task, name); s.State != tasker.StepPending || s.Attempts != 0 {
			t.Errorf("step %s is %s after %d attempt(s), want pending and never run", name, s.State, s.Attempts)
		}
	}
	if got := shop.Stock("burr-grinder"); got != 8 {
		t.Errorf("burr-grinder stock = %d, want 8 (nothing reserved)", got)
	}
}

func TestRunExitStatus(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := run([]string{"-db", filepath.Join(t.TempDir(), "orders.db")}, &out, &errOut); code != 0 {
		t.Fatalf("exit status %d, want 0; stderr: %s\nstdout:\n%s", code, errOut.String(), out.String())
	}
	if !strings.Contains(out.String(), "complete, 5/5 steps done") {
		t.Errorf("output lacks the final summary:\n%s", out.String())
	}
	if code := run([]string{"-context", filepath.Join(t.TempDir(), "missing.json")}, io.Discard, io.Discard); code != 2 {
		t.Errorf("a missing -context file: exit status %d, want 2", code)
	}
}

func TestLuhn(t *testing.T) {
	t.Parallel()
	for number, want := range map[string]bool{
		"4242424242424242":    true,
		"4242424242424241":    false,
		"5555555555554444":    true,
		"378282246310005":     true,
		"12345":               false,
		"4242-4242-4242-4242": false,
	} {
		if got := luhnValid(number); got != want {
			t.Errorf("luhnValid(%q) = %v, want %v", number, got, want)
		}
	}
}
