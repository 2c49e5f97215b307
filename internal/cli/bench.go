package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/bench"
)

// benchFlags are the flags of the bench subcommands.
type benchFlags struct {
	n           int
	steps       int
	runs        int
	concurrency int
	prefetch    int
	inserters   int
	ctxBytes    int
	synchronous string
	jsonOut     bool
	cpuProfile  string
	trace       string
	rate        float64
	duration    time.Duration
	width       int
	bigSteps    int
	fanoutN     int
	bigRuns     int
	compareN    int
	pairs       int
}

const benchDBNote = `The benchmark runs on a new temporary SQLite database that is removed
afterwards, so it never touches your tasker.db; TASKER_DB is ignored. Pass --db
explicitly to run on a given file instead (it keeps the benchmark's templates
and tasks, and must not hold unfinished tasks), or a PostgreSQL URL: the
benchmark then runs in a new schema, dropped afterwards, unless --schema names
one to use and keep.`

func newBenchCmd(e *env) *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the engine: throughput, latency, DAG shapes, on SQLite or PostgreSQL",
		Long: `Bench runs performance scenarios on SQLite or PostgreSQL through the same API
as "tasker run", with the built-in "noop" handler so that only the engine is
measured, and prints a table (or a JSON report with --json).

  burn-down  N one-step tasks are created first, then a worker is started and
             timed until all are complete: throughput in tasks/s and steps/s.
  diamond    the same with four-step diamond tasks (a, then b and c, then d).
  fanout     the same with tasks of a fan-out 1 → 100 → 1.
  chain      one task of a linear chain of steps, run several times one after
             the other: end-to-end latency and overhead per step.
  big        one task of 10,000 steps against tasks of 100: time per step.
  dag        diamond, chain, fanout and big one after the other, in one
             table (or one report).
  steady     diamond tasks created at a fixed rate: latency from creation to
             the first step's handler and from the end of a parent's handler
             to the start of its child's (p50, p95, p99, max).
  compare    SQLite's burn-down against PostgreSQL's (--db), in pairs whose
             order alternates: each pair's ratio, and their median against
             the target.

Every result also reports the peak RSS of the process and, on PostgreSQL, the
transactions committed per step. A burn-down, diamond or fanout also gives,
on a line under the table, what the process spent per task on the work
phase: CPU time (not a PostgreSQL server's) and allocations. The CPU time
often moves less than the rates with the load of a shared machine, but not
in every hour: compare two builds in alternating runs either way.

` + benchDBNote + `

See docs/performance.md for the figures measured so far and what limits them.`,
		Example: `  tasker bench burn-down
  tasker bench burn-down -n 10000 --synchronous NORMAL
  tasker bench chain --steps 40 --runs 5 --json > chain.json
  tasker bench diamond -n 2000 --cpuprofile cpu.out
  tasker bench compare --db postgres://localhost/bench --pairs 5`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().IntVar(&f.concurrency, "concurrency", bench.DefaultConcurrency, "maximum steps running at once (a claim takes at most this many, plus the prefetch on SQLite)")
	addPrefetchFlag(cmd.PersistentFlags(), &f.prefetch)
	cmd.PersistentFlags().StringVar(&f.synchronous, "synchronous", bench.DefaultSynchronous, "SQLite synchronous setting: FULL (the product default) or NORMAL")
	cmd.PersistentFlags().BoolVar(&f.jsonOut, "json", false, "print a JSON report (machine, settings, results) instead of a table")
	cmd.PersistentFlags().StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (read it with go tool pprof)")
	cmd.PersistentFlags().StringVar(&f.trace, "trace", "", "write an execution trace of the whole run to this file (read it with go tool trace): where the time goes when the CPU is idle")

	burn := &cobra.Command{
		Use:   "burn-down",
		Short: "Throughput of N one-step tasks created up front",
		Long: `Burn-down registers a template of one "noop" step, creates N tasks from
several goroutines (timed separately: the insert rate), then starts a worker
and measures how long it takes to complete all of them.

` + benchDBNote,
		Example: `  tasker bench burn-down
  tasker bench burn-down -n 10000 --concurrency 64
  tasker bench burn-down --synchronous NORMAL --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, e, f, bench.Config{N: f.n, Inserters: f.inserters, ContextBytes: f.ctxBytes}, bench.BurnDown)
		},
	}
	burn.Flags().IntVarP(&f.n, "n", "n", bench.DefaultN, "number of tasks")
	burn.Flags().IntVar(&f.inserters, "inserters", bench.DefaultInserters, "goroutines creating the tasks")
	burn.Flags().IntVar(&f.ctxBytes, "context-bytes", 0, "pad each task's context with a string of this many bytes (0: the context is {})")

	diamond := &cobra.Command{
		Use:   "diamond",
		Short: "Throughput of N four-step diamond tasks created up front",
		Long: `Diamond is burn-down with tasks of four "noop" steps: a, then b and c in
parallel, then d. It adds dependency release and parallel steps to the
measurement.

` + benchDBNote,
		Example: `  tasker bench diamond
  tasker bench diamond -n 5000 --synchronous NORMAL`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, e, f, bench.Config{N: f.n, Inserters: f.inserters, ContextBytes: f.ctxBytes}, bench.Diamond)
		},
	}
	diamond.Flags().IntVarP(&f.n, "n", "n", bench.DefaultN, "number of tasks")
	diamond.Flags().IntVar(&f.inserters, "inserters", bench.DefaultInserters, "goroutines creating the tasks")
	diamond.Flags().IntVar(&f.ctxBytes, "context-bytes", 0, "pad each task's context with a string of this many bytes (0: the context is {})")

	chain := &cobra.Command{
		Use:   "chain",
		Short: "End-to-end latency of a linear chain of steps",
		Long: `Chain registers a template of a linear chain of "noop" steps, starts a
worker, runs one untimed warm-up task, then runs --runs tasks one after the
other, each timed from its creation to the return of WaitTask. It reports
the minimum, median (p50) and maximum, and the same divided by the number of
steps: the engine's overhead per step.

` + benchDBNote,
		Example: `  tasker bench chain
  tasker bench chain --steps 100 --runs 10
  tasker bench chain --synchronous NORMAL --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, e, f, bench.Config{Steps: f.steps, Runs: f.runs}, bench.Chain)
		},
	}
	chain.Flags().IntVar(&f.steps, "steps", bench.DefaultChainSteps, "number of steps in the chain")
	chain.Flags().IntVar(&f.runs, "runs", bench.DefaultRuns, "number of timed runs")

	fanout := &cobra.Command{
		Use:   "fanout",
		Short: "Throughput of N fan-out tasks (1 → 100 → 1) created up front",
		Long: `Fanout is burn-down with tasks of a fan-out: a root step, --width parallel
steps that depend on it, and a join step that depends on them all.

` + benchDBNote,
		Example: `  tasker bench fanout
  tasker bench fanout -n 50 --width 200`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, e, f, bench.Config{N: f.fanoutN, Steps: f.width, Inserters: f.inserters, ContextBytes: f.ctxBytes}, bench.Fanout)
		},
	}
	fanout.Flags().IntVarP(&f.fanoutN, "n", "n", bench.DefaultFanoutN, "number of tasks")
	fanout.Flags().IntVar(&f.width, "width", bench.DefaultFanoutWidth, "parallel steps between the root and the join")
	fanout.Flags().IntVar(&f.inserters, "inserters", bench.DefaultInserters, "goroutines creating the tasks")
	fanout.Flags().IntVar(&f.ctxBytes, "context-bytes", 0, "pad each task's context with a string of this many bytes (0: the context is {})")

	big := &cobra.Command{
		Use:   "big",
		Short: "One task of 10,000 steps against tasks of 100: time per step",
		Long: `Big runs tasks of 100 steps (a fan-out 1 → 98 → 1) --runs times, then one task
of --steps steps of the same shape, each from its creation to its completion,
and compares their times per step: orchestration should cost the same per step
whatever the size of the task.

` + benchDBNote,
		Example: `  tasker bench big
  tasker bench big --steps 5000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, e, f, bench.Config{Steps: f.bigSteps, Runs: f.bigRuns}, bench.Big)
		},
	}
	big.Flags().IntVar(&f.bigSteps, "steps", bench.DefaultBigSteps, "steps of the big task (at most 10000)")
	big.Flags().IntVar(&f.bigRuns, "runs", bench.DefaultRuns, "timed runs of the 100-step task")

	dag := &cobra.Command{
		Use:   "dag",
		Short: "The DAG scenarios one after the other: diamond, chain, fanout, big",
		Long: `Dag runs the DAG scenarios one after the other, each on a temporary
database of its own (with --db, all on that database) and with its own
defaults: -n diamond tasks (four steps: a, then b and c, then d), a chain of
40 steps (five timed runs), 20 fan-outs 1 → 100 → 1, and one task of 10,000
steps against tasks of 100. It prints them in one table (or one JSON report
with --json), and a line on stderr as each ends. For other sizes, run the
scenarios on their own (tasker bench diamond|chain|fanout|big). A run stopped
early prints the scenarios it finished before it reports why.

` + benchDBNote,
		Example: `  tasker bench dag
  tasker bench dag -n 5000 --db postgres://localhost/bench --json > dag.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDAG(cmd, e, f, bench.Config{N: f.n, Inserters: f.inserters})
		},
	}
	dag.Flags().IntVarP(&f.n, "n", "n", bench.DefaultN, "number of diamond tasks")
	dag.Flags().IntVar(&f.inserters, "inserters", bench.DefaultInserters, "goroutines creating the tasks")

	steady := &cobra.Command{
		Use:   "steady",
		Short: "Latency of diamond tasks created at a fixed rate",
		Long: `Steady starts a worker, then creates diamond tasks (a, then b and c, then d) at
--rate per second for --duration. Their steps run a handler that notes when
it starts and ends; from those times it measures the latency from each
creation to the start of the first step's handler, and from the end of the
handler of a step's last parent to the start of the step's handler (the
hand-off), as p50, p95, p99 and maximum. The table shows the hand-off;
--json has both.

The tasks arrive on schedule whatever a creation takes: each is created in a
goroutine of its own, up to 64 at once. The line under the table gives the
rate they were created at; if all 64 were busy when a task was due, it also
says how many creations started late (the store did not keep up with the
rate, and the latencies are those of an overloaded system).

` + benchDBNote,
		Example: `  tasker bench steady
  tasker bench steady --rate 400 --duration 30s --db postgres://localhost/bench`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, e, f, bench.Config{Rate: f.rate, Duration: f.duration}, bench.Steady)
		},
	}
	steady.Flags().Float64Var(&f.rate, "rate", bench.DefaultRate, "tasks created per second")
	steady.Flags().DurationVar(&f.duration, "duration", bench.DefaultDuration, "how long tasks are created")

	compare := &cobra.Command{
		Use:   "compare",
		Short: "SQLite's burn-down against PostgreSQL's, in alternating pairs",
		Long: `Compare runs the burn-down of N one-step tasks on a temporary SQLite database
and on the PostgreSQL database of --db (each time in a new schema, dropped
afterwards; --schema is refused: a kept schema would grow from run to run),
--pairs times, and prints each pair's tasks/s and ratio (SQLite over
PostgreSQL), then the median ratio against the target of 2×
(docs/performance.md).

The two stores take turns going first from one pair to the next: on a
shared machine, whose speed moves by a third from one minute to the next,
only ratios measured side by side mean anything, and their median over a
few pairs more than any one of them. A line on stderr reports each
burn-down as it ends. A comparison stopped early (an interrupt, an error)
prints the burn-downs it finished and the pairs it completed. The whole
takes about (N ÷ 1,000) × 1.5 seconds per pair on a 2-core machine.`,
		Example: `  tasker bench compare --db postgres://localhost/bench
  tasker bench compare --db postgres://localhost/bench -n 30000 --pairs 9 --json > compare.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCompare(cmd, e, f, bench.Config{N: f.compareN, Inserters: f.inserters, ContextBytes: f.ctxBytes})
		},
	}
	compare.Flags().IntVarP(&f.compareN, "n", "n", bench.DefaultCompareN, "number of tasks of each burn-down")
	compare.Flags().IntVar(&f.pairs, "pairs", bench.DefaultComparePairs, fmt.Sprintf("pairs of burn-downs, one on each store (at most %d)", bench.MaxComparePairs))
	compare.Flags().IntVar(&f.inserters, "inserters", bench.DefaultInserters, "goroutines creating the tasks")
	compare.Flags().IntVar(&f.ctxBytes, "context-bytes", 0, "pad each task's context with a string of this many bytes (0: the context is {})")

	cmd.AddCommand(burn, diamond, fanout, chain, big, dag, steady, compare)
	return cmd
}

// runCompare runs the comparison of SQLite with PostgreSQL and prints
// every burn-down, then the pairs and their median ratio. A comparison
// that stops early (an error, an interrupt) prints what it measured
// before it reports why.
func runCompare(cmd *cobra.Command, e *env, f benchFlags, cfg bench.Config) (err error) {
	ctx := cmd.Context()
	if cfg, err = benchConfig(cmd, e, f, cfg); err != nil {
		return err
	}
	if !tasker.IsPostgresURL(cfg.DB) {
		return exitWith(ExitUsage, errors.New("bench compare needs --db with the PostgreSQL URL to compare SQLite with"))
	}
	if cfg.Schema != "" {
		return exitWith(ExitUsage, errors.New("bench compare runs each PostgreSQL burn-down in a new schema: --schema is refused (a kept schema would grow from run to run)"))
	}
	if cfg, err = bench.CompareConfig(cfg, f.pairs); err != nil {
		return exitWith(ExitUsage, err)
	}
	stop, err := startProfiling(f)
	if err != nil {
		return err
	}
	defer stopProfiling(stop, &err)
	fmt.Fprintf(e.stderr, "tasker: bench compare: %s of burn-downs of %d tasks, on a temporary SQLite database (driver %s, synchronous %s) and on %s (a temporary schema each time)\n",
		bench.Pairs(f.pairs), cfg.N, cfg.SQLiteDriverUsed(), cfg.Synchronous, redact(cfg.DB))
	results, cmp, runErr := bench.Compare(ctx, cfg, f.pairs, e.stderr)
	var writeErr error
	if len(results) > 0 {
		writeErr = writeComparison(context.WithoutCancel(ctx), e.stdout, f.jsonOut, cfg, results, cmp)
	}
	return benchExit(ctx, runErr, writeErr)
}

// runDAG runs the DAG scenarios and prints those that ended, in one table
// or one report, before it reports an error.
func runDAG(cmd *cobra.Command, e *env, f benchFlags, cfg bench.Config) error {
	return runScenarios(cmd, e, f, cfg, func(ctx context.Context, cfg bench.Config) ([]*bench.Result, error) {
		return bench.DAG(ctx, cfg, e.stderr)
	})
}

// benchPlace says where a benchmark runs, for its first line on stderr.
func benchPlace(cfg bench.Config) string {
	switch {
	case tasker.IsPostgresURL(cfg.DB) && cfg.Schema == "":
		return redact(cfg.DB) + " (a temporary schema)"
	case cfg.DB != "":
		return redact(cfg.DB)
	}
	return "a temporary database"
}

// benchExit is the outcome of a benchmark whose run ended with runErr and
// whose results were printed with writeErr: an interrupt, a failed run,
// or the printing's error.
func benchExit(ctx context.Context, runErr, writeErr error) error {
	switch {
	case runErr != nil && ctx.Err() != nil:
		return exitWith(ExitInterrupted, errors.Join(runErr, writeErr))
	case runErr != nil:
		return exitWith(ExitUsage, errors.Join(runErr, writeErr))
	}
	return writeErr
}

// writeComparison prints the burn-downs of a comparison and, when a pair
// was completed, the pairs' ratios: a table, or a JSON report.
func writeComparison(ctx context.Context, w io.Writer, jsonOut bool, cfg bench.Config, results []*bench.Result, cmp *bench.Comparison) error {
	if jsonOut {
		rep := bench.NewReport(ctx, cfg, results...)
		rep.Comparison = cmp
		return writeReport(w, rep)
	}
	if err := bench.WriteTable(w, results...); err != nil {
		return exitWith(ExitUsage, err)
	}
	if cmp == nil {
		return nil
	}
	fmt.Fprintln(w)
	if err := bench.WriteComparison(w, cmp); err != nil {
		return exitWith(ExitUsage, err)
	}
	return nil
}

// benchConfig completes cfg with the shared flags: the settings, the
// logger, and the database only when --db (or --schema) is given on this
// command line.
func benchConfig(cmd *cobra.Command, e *env, f benchFlags, cfg bench.Config) (bench.Config, error) {
	log, err := e.logger()
	if err != nil {
		return cfg, exitWith(ExitUsage, err)
	}
	cfg.Concurrency = f.concurrency
	if cfg.Prefetch, err = prefetchValue(cmd.Flags(), f.prefetch); err != nil {
		return cfg, exitWith(ExitUsage, err)
	}
	cfg.Synchronous = strings.ToUpper(f.synchronous)
	cfg.SQLiteDriver = e.sqliteDriver
	cfg.Logger = log
	// Only a --db given on this command line selects a file; the default
	// (and TASKER_DB) would point at the user's own database.
	if cmd.Flags().Changed("db") {
		if e.db == "" {
			return cfg, exitWith(ExitUsage, errors.New("--db is empty"))
		}
		cfg.DB = e.db
	}
	if cmd.Flags().Changed("schema") {
		cfg.Schema = e.schema
	}
	return cfg, nil
}

// startProfiling starts the CPU profile and the execution trace the flags
// ask for; stop ends them and reports an error in writing them.
func startProfiling(f benchFlags) (stop func() error, err error) {
	var stops []func() error
	stop = func() error {
		var errs []error
		for _, s := range slices.Backward(stops) {
			errs = append(errs, s())
		}
		return errors.Join(errs...)
	}
	if f.cpuProfile != "" {
		out, err := os.Create(f.cpuProfile)
		if err != nil {
			return nil, exitWith(ExitUsage, fmt.Errorf("cpu profile: %w", err))
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			out.Close()
			return nil, exitWith(ExitUsage, fmt.Errorf("cpu profile: %w", err))
		}
		stops = append(stops, func() error {
			pprof.StopCPUProfile()
			if err := out.Close(); err != nil {
				return exitWith(ExitUsage, fmt.Errorf("cpu profile: %w", err))
			}
			return nil
		})
	}
	if f.trace != "" {
		out, err := os.Create(f.trace)
		if err != nil {
			_ = stop()
			return nil, exitWith(ExitUsage, fmt.Errorf("trace: %w", err))
		}
		if err := trace.Start(out); err != nil {
			out.Close()
			_ = stop()
			return nil, exitWith(ExitUsage, fmt.Errorf("trace: %w", err))
		}
		stops = append(stops, func() error {
			trace.Stop()
			if err := out.Close(); err != nil {
				return exitWith(ExitUsage, fmt.Errorf("trace: %w", err))
			}
			return nil
		})
	}
	return stop, nil
}

// stopProfiling ends what startProfiling started, setting *err to its
// error unless *err is set already.
func stopProfiling(stop func() error, err *error) {
	if serr := stop(); serr != nil && *err == nil {
		*err = serr
	}
}

// writeReport prints a JSON report.
func writeReport(w io.Writer, rep *bench.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return exitWith(ExitUsage, err)
	}
	return nil
}

// runBench runs one scenario with the shared flags and prints its result.
func runBench(cmd *cobra.Command, e *env, f benchFlags, cfg bench.Config,
	scenario func(context.Context, bench.Config) (*bench.Result, error)) error {
	return runScenarios(cmd, e, f, cfg, func(ctx context.Context, cfg bench.Config) ([]*bench.Result, error) {
		res, err := scenario(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return []*bench.Result{res}, nil
	})
}

// runScenarios runs scenarios with the shared flags and prints the results
// they returned, in one table or one report, before it reports their error.
func runScenarios(cmd *cobra.Command, e *env, f benchFlags, cfg bench.Config,
	scenarios func(context.Context, bench.Config) ([]*bench.Result, error)) (err error) {
	ctx := cmd.Context()
	if cfg, err = benchConfig(cmd, e, f, cfg); err != nil {
		return err
	}
	stop, err := startProfiling(f)
	if err != nil {
		return err
	}
	defer stopProfiling(stop, &err)
	padded := ""
	if cfg.ContextBytes > 0 {
		padded = fmt.Sprintf(", contexts padded with %d bytes", cfg.ContextBytes)
	}
	sqliteSettings := ""
	if !tasker.IsPostgresURL(cfg.DB) {
		sqliteSettings = fmt.Sprintf("SQLite driver %s, synchronous %s, ", cfg.SQLiteDriverUsed(), cfg.Synchronous)
	}
	fmt.Fprintf(e.stderr, "tasker: bench %s on %s (%sconcurrency %d, prefetch %d%s)\n", cmd.Name(), benchPlace(cfg), sqliteSettings,
		cfg.Concurrency, cfg.PrefetchUsed(), padded)
	results, runErr := scenarios(ctx, cfg)
	var writeErr error
	if len(results) > 0 {
		// An interrupted run's report still gets its commit and server
		// version, which are read with a context.
		rctx := context.WithoutCancel(ctx)
		if f.jsonOut {
			writeErr = writeReport(e.stdout, bench.NewReport(rctx, cfg, results...))
		} else if err := bench.WriteTable(e.stdout, results...); err != nil {
			writeErr = exitWith(ExitUsage, err)
		}
	}
	return benchExit(ctx, runErr, writeErr)
}
