package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
)

func TestOrderRunsWithRetryAndWebhook(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db := filepath.Join(t.TempDir(), "orders.db")
	var out bytes.Buffer
	res, err := Run(ctx, db, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if res.Task.State != tasker.TaskComplete {
		t.Fatalf("task %s\n%s", res.Task.State, out.String())
	}
	if res.ChargeCalls != 2 {
		t.Errorf("the payment service answered %d charges, want 2 (a 503, then the charge)", res.ChargeCalls)
	}
	for _, s := range res.Task.Steps {
		want := map[string]int{"reserve_stock": 1, "charge_card": 2, "ship": 1}[s.Name]
		if s.Attempts != want {
			t.Errorf("%s took %d attempts, want %d", s.Name, s.Attempts, want)
		}
	}
	if res.Hook == nil || res.Hook.Event.Name != tasker.EventTaskCompleted || res.Hook.DeliveryID == "" {
		t.Fatalf("webhook = %+v", res.Hook)
	}
	for _, want := range []string{"status 503", "Retry-After 1s", "signature verified", `"charge":"ch_`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The secrets of the run are nowhere in the database.
	raw, _ := os.ReadFile(db)
	wal, _ := os.ReadFile(db + "-wal")
	for _, secret := range []string{os.Getenv("ORDERS_PAYMENT_TOKEN"), os.Getenv("ORDERS_WEBHOOK_SECRET")} {
		if secret == "" || bytes.Contains(raw, []byte(secret)) || bytes.Contains(wal, []byte(secret)) {
			t.Errorf("secret %q is in the database (or empty)", secret)
		}
	}
}
