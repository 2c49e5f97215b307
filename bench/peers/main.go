// Command peers compares Tasker with River (github.com/riverqueue/river)
// on the same PostgreSQL database, in one run: the same burn-down of N
// no-op units of work, created up front, then worked by the same number of
// workers, timed until the last one completes.
//
//   - River: N jobs inserted with InsertMany, then a client with MaxWorkers
//     workers; River writes one job row per job and deletes nothing.
//   - Tasker: N one-step tasks (the built-in noop handler) created with
//     CreateTask, then Start with the same concurrency; every task writes
//     its task and step rows and a full audit trail (6 log entries: the
//     task's creation, start and completion, the step's creation, claim
//     and completion).
//   - Tasker diamonds: N/4 four-step diamond tasks, the same number of
//     steps as River's jobs.
//   - With -model, the one-row model (model.go): not a product, a bound on
//     what a one-step task kept in one row, with the same audit trail as
//     Tasker's work phase, costs on this database; once indexed as a queue
//     needs, once as Tasker's tables are. -model-workers and -model-batch
//     set its shape (16 workers of 5 units by default; 2 of 16 is the
//     shape of Tasker's engine).
//
// It lives in its own Go module so that Tasker does not depend on River.
// Run it from this directory:
//
//	go run . -db postgres://localhost/bench -n 10000 -workers 16
//
// Each product works in a fresh schema of its own, dropped afterwards. The
// order alternates between rounds (-rounds) so that neither always runs on
// a warmer database; the figures of each round and the best of each are
// printed, with the ratios, and a JSON report with -json. Each work phase
// is also metered (meter.go): CPU time per unit of this process and of the
// whole machine (the database server's included), how busy the machine's
// cores were, and allocations per unit. On a shared machine these move
// less than the rates, and they show where a system's time goes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/tasker-go/tasker"
)

// noopArgs is River's no-op job.
type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

// Figure is one measurement.
type Figure struct {
	System   string        `json:"system"`
	Round    int           `json:"round"`
	Units    int           `json:"units"`
	Insert   time.Duration `json:"insert_ns"`
	Work     time.Duration `json:"work_ns"`
	PerSec   float64       `json:"units_per_sec"`
	InsertPS float64       `json:"inserted_per_sec"`
	// What the work phase cost per unit (meter.go): this process's CPU
	// time and allocations, the whole machine's busy CPU time (the
	// database server's included; 0 where /proc/stat is not there), and
	// the share of the machine's CPU time that was busy.
	ProcessCPUPerUnit time.Duration `json:"process_cpu_per_unit_ns"`
	MachineCPUPerUnit time.Duration `json:"machine_cpu_per_unit_ns"`
	MachineBusy       float64       `json:"machine_busy"`
	AllocsPerUnit     float64       `json:"allocs_per_unit"`
}

func main() {
	db := flag.String("db", os.Getenv("TASKER_TEST_POSTGRES_URL"), "PostgreSQL URL (default $TASKER_TEST_POSTGRES_URL)")
	n := flag.Int("n", 10000, "jobs, one-step tasks, and steps of diamond tasks")
	workers := flag.Int("workers", 16, "workers (River MaxWorkers, Tasker concurrency)")
	prefetch := flag.Int("prefetch", -1, "Tasker's prefetch: the most claimed steps that may wait for one of the workers (-1: Tasker's default, twice -workers; 0: none)")
	rounds := flag.Int("rounds", 2, "rounds; the order of the systems alternates")
	jsonOut := flag.Bool("json", false, "print a JSON report")
	model := flag.Bool("model", false, "also run the one-row model (model.go): a one-step task as one row, with the log entries of Tasker's work phase, lean and with the indexes of Tasker's tables")
	modelWorkers := flag.Int("model-workers", 0, "the one-row model's workers, each with its own connection (0: -workers)")
	modelBatch := flag.Int("model-batch", 5, "units the one-row model's workers claim and complete per transaction")
	flag.Parse()
	if *db == "" {
		fmt.Fprintln(os.Stderr, "peers: give -db postgres://... (or set TASKER_TEST_POSTGRES_URL)")
		os.Exit(2)
	}
	if *modelWorkers < 0 || *modelBatch < 1 {
		fmt.Fprintln(os.Stderr, "peers: -model-workers must be 0 or more and -model-batch 1 or more")
		os.Exit(2)
	}
	if *prefetch < -1 {
		fmt.Fprintln(os.Stderr, "peers: -prefetch must be -1, 0 or more")
		os.Exit(2)
	}
	if *prefetch == -1 {
		*prefetch = 2 * *workers // tasker.Config's default
	}
	ctx := context.Background()
	var figs []Figure
	for r := 1; r <= *rounds; r++ {
		runs := []func() (Figure, error){
			func() (Figure, error) { return runRiver(ctx, *db, *n, *workers) },
			func() (Figure, error) { return runTasker(ctx, *db, *n, *workers, *prefetch, false) },
			func() (Figure, error) { return runTasker(ctx, *db, *n, *workers, *prefetch, true) },
		}
		if r%2 == 0 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		if *model {
			mw := *modelWorkers
			if mw <= 0 {
				mw = *workers
			}
			runs = append(runs, func() (Figure, error) { return runModel(ctx, *db, *n, mw, *modelBatch, false) },
				func() (Figure, error) { return runModel(ctx, *db, *n, mw, *modelBatch, true) })
		}
		for _, run := range runs {
			f, err := run()
			if err != nil {
				fmt.Fprintln(os.Stderr, "peers:", err)
				os.Exit(1)
			}
			f.Round = r
			figs = append(figs, f)
			fmt.Fprintf(os.Stderr, "round %d: %-16s %8.0f /s\n", r, f.System, f.PerSec)
		}
	}
	best := map[string]Figure{}
	for _, f := range figs {
		if b, ok := best[f.System]; !ok || f.PerSec > b.PerSec {
			best[f.System] = f
		}
	}
	river := best["river jobs"]
	report := map[string]any{
		"n": *n, "workers": *workers, "tasker_prefetch": *prefetch, "rounds": *rounds, "goos": runtime.GOOS, "num_cpu": runtime.NumCPU(),
		"postgres": postgresVersion(ctx, *db), "figures": figs,
		"ratio_tasks_to_river":         best["tasker tasks"].PerSec / river.PerSec,
		"ratio_diamond_steps_to_river": best["tasker diamond steps"].PerSec / river.PerSec,
	}
	names := []string{"river jobs", "tasker tasks", "tasker diamond steps"}
	if *model {
		report["ratio_model_to_river"] = best["one-row model"].PerSec / river.PerSec
		report["ratio_product_model_to_river"] = best["one-row model, product's indexes"].PerSec / river.PerSec
		names = append(names, "one-row model", "one-row model, product's indexes")
	}
	if *jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(report)
		return
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tunits\tinsert/s\twork\tunits/s\tratio to River\tprocess CPU/unit\tmachine CPU/unit\tmachine busy\tallocs/unit\t")
	for _, name := range names {
		f := best[name]
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%.0f\t%.2f\t%s\t%s\t%s\t%.0f\t\n", name, f.Units, f.InsertPS, f.Work.Round(time.Millisecond), f.PerSec,
			f.PerSec/river.PerSec, perUnit(f.ProcessCPUPerUnit), perUnit(f.MachineCPUPerUnit), percent(f.MachineBusy), f.AllocsPerUnit)
	}
	tw.Flush()
	fmt.Printf("best of %d rounds; %d workers (Tasker's prefetch %d); %d CPUs; %s\n", *rounds, *workers, *prefetch, runtime.NumCPU(),
		postgresVersion(ctx, *db))
}

// perUnit formats a CPU time per unit in µs ("-" when not measured).
func perUnit(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

func percent(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*v)
}

func freshSchema(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9)
}

func dropSchema(ctx context.Context, db, schema string) {
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
}

func runRiver(ctx context.Context, db string, n, workers int) (Figure, error) {
	schema := freshSchema("river")
	defer dropSchema(ctx, db, schema)
	cfg, err := pgxpool.ParseConfig(db)
	if err != nil {
		return Figure{}, err
	}
	cfg.MaxConns = int32(max(4, workers/2))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return Figure{}, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return Figure{}, err
	}
	driver := riverpgxv5.New(pool)
	mig, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: schema})
	if err != nil {
		return Figure{}, err
	}
	if _, err := mig.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return Figure{}, fmt.Errorf("river migrate: %w", err)
	}
	ws := river.NewWorkers()
	river.AddWorker(ws, noopWorker{})
	// River's defaults wait 100 ms between fetches, which caps a burn-down
	// at MaxWorkers jobs per 100 ms; fetch as fast as River allows instead,
	// so that River is measured at its best.
	client, err := river.NewClient(driver, &river.Config{
		Schema:            schema,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers:           ws,
		FetchCooldown:     river.FetchCooldownMin,
		FetchPollInterval: 50 * time.Millisecond,
		Logger:            slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return Figure{}, err
	}
	start := time.Now()
	for left := n; left > 0; {
		batch := min(left, 1000)
		params := make([]river.InsertManyParams, batch)
		for i := range params {
			params[i] = river.InsertManyParams{Args: noopArgs{}}
		}
		if _, err := client.InsertMany(ctx, params); err != nil {
			return Figure{}, fmt.Errorf("river insert: %w", err)
		}
		left -= batch
	}
	insert := time.Since(start)
	// River drops the events a subscriber's channel has no room for (it
	// holds 1,000 by default), and a missed completion would leave the
	// count short forever: with room for every job, none is dropped.
	events, cancel := client.SubscribeConfig(&river.SubscribeConfig{ChanSize: n, Kinds: []river.EventKind{river.EventKindJobCompleted}})
	defer cancel()
	var done atomic.Int64
	finished := make(chan struct{})
	go func() {
		for range events {
			if done.Add(1) == int64(n) {
				close(finished)
				return
			}
		}
	}()
	start = time.Now()
	m := startMeter()
	if err := client.Start(ctx); err != nil {
		return Figure{}, err
	}
	select {
	case <-finished:
	case <-time.After(10 * time.Minute):
		return Figure{}, errors.New("river: not done within 10 minutes")
	}
	work := time.Since(start)
	stopCtx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	f := Figure{System: "river jobs", Units: n, Insert: insert, Work: work, PerSec: float64(n) / work.Seconds(),
		InsertPS: float64(n) / insert.Seconds()}
	m.stop(&f)
	client.Stop(stopCtx)
	return f, nil
}

const oneStep = `namespace: peers
name: noop
version: 1.0.0
steps:
  - {name: work, handler: noop}
`

const diamond = `namespace: peers
name: diamond
version: 1.0.0
steps:
  - {name: a, handler: noop}
  - {name: b, handler: noop, depends_on: [a]}
  - {name: c, handler: noop, depends_on: [a]}
  - {name: d, handler: noop, depends_on: [b, c]}
`

func runTasker(ctx context.Context, db string, n, workers, prefetch int, diamonds bool) (Figure, error) {
	schema := freshSchema("tasker")
	defer dropSchema(ctx, db, schema)
	if prefetch == 0 {
		prefetch = -1 // tasker.Config: none
	}
	c, err := tasker.Open(ctx, tasker.Config{Database: db, Schema: schema, Concurrency: workers, Prefetch: prefetch,
		MaxConns: max(4, workers/2), DisableCommandHandler: true})
	if err != nil {
		return Figure{}, err
	}
	defer c.Close()
	src, tasks, steps, name := oneStep, n, 1, "tasker tasks"
	if diamonds {
		src, tasks, steps, name = diamond, n/4, 4, "tasker diamond steps"
	}
	t, err := tasker.ParseTemplate("peers.yaml", []byte(src), nil)
	if err != nil {
		return Figure{}, err
	}
	if err := c.RegisterTemplate(ctx, t); err != nil {
		return Figure{}, err
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var insertErr error
	var once sync.Once
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= int64(tasks) {
				if _, err := c.CreateTask(ctx, tasker.TaskRequest{Namespace: t.Namespace, Name: t.Name}); err != nil {
					once.Do(func() { insertErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if insertErr != nil {
		return Figure{}, insertErr
	}
	insert := time.Since(start)
	start = time.Now()
	m := startMeter()
	if err := c.Start(ctx, nil); err != nil {
		return Figure{}, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for c.Stats().Finalized < int64(tasks) {
		if time.Now().After(deadline) {
			return Figure{}, errors.New("tasker: not done within 10 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	work := time.Since(start)
	units := tasks * steps
	f := Figure{System: name, Units: units, Insert: insert, Work: work, PerSec: float64(units) / work.Seconds(),
		InsertPS: float64(units) / insert.Seconds()}
	m.stop(&f)
	return f, nil
}

func postgresVersion(ctx context.Context, db string) string {
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return ""
	}
	defer conn.Close(ctx)
	var v string
	conn.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return "PostgreSQL " + v
}
