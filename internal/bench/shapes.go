package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tasker-go/tasker"
)

// Defaults of the DAG and steady scenarios.
const (
	DefaultFanoutN     = 20
	DefaultFanoutWidth = 100
	DefaultBigSteps    = 10000
	DefaultSmallSteps  = 100
	DefaultRate        = 200
	DefaultDuration    = 10 * time.Second
)

// fanoutTemplate returns the template of a fan-out: one root, width
// parallel steps that depend on it, and one step that depends on them all.
func fanoutTemplate(name string, width int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "namespace: bench\nname: %s\nversion: 1.0.0\n", name)
	fmt.Fprintf(&b, "description: 1 → %d → 1 noop steps (tasker bench)\nsteps:\n  - {name: root, handler: noop}\n", width)
	deps := make([]string, width)
	for i := range width {
		deps[i] = fmt.Sprintf("w%05d", i)
		fmt.Fprintf(&b, "  - {name: %s, handler: noop, depends_on: [root]}\n", deps[i])
	}
	fmt.Fprintf(&b, "  - {name: join, handler: noop, depends_on: [%s]}\n", strings.Join(deps, ", "))
	return b.String()
}

// Fanout is BurnDown with cfg.N tasks of a fan-out 1 → cfg.Steps → 1
// (cfg.Steps defaults to 100 here).
func Fanout(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Steps == 0 {
		cfg.Steps = DefaultFanoutWidth
	}
	if cfg.N == 0 {
		cfg.N = DefaultFanoutN
	}
	width := cfg.Steps
	return burnDown(ctx, cfg, "fanout", fanoutTemplate(fmt.Sprintf("fanout_%d", width), width), width+2)
}

// Big runs one task of cfg.Steps steps (default 10,000) shaped as a
// fan-out 1 → cfg.Steps-2 → 1, from CreateTask to its completion, and
// compares its time per step with that of tasks of 100 steps of the same
// shape (cfg.Runs of them, one after the other): the orchestration cost
// should grow with the number of edges, not faster.
func Big(ctx context.Context, cfg Config) (res *Result, err error) {
	if cfg.Steps == 0 {
		cfg.Steps = DefaultBigSteps
	}
	cfg, err = cfg.prepare()
	if err != nil {
		return nil, err
	}
	if cfg.Steps < 3 {
		return nil, errors.New("bench: a big task needs at least 3 steps")
	}
	c, cleanup, err := open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	small, err := register(ctx, c, fanoutTemplate("small_fanout", DefaultSmallSteps-2))
	if err != nil {
		return nil, err
	}
	big, err := register(ctx, c, fanoutTemplate(fmt.Sprintf("big_fanout_%d", cfg.Steps), cfg.Steps-2))
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx, nil); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	run := func(t *tasker.Template) (time.Duration, error) {
		start := time.Now()
		created, err := c.CreateTask(ctx, tasker.TaskRequest{Namespace: t.Namespace, Name: t.Name, Version: t.Version})
		if err != nil {
			return 0, fmt.Errorf("bench: create task: %w", err)
		}
		done, err := c.WaitTask(ctx, created.Task.ID)
		if err != nil {
			return 0, fmt.Errorf("bench: wait for task %s: %w", created.Task.ID, err)
		}
		if done.State != tasker.TaskComplete {
			return 0, fmt.Errorf("bench: task %s ended %s, not complete", done.ID, done.State)
		}
		return time.Since(start), nil
	}
	if _, err := run(small); err != nil { // warm-up
		return nil, err
	}
	var smallRuns []time.Duration
	for range cfg.Runs {
		d, err := run(small)
		if err != nil {
			return nil, err
		}
		smallRuns = append(smallRuns, d)
	}
	before := c.Stats()
	commits := pgCommitsSettled(ctx, cfg)
	d, err := run(big)
	if err != nil {
		return nil, err
	}
	res = newResult("big", cfg, 1, cfg.Steps)
	res.Duration = d
	res.TasksPerSec = rate(1, d)
	res.StepsPerSec = rate(cfg.Steps, d)
	smallP50 := latency(smallRuns, DefaultSmallSteps).PerStepP50
	res.Scale = &Scale{SmallSteps: DefaultSmallSteps, SmallPerStep: smallP50, BigPerStep: d / time.Duration(cfg.Steps)}
	if smallP50 > 0 {
		res.Scale.Ratio = float64(res.Scale.BigPerStep) / float64(smallP50)
	}
	if err := c.Stop(ctx); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res.Engine = engineStats(diffStats(c.Stats(), before))
	res.DBTxPerStep = txPerStep(ctx, cfg, commits, cfg.Steps)
	res.PeakRSS = peakRSS()
	return res, nil
}

// Steady creates diamond tasks at cfg.Rate per second for cfg.Duration on
// a started client and measures, from its handler's notes, the latency
// from each CreateTask call to the start of its first step's handler, and
// from the end of the handler of a step's last parent to the start of the
// step's handler.
func Steady(ctx context.Context, cfg Config) (res *Result, err error) {
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Duration == 0 {
		cfg.Duration = DefaultDuration
	}
	cfg, err = cfg.prepare()
	if err != nil {
		return nil, err
	}
	if cfg.Rate <= 0 || cfg.Duration <= 0 {
		return nil, errors.New("bench: steady needs a positive rate and duration")
	}
	st := &stamps{start: map[stampKey]time.Time{}, end: map[stampKey]time.Time{}}
	c, cleanup, err := openWith(ctx, cfg, map[string]tasker.Handler{stampHandler: st.handler()})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	t, err := register(ctx, c, steadyTemplate)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx, nil); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	before := c.Stats()
	commits := pgCommitsSettled(ctx, cfg)
	req := tasker.TaskRequest{Namespace: t.Namespace, Name: t.Name, Version: t.Version}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	n := int(cfg.Rate * cfg.Duration.Seconds())
	// The tasks arrive on schedule whatever a creation takes (an open
	// loop): each is created by a goroutine of its own, up to
	// maxCreating at once. A creation that finds them all busy waits for
	// one, and is counted late: the store did not keep up with the rate.
	var (
		mu      sync.Mutex
		created = make(map[string]time.Time, n)
		ids     = make([]string, 0, n)
		wg      sync.WaitGroup
		slots   = make(chan struct{}, maxCreating)
		late    int
	)
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	begin := time.Now()
schedule:
	for i := range n {
		if wait := time.Until(begin.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-cctx.Done():
				break schedule
			case <-time.After(wait):
			}
		}
		select {
		case slots <- struct{}{}:
		default:
			late++
			select {
			case slots <- struct{}{}:
			case <-cctx.Done():
				break schedule
			}
		}
		at := time.Now()
		wg.Go(func() {
			defer func() { <-slots }()
			r, err := c.CreateTask(cctx, req)
			if err != nil {
				cancel(fmt.Errorf("bench: create task: %w", err))
				return
			}
			mu.Lock()
			created[r.Task.ID] = at
			ids = append(ids, r.Task.ID)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := context.Cause(cctx); err != nil {
		return nil, err
	}
	createdIn := time.Since(begin)
	for _, id := range ids {
		if _, err := c.WaitTask(ctx, id); err != nil {
			return nil, fmt.Errorf("bench: wait for task %s: %w", id, err)
		}
	}
	elapsed := time.Since(begin)
	if err := c.Stop(ctx); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var startLat, handoff []time.Duration
	parents := map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"b", "c"}}
	for _, id := range ids {
		if s, ok := st.start[stampKey{id, "a"}]; ok {
			startLat = append(startLat, s.Sub(created[id]))
		}
		for step, ps := range parents {
			s, ok := st.start[stampKey{id, step}]
			if !ok {
				continue
			}
			var last time.Time
			for _, p := range ps {
				if end, ok := st.end[stampKey{id, p}]; ok && end.After(last) {
					last = end
				}
			}
			if !last.IsZero() {
				handoff = append(handoff, max(s.Sub(last), 0))
			}
		}
	}
	res = newResult("steady", cfg, n, 4)
	res.Duration = elapsed
	res.TasksPerSec = rate(n, elapsed)
	res.StepsPerSec = rate(4*n, elapsed)
	res.Steady = &SteadyLatency{Rate: cfg.Rate, CreatedPerSec: rate(n, createdIn), Late: late,
		Start: percentiles(startLat), Handoff: percentiles(handoff)}
	if len(startLat) < n {
		return nil, fmt.Errorf("bench: saw the first step start of %d of %d tasks", len(startLat), n)
	}
	stats := diffStats(c.Stats(), before)
	res.Engine = engineStats(stats)
	res.Steady.Completer = completer(stats)
	res.DBTxPerStep = txPerStep(ctx, cfg, commits, 4*n)
	res.PeakRSS = peakRSS()
	return res, nil
}

// maxCreating bounds the task creations Steady has in flight at once.
const maxCreating = 64

// stampHandler is the name of the handler Steady registers.
const stampHandler = "bench_stamp"

type stampKey struct{ task, step string }

// stamps notes when each step's handler starts and ends (the first
// attempt's start, the last attempt's end): the hand-off from a parent to
// its child is measured from handler to handler, through the completion
// transaction, the claim and the child's launch.
type stamps struct {
	mu         sync.Mutex
	start, end map[stampKey]time.Time
}

func (s *stamps) handler() tasker.Handler {
	return tasker.HandlerFunc(func(_ context.Context, in *tasker.StepInput) (any, error) {
		k := stampKey{in.TaskID, in.StepName}
		now := time.Now()
		s.mu.Lock()
		if _, ok := s.start[k]; !ok {
			s.start[k] = now
		}
		s.mu.Unlock()
		defer func() {
			now := time.Now()
			s.mu.Lock()
			s.end[k] = now
			s.mu.Unlock()
		}()
		return nil, nil
	})
}
