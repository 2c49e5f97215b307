package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasker-go/tasker"
)

// stallTimeout is how long a burn-down may make no progress at all before
// it gives up, so a wedged engine fails the benchmark instead of hanging it.
const stallTimeout = 60 * time.Second

// BurnDown measures the throughput of one-step "noop" tasks. It registers
// the template, creates cfg.N tasks from cfg.Inserters goroutines through
// CreateTask (the insert phase, timed on its own), then starts the client
// and times the work phase until the engine has finalized all of them.
func BurnDown(ctx context.Context, cfg Config) (*Result, error) {
	return burnDown(ctx, cfg, "burn-down", oneStepTemplate, 1)
}

// Diamond is BurnDown with cfg.N four-step diamond tasks: a, then b and c in
// parallel, then d.
func Diamond(ctx context.Context, cfg Config) (*Result, error) {
	return burnDown(ctx, cfg, "diamond", diamondTemplate, 4)
}

func burnDown(ctx context.Context, cfg Config, scenario, yaml string, steps int) (res *Result, err error) {
	cfg, err = cfg.prepare()
	if err != nil {
		return nil, err
	}
	c, cleanup, err := open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	t, err := register(ctx, c, yaml)
	if err != nil {
		return nil, err
	}
	res = newResult(scenario, cfg, cfg.N, steps)

	// Insert phase: every task is stored before the engine starts.
	inserting := c.Stats().StoreStatements
	ins, err := insert(ctx, c, t, cfg.N, cfg.Inserters, cfg.ContextBytes)
	if err != nil {
		return nil, err
	}
	// The work phase's counters start here: the statements of the insert
	// phase are its own figure.
	before := c.Stats()
	res.Insert = &Insert{Inserters: cfg.Inserters, Duration: ins, TasksPerSec: rate(cfg.N, ins), StepsPerSec: rate(cfg.N*steps, ins),
		StatementsPerTask: float64(before.StoreStatements-inserting) / float64(cfg.N)}

	// Work phase: from Start until the engine finalized every task. The
	// engine's in-memory counters are polled; a finalization event only
	// wakes the poll, so a dropped event costs at most one tick.
	sub := c.Subscribe(&tasker.SubscribeOpts{Names: []string{string(tasker.EventWorkflowTaskFinalized)}, Buffer: 4096})
	defer sub.Close()
	commits := pgCommitsSettled(ctx, cfg)
	start := time.Now()
	meter := startProcessMeter()
	if err := c.Start(ctx, nil); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := waitFinalized(ctx, c, sub, int64(cfg.N)); err != nil {
		return nil, err
	}
	res.Duration = time.Since(start)
	res.Process = meter.stop(cfg.N)
	res.TasksPerSec = rate(cfg.N, res.Duration)
	res.StepsPerSec = rate(cfg.N*steps, res.Duration)
	// The counters are separate atomics: read them once the engine has
	// stopped, so that they are all final.
	if err := c.Stop(ctx); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res.Engine = engineStats(diffStats(c.Stats(), before))
	res.DBTxPerStep = txPerStep(ctx, cfg, commits, cfg.N*steps)
	res.PeakRSS = peakRSS()
	failed, err := c.Tasks(ctx, &tasker.TaskListOpts{State: tasker.TaskError, Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("bench: task %s failed (see tasker task show with --db on a kept database)", failed[0].ID)
	}
	return res, nil
}

// paddedContext returns {"pad":"…"} with a string of n random letters and
// digits: JSON that the benchmark's templates (which have no context
// schema) accept, and that does not compress to nothing (PostgreSQL
// compresses large values it stores out of line).
func paddedContext(n int) json.RawMessage {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	b := make([]byte, 0, n+10)
	b = append(b, `{"pad":"`...)
	for range n {
		b = append(b, alphabet[rng.IntN(len(alphabet))])
	}
	return append(b, `"}`...)
}

// insert creates n tasks of t from the given number of goroutines, with
// contexts padded to about pad bytes, and returns how long it took.
func insert(ctx context.Context, c *tasker.Client, t *tasker.Template, n, workers, pad int) (time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req := tasker.TaskRequest{Namespace: t.Namespace, Name: t.Name, Version: t.Version}
	if pad > 0 {
		req.Context = paddedContext(pad)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range min(workers, n) {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := c.CreateTask(ctx, req); err != nil {
					cancel(fmt.Errorf("bench: create task: %w", err))
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	return d, nil
}

// waitFinalized waits until the client's engine has finalized n tasks. It
// fails when nothing progresses for stallTimeout.
func waitFinalized(ctx context.Context, c *tasker.Client, sub *tasker.Subscription, n int64) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastProgress int64 = -1
	lastChange := time.Now()
	for {
		st := c.Stats()
		if st.Finalized >= n {
			return nil
		}
		if p := st.Completed + st.Finalized; p != lastProgress {
			lastProgress, lastChange = p, time.Now()
		} else if time.Since(lastChange) > stallTimeout {
			return fmt.Errorf("bench: no progress for %s: %d of %d tasks finalized, engine stats %+v", stallTimeout, st.Finalized, n, st)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: %d of %d tasks finalized: %w", st.Finalized, n, ctx.Err())
		case <-sub.Events():
		case <-tick.C:
		}
	}
}

// Chain measures the end-to-end latency of a linear chain of cfg.Steps
// "noop" steps: on a started client, it runs one untimed warm-up task, then
// cfg.Runs tasks one after the other, each timed from the CreateTask call
// to the return of WaitTask.
func Chain(ctx context.Context, cfg Config) (res *Result, err error) {
	cfg, err = cfg.prepare()
	if err != nil {
		return nil, err
	}
	c, cleanup, err := open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	t, err := register(ctx, c, chainTemplate(cfg.Steps))
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx, nil); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	req := tasker.TaskRequest{Namespace: t.Namespace, Name: t.Name, Version: t.Version}
	runOnce := func() (time.Duration, error) {
		start := time.Now()
		created, err := c.CreateTask(ctx, req)
		if err != nil {
			return 0, fmt.Errorf("bench: create task: %w", err)
		}
		done, err := c.WaitTask(ctx, created.Task.ID)
		if err != nil {
			return 0, fmt.Errorf("bench: wait for task %s: %w", created.Task.ID, err)
		}
		d := time.Since(start)
		if done.State != tasker.TaskComplete {
			return 0, fmt.Errorf("bench: task %s ended %s, not complete", done.ID, done.State)
		}
		return d, nil
	}
	if _, err := runOnce(); err != nil { // warm-up
		return nil, err
	}
	// The engine counts an outcome just after the store commits it: let it
	// count the warm-up's last one before the timed runs are counted.
	for c.Stats().Completed < int64(cfg.Steps) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Microsecond):
		}
	}
	before := c.Stats()
	commits := pgCommitsSettled(ctx, cfg)
	runs := make([]time.Duration, cfg.Runs)
	for i := range runs {
		if runs[i], err = runOnce(); err != nil {
			return nil, err
		}
	}
	res = newResult("chain", cfg, cfg.Runs, cfg.Steps)
	for _, d := range runs {
		res.Duration += d
	}
	res.TasksPerSec = rate(cfg.Runs, res.Duration)
	res.StepsPerSec = rate(cfg.Runs*cfg.Steps, res.Duration)
	res.Latency = latency(runs, cfg.Steps)
	// WaitTask returns once the store says the task is complete, which can
	// be before the engine counted the last outcome: stop it first.
	if err := c.Stop(ctx); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res.Engine = engineStats(diffStats(c.Stats(), before))
	res.DBTxPerStep = txPerStep(ctx, cfg, commits, cfg.Runs*cfg.Steps)
	res.PeakRSS = peakRSS()
	return res, nil
}

// pgCommitsSettled reads the database's commit count once the statistics
// of earlier work are flushed; -1 off PostgreSQL.
func pgCommitsSettled(ctx context.Context, cfg Config) int64 {
	if !tasker.IsPostgresURL(cfg.DB) {
		return -1
	}
	time.Sleep(1100 * time.Millisecond) // sessions flush their statistics at most once a second
	return pgCommits(ctx, cfg.DB)
}

// txPerStep returns the transactions committed since before, per step.
func txPerStep(ctx context.Context, cfg Config, before int64, steps int) float64 {
	if before < 0 || steps == 0 {
		return 0
	}
	after := pgCommitsSettled(ctx, cfg)
	if after < before {
		return 0
	}
	return float64(after-before) / float64(steps)
}

// latency summarizes the durations of sequential runs of tasks of the given
// number of steps.
func latency(runs []time.Duration, steps int) *Latency {
	sorted := slices.Clone(runs)
	slices.Sort(sorted)
	l := &Latency{Runs: runs, Min: sorted[0], P50: percentile(sorted, 50), Max: sorted[len(sorted)-1]}
	l.PerStepP50 = l.P50 / time.Duration(steps)
	l.PerStepMin = l.Min / time.Duration(steps)
	l.PerStepMax = l.Max / time.Duration(steps)
	return l
}

// percentile returns the nearest-rank percentile p (0 < p <= 100) of sorted
// durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

func diffStats(after, before tasker.Stats) tasker.Stats {
	return tasker.Stats{
		DispatchCycles:      after.DispatchCycles - before.DispatchCycles,
		ClaimCalls:          after.ClaimCalls - before.ClaimCalls,
		Claimed:             after.Claimed - before.Claimed,
		ClaimedOnCompletion: after.ClaimedOnCompletion - before.ClaimedOnCompletion,
		ClaimedOnCreation:   after.ClaimedOnCreation - before.ClaimedOnCreation,
		HandlerRuns:         after.HandlerRuns - before.HandlerRuns,
		Completed:           after.Completed - before.Completed,
		Stale:               after.Stale - before.Stale,
		CompleteCalls:       after.CompleteCalls - before.CompleteCalls,
		Finalized:           after.Finalized - before.Finalized,
		Rescued:             after.Rescued - before.Rescued,
		Released:            after.Released - before.Released,
		StoreStatements:     after.StoreStatements - before.StoreStatements,
		OutcomeWait:         after.OutcomeWait.Sub(before.OutcomeWait),
		CompletionWrite:     after.CompletionWrite.Sub(before.CompletionWrite),
	}
}
