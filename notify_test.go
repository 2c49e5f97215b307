package tasker_test

import (
	"context"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

// A task created by another process reaches an idle PostgreSQL worker
// through LISTEN/NOTIFY at once, long before its poll; with LISTEN
// disabled, the poll alone still gets it done.
func TestNotifyWakesIdleWorkers(t *testing.T) {
	t.Parallel()
	for _, listen := range []bool{true, false} {
		name := map[bool]string{true: "listen", false: "poll only"}[listen]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url := pgtest.URL(t)
			schema := pgtest.Schema(t, url)
			poll := 20 * time.Second
			if !listen {
				poll = 300 * time.Millisecond
			}
			worker, err := tasker.Open(ctx, tasker.Config{Database: url, Schema: schema, MaxConns: 4, PollInterval: poll, DisableListen: !listen})
			if err != nil {
				t.Fatal(err)
			}
			defer worker.Close()
			if err := worker.Start(ctx, nil); err != nil {
				t.Fatal(err)
			}
			producer, err := tasker.Open(ctx, tasker.Config{Database: url, Schema: schema, MaxConns: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer producer.Close()
			tmpl, err := tasker.ParseTemplate("n.yaml", []byte("namespace: n\nname: wake\nversion: 1.0.0\nsteps:\n  - {name: a, handler: noop}\n"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := producer.RegisterTemplate(ctx, tmpl); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // let the worker settle into its idle wait
			created := time.Now()
			res, err := producer.CreateTask(ctx, tasker.TaskRequest{Namespace: "n", Name: "wake"})
			if err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			task, err := producer.WaitTask(wctx, res.Task.ID)
			if err != nil {
				t.Fatal(err)
			}
			started := task.Steps[0].StartedAt
			if lag := started.Sub(created); task.State != tasker.TaskComplete || lag > 2*time.Second {
				t.Fatalf("task %s; its step started %s after creation", task.State, lag)
			}
		})
	}
}
