package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tasker-go/tasker"
)

// Result is the outcome of one scenario. Durations marshal as integer
// nanoseconds (the _ns keys).
type Result struct {
	// Scenario is "burn-down", "diamond" or "chain".
	Scenario string `json:"scenario"`
	// Store is the storage backend, "sqlite" or "postgres".
	Store string `json:"store"`
	// Synchronous, Concurrency and Prefetch are the settings the scenario
	// ran with.
	Synchronous string `json:"synchronous"`
	// SQLiteDriver is the SQLite build of an SQLite run, "c" or "go";
	// empty on PostgreSQL.
	SQLiteDriver string `json:"sqlite_driver,omitempty"`
	Concurrency  int    `json:"concurrency"`
	Prefetch     int    `json:"prefetch"`
	// N is the number of tasks measured (for a chain: the timed runs).
	N int `json:"n"`
	// Steps is the number of steps of each task.
	Steps int `json:"steps"`
	// Duration is the measured time: the work phase of a burn-down (from
	// Start until every task is finalized), the sum of the timed runs of a
	// chain.
	Duration time.Duration `json:"duration_ns"`
	// TasksPerSec and StepsPerSec are N and N×Steps over Duration.
	TasksPerSec float64 `json:"tasks_per_sec"`
	StepsPerSec float64 `json:"steps_per_sec"`
	// Insert is the insert phase of a burn-down.
	Insert *Insert `json:"insert,omitempty"`
	// Latency is the per-run latency of a chain.
	Latency *Latency `json:"latency,omitempty"`
	// Steady holds the latencies of the steady scenario.
	Steady *SteadyLatency `json:"steady,omitempty"`
	// Scale compares the per-step time of a big task with a small one.
	Scale *Scale `json:"scale,omitempty"`
	// Process is what this process spent per task on the work phase of a
	// burn-down, diamond or fanout scenario.
	Process *Process `json:"process,omitempty"`
	// Engine are the engine's counters over the measured phase.
	Engine EngineStats `json:"engine"`
	// DBTxPerStep is the number of PostgreSQL transactions committed per
	// step over the measured phase (from pg_stat_database, so it counts
	// every session of the database); 0 on SQLite.
	DBTxPerStep float64 `json:"db_tx_per_step,omitempty"`
	// PeakRSS is the peak resident set size of the process, in bytes, when
	// the scenario ended (0 where the system does not report it).
	PeakRSS int64 `json:"peak_rss_bytes,omitempty"`
}

// Percentiles summarizes durations: nearest-rank p50, p95, p99 and the
// maximum, over Count samples.
type Percentiles struct {
	Count int           `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P95   time.Duration `json:"p95_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

func percentiles(d []time.Duration) *Percentiles {
	if len(d) == 0 {
		return &Percentiles{}
	}
	sorted := slices.Clone(d)
	slices.Sort(sorted)
	return &Percentiles{Count: len(d), P50: percentile(sorted, 50), P95: percentile(sorted, 95), P99: percentile(sorted, 99), Max: sorted[len(sorted)-1]}
}

// SteadyLatency are the latencies measured at a fixed task rate.
type SteadyLatency struct {
	// Rate is the task creation rate asked for, per second.
	Rate float64 `json:"rate"`
	// CreatedPerSec is the rate the tasks were created at: the number of
	// tasks over the time from the first creation to the return of the
	// last one.
	CreatedPerSec float64 `json:"created_per_sec"`
	// Late counts the creations that started behind schedule because as
	// many as the scenario allows in flight had not returned: a rate the
	// store did not keep up with.
	Late int `json:"late"`
	// Start is from the CreateTask call to the start of the first step's
	// handler.
	Start *Percentiles `json:"start"`
	// Handoff is from the end of the handler of a step's last parent to
	// the start of the step's handler.
	Handoff *Percentiles `json:"handoff"`
	// Completer is where the hand-off's time goes: the outcomes' wait for
	// the completion in flight and the completion transactions, from the
	// engine's histograms (tasker.Stats).
	Completer *Completer `json:"completer"`
}

// Completer summarizes the engine's completion histograms over a run:
// estimated percentiles (interpolated within the histograms' buckets).
type Completer struct {
	// Outcomes and Writes are the numbers of outcomes and of completion
	// transactions measured.
	Outcomes int64 `json:"outcomes"`
	Writes   int64 `json:"writes"`
	// WaitP50 and WaitP99 are of the time from the end of a handler to the
	// start of the transaction that records its outcome.
	WaitP50 time.Duration `json:"wait_p50_ns"`
	WaitP99 time.Duration `json:"wait_p99_ns"`
	// WriteP50 and WriteP99 are of the completion transactions' durations.
	WriteP50 time.Duration `json:"write_p50_ns"`
	WriteP99 time.Duration `json:"write_p99_ns"`
}

func completer(s tasker.Stats) *Completer {
	w, x := s.OutcomeWait, s.CompletionWrite
	return &Completer{Outcomes: w.Count, Writes: x.Count, WaitP50: w.Quantile(0.5), WaitP99: w.Quantile(0.99),
		WriteP50: x.Quantile(0.5), WriteP99: x.Quantile(0.99)}
}

// Scale compares one big task with small ones of the same shape.
type Scale struct {
	SmallSteps   int           `json:"small_steps"`
	SmallPerStep time.Duration `json:"small_per_step_ns"`
	BigPerStep   time.Duration `json:"big_per_step_ns"`
	// Ratio is BigPerStep / SmallPerStep.
	Ratio float64 `json:"ratio"`
}

// Insert describes the insert phase of a burn-down.
type Insert struct {
	// Inserters is the number of goroutines calling CreateTask.
	Inserters   int           `json:"inserters"`
	Duration    time.Duration `json:"duration_ns"`
	TasksPerSec float64       `json:"tasks_per_sec"`
	StepsPerSec float64       `json:"steps_per_sec"`
	// StatementsPerTask is the statements the store sent per task created
	// (BEGIN and COMMIT included); the table's stmts/step is the work
	// phase's.
	StatementsPerTask float64 `json:"statements_per_task"`
}

// Latency summarizes the end-to-end durations of a chain's runs (from the
// CreateTask call to the return of WaitTask) and the same divided by the
// number of steps.
type Latency struct {
	Runs       []time.Duration `json:"runs_ns"`
	Min        time.Duration   `json:"min_ns"`
	P50        time.Duration   `json:"p50_ns"`
	Max        time.Duration   `json:"max_ns"`
	PerStepMin time.Duration   `json:"per_step_min_ns"`
	PerStepP50 time.Duration   `json:"per_step_p50_ns"`
	PerStepMax time.Duration   `json:"per_step_max_ns"`
}

// EngineStats are the engine's counters over the measured phase, with the
// average batch sizes they imply.
type EngineStats struct {
	// ClaimCalls counts claim transactions, empty ones included; Claimed
	// counts the steps they returned.
	ClaimCalls int64 `json:"claim_calls"`
	Claimed    int64 `json:"claimed"`
	// ClaimedOnCompletion counts the steps claimed by completion
	// transactions (for the slots their outcomes freed).
	ClaimedOnCompletion int64 `json:"claimed_on_completion"`
	// ClaimedOnCreation counts the steps claimed by the transactions that
	// created their tasks (on a running engine with free slots).
	ClaimedOnCreation int64 `json:"claimed_on_creation"`
	// CompleteCalls counts completion transactions; Completed counts the
	// outcomes they applied.
	CompleteCalls int64 `json:"complete_calls"`
	Completed     int64 `json:"completed"`
	// StepsPerClaim and StepsPerComplete are the average batch sizes.
	StepsPerClaim    float64 `json:"steps_per_claim"`
	StepsPerComplete float64 `json:"steps_per_complete"`
	// Statements counts the statements the store sent to the database
	// (BEGIN and COMMIT included), counted at the store's driver;
	// StatementsPerStep divides them by the steps completed.
	Statements        int64   `json:"statements"`
	StatementsPerStep float64 `json:"statements_per_step"`
}

func engineStats(s tasker.Stats) EngineStats {
	e := EngineStats{ClaimCalls: s.ClaimCalls, Claimed: s.Claimed, ClaimedOnCompletion: s.ClaimedOnCompletion,
		ClaimedOnCreation: s.ClaimedOnCreation, CompleteCalls: s.CompleteCalls, Completed: s.Completed}
	if s.ClaimCalls > 0 {
		e.StepsPerClaim = float64(s.Claimed) / float64(s.ClaimCalls)
	}
	if s.CompleteCalls > 0 {
		e.StepsPerComplete = float64(s.Completed) / float64(s.CompleteCalls)
	}
	e.Statements = s.StoreStatements
	if s.Completed > 0 {
		e.StatementsPerStep = float64(s.StoreStatements) / float64(s.Completed)
	}
	return e
}

func newResult(scenario string, cfg Config, n, steps int) *Result {
	r := &Result{Scenario: scenario, Store: "sqlite", Synchronous: cfg.Synchronous, SQLiteDriver: cfg.SQLiteDriver,
		Concurrency: cfg.Concurrency, Prefetch: cfg.Prefetch, N: n, Steps: steps}
	if tasker.IsPostgresURL(cfg.DB) {
		r.Store, r.Synchronous, r.SQLiteDriver = "postgres", "-", ""
	}
	return r
}

// TableHeader returns the column names of Row.
func TableHeader() []string {
	return []string{"scenario", "store", "driver", "sync", "conc", "prefetch", "tasks", "steps", "duration", "tasks/s", "steps/s",
		"insert tasks/s", "p50", "p95", "p99", "max", "p50/step", "steps/claim", "claimed on completion", "claimed on creation", "steps/complete", "stmts/step", "tx/step", "rss"}
}

// Row returns the result as table cells in the order of TableHeader; "-"
// marks what the scenario does not measure.
func (r *Result) Row() []string {
	driver := r.SQLiteDriver
	if driver == "" {
		driver = "-"
	}
	row := []string{r.Scenario, r.Store, driver, r.Synchronous, fmt.Sprint(r.Concurrency), fmt.Sprint(r.Prefetch), fmt.Sprint(r.N), fmt.Sprint(r.Steps),
		fmtDuration(r.Duration), fmtRate(r.TasksPerSec), fmtRate(r.StepsPerSec)}
	if r.Insert != nil {
		row = append(row, fmtRate(r.Insert.TasksPerSec))
	} else {
		row = append(row, "-")
	}
	switch {
	case r.Latency != nil:
		l := r.Latency
		p := percentiles(l.Runs)
		row = append(row, fmtDuration(l.P50), fmtDuration(p.P95), fmtDuration(p.P99), fmtDuration(l.Max), fmtDuration(l.PerStepP50))
	case r.Steady != nil:
		h := r.Steady.Handoff
		row = append(row, fmtDuration(h.P50), fmtDuration(h.P95), fmtDuration(h.P99), fmtDuration(h.Max), "-")
	case r.Scale != nil:
		row = append(row, "-", "-", "-", "-", fmtDuration(r.Scale.BigPerStep))
	default:
		row = append(row, "-", "-", "-", "-", "-")
	}
	onCompletion, onCreation := "-", "-"
	if all := r.Engine.Claimed + r.Engine.ClaimedOnCompletion + r.Engine.ClaimedOnCreation; all > 0 {
		onCompletion = fmt.Sprintf("%.0f%%", 100*float64(r.Engine.ClaimedOnCompletion)/float64(all))
		onCreation = fmt.Sprintf("%.0f%%", 100*float64(r.Engine.ClaimedOnCreation)/float64(all))
	}
	row = append(row, fmt.Sprintf("%.1f", r.Engine.StepsPerClaim), onCompletion, onCreation, fmt.Sprintf("%.1f", r.Engine.StepsPerComplete),
		fmt.Sprintf("%.1f", r.Engine.StatementsPerStep))
	if r.DBTxPerStep > 0 {
		row = append(row, fmt.Sprintf("%.2f", r.DBTxPerStep))
	} else {
		row = append(row, "-")
	}
	if r.PeakRSS > 0 {
		row = append(row, fmt.Sprintf("%d MiB", r.PeakRSS>>20))
	} else {
		row = append(row, "-")
	}
	return row
}

// WriteTable writes results as an aligned table with a header, numbered
// when there are several.
func WriteTable(w io.Writer, results ...*Result) error {
	// Several results are numbered, and so are the lines under the table
	// that belong to them.
	numbered := len(results) > 1
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := strings.Join(TableHeader(), "\t") + "\t"
	if numbered {
		header = "#\t" + header
	}
	fmt.Fprintln(tw, header)
	for i, r := range results {
		row := strings.Join(r.Row(), "\t") + "\t"
		if numbered {
			row = strconv.Itoa(i+1) + "\t" + row
		}
		fmt.Fprintln(tw, row)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i, r := range results {
		if line := r.summary(); line != "" {
			if numbered {
				line = fmt.Sprintf("#%d %s", i+1, line)
			}
			if _, err := fmt.Fprintln(w, line); err != nil {
				return err
			}
		}
	}
	return nil
}

// summary is a line under the table for what a row has no column for: the
// big scenario's ratio, the steady scenario's creation rate and latency,
// and what the process spent on a burn-down's work phase.
func (r *Result) summary() string {
	switch {
	case r.Scale != nil:
		s := r.Scale
		return fmt.Sprintf("%s: %s per step in tasks of %d steps, %s in the task of %d steps: %.2f×",
			r.Scenario, fmtDuration(s.SmallPerStep), s.SmallSteps, fmtDuration(s.BigPerStep), r.Steps, s.Ratio)
	case r.Process != nil:
		p := r.Process
		line := r.Scenario + ": the work phase took "
		if p.CPUPerTask > 0 {
			line += fmt.Sprintf("%s of this process's CPU per task (user %s, system %s; %.2f cores busy), ",
				fmtDuration(p.CPUPerTask), fmtDuration(p.UserPerTask), fmtDuration(p.SystemPerTask), p.Cores)
		}
		line += fmt.Sprintf("%.0f allocations and %.1f KB allocated per task, %d collections", p.AllocsPerTask, p.BytesPerTask/1024, p.GCCycles)
		if r.Store == "postgres" {
			line += " (the PostgreSQL server's CPU is not counted)"
		}
		if r.Insert != nil && r.Insert.StatementsPerTask > 0 {
			line += fmt.Sprintf("; the insert phase sent %.1f statements per task", r.Insert.StatementsPerTask)
		}
		return line
	case r.Steady != nil && r.Steady.Start != nil:
		s := r.Steady
		p := s.Start
		line := fmt.Sprintf("%s: %d tasks created at %s/s (asked for %s/s); creation → first step p50 %s, p95 %s, p99 %s, max %s (the table shows the hand-off from parent to child)",
			r.Scenario, r.N, fmtRate(s.CreatedPerSec), fmtRate(s.Rate), fmtDuration(p.P50), fmtDuration(p.P95), fmtDuration(p.P99), fmtDuration(p.Max))
		if c := s.Completer; c != nil && c.Writes > 0 {
			line += fmt.Sprintf("\n%s: an outcome waited p50 %s, p99 %s for the completion in flight; a completion took p50 %s, p99 %s (%d for %d outcomes)",
				r.Scenario, fmtDuration(c.WaitP50), fmtDuration(c.WaitP99), fmtDuration(c.WriteP50), fmtDuration(c.WriteP99), c.Writes, c.Outcomes)
		}
		if s.Late > 0 {
			line += fmt.Sprintf("\n%s: %d creations started late, behind %d in flight: the store did not keep up with the rate", r.Scenario, s.Late, maxCreating)
		}
		return line
	}
	return ""
}

func fmtDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func fmtRate(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// Report is the JSON document of `tasker bench --json`: when and where the
// figures were measured, with which settings, and the results.
type Report struct {
	Timestamp time.Time `json:"timestamp"`
	Machine   Machine   `json:"machine"`
	// Settings is the configuration as given; fields left zero took their
	// defaults, and each result states the values it ran with.
	Settings Config    `json:"settings"`
	Results  []*Result `json:"results"`
	// Comparison is the summary of `tasker bench compare` (Compare).
	Comparison *Comparison `json:"comparison,omitempty"`
}

// Machine describes where a report was measured.
type Machine struct {
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// CPUModel is read from /proc/cpuinfo where there is one.
	CPUModel  string `json:"cpu_model,omitempty"`
	GoVersion string `json:"go_version"`
	// PostgresVersion is the server's version() on PostgreSQL.
	PostgresVersion string `json:"postgres_version,omitempty"`
	// Commit is the source revision: from `git rev-parse HEAD` in the
	// working directory, else from the binary's build information; empty
	// when neither is known.
	Commit string `json:"commit,omitempty"`
}

// NewReport returns a report of results measured now on this machine with
// cfg. It never fails: what it cannot find out is left empty.
func NewReport(ctx context.Context, cfg Config, results ...*Result) *Report {
	cfg.Logger = nil
	if cfg.Synchronous != "" {
		cfg.Synchronous = strings.ToUpper(cfg.Synchronous)
	}
	m := machineInfo(ctx)
	if tasker.IsPostgresURL(cfg.DB) {
		m.PostgresVersion = postgresVersion(ctx, cfg.DB)
		// SQLite's setting applies to no run of a report of PostgreSQL
		// runs alone (bench compare runs on both).
		if !slices.ContainsFunc(results, func(r *Result) bool { return r.Store == "sqlite" }) {
			cfg.Synchronous, cfg.SQLiteDriver = "", ""
		}
	}
	// A report is meant to be kept and shared: no password goes in it.
	if u, err := url.Parse(cfg.DB); err == nil && u.User != nil {
		cfg.DB = u.Redacted()
	}
	return &Report{Timestamp: time.Now().UTC(), Machine: m, Settings: cfg, Results: results}
}

func machineInfo(ctx context.Context) Machine {
	return Machine{
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel: cpuModel(), GoVersion: runtime.Version(), Commit: commit(ctx),
	}
}

func commit(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output(); err == nil {
		if c := strings.TrimSpace(string(out)); c != "" {
			return c
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
