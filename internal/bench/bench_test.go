package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/bench"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
	"github.com/tasker-go/tasker/internal/store/sqlite"
)

// These tests run every scenario at a tiny size so the scenarios keep
// working; they say nothing about performance.

func tiny(t *testing.T) bench.Config {
	t.Helper()
	return bench.Config{N: 50, Steps: 10, Runs: 2, Concurrency: 8, Inserters: 4, Synchronous: "NORMAL"}
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func checkCommon(t *testing.T, r *bench.Result, scenario string, n, steps int) {
	t.Helper()
	if r.Scenario != scenario || r.Store != "sqlite" || r.N != n || r.Steps != steps || r.Synchronous != "NORMAL" || r.Concurrency != 8 {
		t.Errorf("result header = %+v, want scenario %s, store sqlite, n %d, steps %d, NORMAL, concurrency 8", r, scenario, n, steps)
	}
	if r.Duration <= 0 || r.TasksPerSec <= 0 || r.StepsPerSec <= 0 {
		t.Errorf("duration %v, tasks/s %v, steps/s %v: want positive", r.Duration, r.TasksPerSec, r.StepsPerSec)
	}
	if got := r.StepsPerSec / r.TasksPerSec; got < float64(steps)-0.01 || got > float64(steps)+0.01 {
		t.Errorf("steps/s ÷ tasks/s = %v, want %d", got, steps)
	}
	// Steps are claimed by the dispatcher, by completions, or by the
	// creation of their task on a running engine.
	if r.Engine.Claimed+r.Engine.ClaimedOnCompletion+r.Engine.ClaimedOnCreation <= 0 ||
		(r.Engine.Claimed > 0 && r.Engine.StepsPerClaim <= 0) || r.Engine.CompleteCalls <= 0 || r.Engine.StepsPerComplete <= 0 {
		t.Errorf("engine stats %+v: want claims, and positive calls and batch sizes", r.Engine)
	}
	// The steps were claimed and completed by statements (a batch's
	// statement serves many steps).
	if r.Engine.Statements <= 0 || r.Engine.StatementsPerStep <= 0 {
		t.Errorf("%d statements, %.2f per step: want some", r.Engine.Statements, r.Engine.StatementsPerStep)
	}
	if row, head := r.Row(), bench.TableHeader(); len(row) != len(head) {
		t.Errorf("row has %d cells, header %d", len(row), len(head))
	}
}

func checkBurnDown(t *testing.T, r *bench.Result, scenario string, n, steps int) {
	t.Helper()
	checkCommon(t, r, scenario, n, steps)
	if claimed := r.Engine.Claimed + r.Engine.ClaimedOnCompletion + r.Engine.ClaimedOnCreation; r.Engine.Completed != int64(n*steps) || claimed != int64(n*steps) {
		t.Errorf("engine completed %d and claimed %d steps, want %d", r.Engine.Completed, claimed, n*steps)
	}
	// A creation is a transaction of its own: BEGIN, its writes, COMMIT.
	if r.Insert == nil || r.Insert.Inserters != 4 || r.Insert.Duration <= 0 || r.Insert.TasksPerSec <= 0 || r.Insert.StepsPerSec <= 0 ||
		r.Insert.StatementsPerTask < 3 {
		t.Errorf("insert = %+v, want positive figures from 4 inserters, and at least 3 statements per task", r.Insert)
	}
	// The work phase's statements are counted apart from the insert
	// phase's: a step costs fewer than a creation, since claims and
	// completions go in batches (with the creations counted in, a one-step
	// task's step would cost more).
	if r.Engine.StatementsPerStep >= r.Insert.StatementsPerTask {
		t.Errorf("work phase: %.2f statements per step, insert phase %.2f per task; want fewer per step", r.Engine.StatementsPerStep, r.Insert.StatementsPerTask)
	}
	if r.Latency != nil {
		t.Errorf("latency = %+v, want none", r.Latency)
	}
	checkProcess(t, r)
}

// checkProcess checks what a burn-down reports its process spent on the
// work phase (the tests run side by side in one process, so the figures
// include theirs: only their presence and consistency are checked).
func checkProcess(t *testing.T, r *bench.Result) {
	t.Helper()
	p := r.Process
	if p == nil {
		t.Fatal("no process figures for the work phase")
	}
	if p.AllocsPerTask <= 0 || p.BytesPerTask < p.AllocsPerTask {
		t.Errorf("process = %+v: want allocations, of a byte or more each", p)
	}
	if runtime.GOOS == "linux" && (p.CPUPerTask <= 0 || p.CPUPerTask != p.UserPerTask+p.SystemPerTask || p.Cores <= 0) {
		t.Errorf("process = %+v: want CPU time per task, user plus system, and the cores it kept busy", p)
	}
	table := tableOf(t, r)
	if !strings.Contains(table, r.Scenario+": the work phase took ") || !strings.Contains(table, " allocations and ") {
		t.Errorf("the table does not give the work phase's CPU and allocations:\n%s", table)
	}
	if strings.Contains(table, "server's CPU is not counted") != (r.Store == "postgres") {
		t.Errorf("the table says the PostgreSQL server's CPU is not counted only on PostgreSQL:\n%s", table)
	}
}

func TestBurnDown(t *testing.T) {
	t.Parallel()
	r, err := bench.BurnDown(ctx(t), tiny(t))
	if err != nil {
		t.Fatal(err)
	}
	checkBurnDown(t, r, "burn-down", 50, 1)
}

func TestDiamond(t *testing.T) {
	t.Parallel()
	r, err := bench.Diamond(ctx(t), tiny(t))
	if err != nil {
		t.Fatal(err)
	}
	checkBurnDown(t, r, "diamond", 50, 4)
}

func TestChain(t *testing.T) {
	t.Parallel()
	r, err := bench.Chain(ctx(t), tiny(t))
	if err != nil {
		t.Fatal(err)
	}
	checkCommon(t, r, "chain", 2, 10)
	// On an idle running engine, a chain's first step is claimed by its
	// task's creation and every other by its parent's completion, but for
	// a race: a dispatcher round in flight (its poll interval passed)
	// holds every free slot for its claim, so that a creation or a
	// completion written meanwhile claims nothing and the dispatcher's
	// claim takes the step (on a loaded machine, one step in about 25
	// runs of 20). Without the claims on creation and completion, the
	// dispatcher would claim all 20.
	if e := r.Engine; e.ClaimedOnCreation+e.ClaimedOnCompletion+e.Claimed != 20 || e.Claimed > 4 || e.ClaimedOnCompletion < 14 {
		t.Errorf("claimed on creation %d, on completion %d, by the dispatcher %d; want 20 in all, at least 14 on completion and at most 4 by the dispatcher",
			e.ClaimedOnCreation, e.ClaimedOnCompletion, e.Claimed)
	}
	l := r.Latency
	if l == nil {
		t.Fatal("no latency")
	}
	if len(l.Runs) != 2 || l.Min <= 0 || l.Min > l.P50 || l.P50 > l.Max || l.PerStepP50 != l.P50/10 {
		t.Errorf("latency = %+v: want 2 runs, 0 < min <= p50 <= max, per step = p50/10", l)
	}
	if sum := l.Runs[0] + l.Runs[1]; sum != r.Duration {
		t.Errorf("duration %v, want the sum of the runs %v", r.Duration, sum)
	}
	if r.Engine.Completed != 20 {
		t.Errorf("engine completed %d steps over the timed runs, want 20 (warm-up excluded)", r.Engine.Completed)
	}
	if r.Insert != nil {
		t.Errorf("insert = %+v, want none", r.Insert)
	}
}

// TestKeptDatabase runs on a named file twice: the file stays, and a second
// run on it works because the first left no unfinished task.
func TestKeptDatabase(t *testing.T) {
	t.Parallel()
	cfg := tiny(t)
	cfg.DB = filepath.Join(t.TempDir(), "kept.db")
	cfg.N = 5
	for range 2 {
		if _, err := bench.BurnDown(ctx(t), cfg); err != nil {
			t.Fatal(err)
		}
	}
}

// ContextBytes pads every task's context with a string of that length.
func TestContextBytes(t *testing.T) {
	t.Parallel()
	cfg := tiny(t)
	cfg.DB = filepath.Join(t.TempDir(), "kept.db")
	cfg.N, cfg.ContextBytes = 5, 3000
	if _, err := bench.BurnDown(ctx(t), cfg); err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(ctx(t), cfg.DB, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tasks, err := s.TaskList(ctx(t), &store.TaskListParams{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 5 {
		t.Fatalf("%d tasks, want 5", len(tasks))
	}
	for _, task := range tasks {
		var c struct{ Pad string }
		if err := json.Unmarshal(task.Context, &c); err != nil || len(c.Pad) != 3000 {
			t.Fatalf("context of %s: %d bytes of pad (%v), want 3000", task.ID, len(c.Pad), err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []bench.Config{
		{N: -1},
		{Synchronous: "OFF"},
		{Steps: 10001},
		{Concurrency: -2},
		{ContextBytes: -1},
		{ContextBytes: bench.MaxContextBytes + 1},
	} {
		if _, err := bench.BurnDown(ctx(t), cfg); err == nil || !strings.HasPrefix(err.Error(), "bench: ") {
			t.Errorf("BurnDown(%+v) = %v, want a bench: error", cfg, err)
		}
	}
}

func TestReport(t *testing.T) {
	t.Parallel()
	r := &bench.Result{Scenario: "chain", Store: "sqlite", N: 2, Steps: 3, Duration: 3 * time.Millisecond,
		TasksPerSec: 666.7, StepsPerSec: 2000, Latency: &bench.Latency{Runs: []time.Duration{time.Millisecond, 2 * time.Millisecond},
			Min: time.Millisecond, P50: time.Millisecond, Max: 2 * time.Millisecond}}
	rep := bench.NewReport(ctx(t), bench.Config{Steps: 3, Runs: 2, Synchronous: "normal"}, r)
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	m := got["machine"].(map[string]any)
	if m["goos"] == "" || m["num_cpu"].(float64) < 1 || !strings.HasPrefix(m["go_version"].(string), "go") {
		t.Errorf("machine = %v", m)
	}
	if s := got["settings"].(map[string]any); s["synchronous"] != "NORMAL" || s["steps"].(float64) != 3 {
		t.Errorf("settings = %v", s)
	}
	// The database's password stays out of a report.
	withPassword := bench.NewReport(ctx(t), bench.Config{DB: "postgres://bench:s3cret@127.0.0.1:1/bench?sslmode=disable"}, r)
	if db := withPassword.Settings.DB; strings.Contains(db, "s3cret") || !strings.Contains(db, "bench:xxxxx@127.0.0.1:1/bench") {
		t.Errorf("report's database = %q, want the URL without its password", db)
	}
	// SQLite's synchronous setting is left out of a report of PostgreSQL
	// runs, and kept when a SQLite run is in it too (bench compare).
	pgRun := *r
	pgRun.Store = "postgres"
	if s := bench.NewReport(ctx(t), bench.Config{DB: "postgres://127.0.0.1:1/bench", Synchronous: "FULL"}, &pgRun).Settings.Synchronous; s != "" {
		t.Errorf("settings of a PostgreSQL report: synchronous %q, want none", s)
	}
	if s := bench.NewReport(ctx(t), bench.Config{DB: "postgres://127.0.0.1:1/bench", Synchronous: "FULL"}, &pgRun, r).Settings.Synchronous; s != "FULL" {
		t.Errorf("settings of a report with a SQLite run: synchronous %q, want FULL", s)
	}
	res := got["results"].([]any)[0].(map[string]any)
	if res["latency"].(map[string]any)["p50_ns"].(float64) != 1e6 {
		t.Errorf("result = %v", res)
	}
	var buf bytes.Buffer
	if err := bench.WriteTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(buf.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "chain") {
		t.Errorf("table:\n%s", buf.String())
	}
}

func TestFanoutBigSteady(t *testing.T) {
	t.Parallel()
	cfg := tiny(t)
	cfg.N = 3
	r, err := bench.Fanout(ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkBurnDown(t, r, "fanout", 3, 12)

	cfg = tiny(t)
	cfg.Steps = 300
	r, err = bench.Big(ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkCommon(t, r, "big", 1, 300)
	if s := r.Scale; s == nil || s.SmallSteps != 100 || s.SmallPerStep <= 0 || s.BigPerStep <= 0 || s.Ratio <= 0 {
		t.Errorf("scale = %+v", r.Scale)
	}
	if table := tableOf(t, r); !strings.Contains(table, fmt.Sprintf("in the task of 300 steps: %.2f×", r.Scale.Ratio)) {
		t.Errorf("the table does not give the ratio:\n%s", table)
	}

	cfg = tiny(t)
	cfg.Rate, cfg.Duration = 40, 500*time.Millisecond
	r, err = bench.Steady(ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkCommon(t, r, "steady", 20, 4)
	if s := r.Steady; s == nil || s.Start.Count != 20 || s.Handoff.Count != 60 || s.Handoff.P50 <= 0 || s.Handoff.P50 > s.Handoff.P99 || s.Handoff.P99 > s.Handoff.Max {
		t.Errorf("steady = %+v %+v", r.Steady.Start, r.Steady.Handoff)
	}
	if s := r.Steady; s.CreatedPerSec <= 0 || s.CreatedPerSec > 2*s.Rate || s.Late < 0 {
		t.Errorf("steady created %d tasks at %.1f/s, %d late, asked for %.1f/s", r.N, s.CreatedPerSec, s.Late, s.Rate)
	}
	// The completer's figures cover the run's 80 outcomes (20 tasks of 4 steps).
	if c := r.Steady.Completer; c == nil || c.Outcomes != 80 || c.Writes <= 0 || c.Writes > 80 || c.WriteP50 <= 0 ||
		c.WriteP50 > c.WriteP99 || c.WaitP50 > c.WaitP99 {
		t.Errorf("steady completer = %+v, want 80 outcomes in 1 to 80 writes", c)
	}
	if table := tableOf(t, r); !strings.Contains(table, "creation → first step p50 ") || !strings.Contains(table, "20 tasks created at ") ||
		!strings.Contains(table, "for the completion in flight; a completion took p50 ") {
		t.Errorf("the table does not give the creation rate and latency, and the completer's:\n%s", table)
	}
	if r.PeakRSS <= 0 {
		t.Error("no peak RSS reported")
	}
}

// tableOf returns the table WriteTable prints for r.
func tableOf(t *testing.T, r *bench.Result) string {
	t.Helper()
	var buf bytes.Buffer
	if err := bench.WriteTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// On PostgreSQL the scenarios run in a schema of their own and report
// transactions per step.
func TestBurnDownOnPostgres(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	cfg := tiny(t)
	cfg.DB = url
	r, err := bench.BurnDown(ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Store != "postgres" || r.Engine.Completed != 50 || r.DBTxPerStep <= 0 {
		t.Errorf("result = %+v", r)
	}
	checkProcess(t, r)
	rep := bench.NewReport(ctx(t), cfg, r)
	if !strings.Contains(rep.Machine.PostgresVersion, "PostgreSQL") {
		t.Errorf("report machine = %+v", rep.Machine)
	}
}

// Compare alternates the stores from pair to pair and summarizes the
// ratios of the pairs it ran.
func TestCompare(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	cfg := tiny(t)
	cfg.DB = url
	var progress bytes.Buffer
	results, cmp, err := bench.Compare(ctx(t), cfg, 2, &progress)
	if err != nil {
		t.Fatal(err)
	}
	var stores []string
	for _, r := range results {
		stores = append(stores, r.Store)
		if r.Scenario != "burn-down" || r.N != 50 || r.Engine.Completed != 50 {
			t.Errorf("result %+v: want a burn-down of the 50 tasks", r)
		}
	}
	if got := strings.Join(stores, " "); got != "sqlite postgres postgres sqlite" {
		t.Errorf("stores in the order they ran: %s", got)
	}
	if len(cmp.Pairs) != 2 || cmp.Pairs[0].First != "sqlite" || cmp.Pairs[1].First != "postgres" {
		t.Fatalf("pairs = %+v", cmp.Pairs)
	}
	pairs := [][2]*bench.Result{{results[0], results[1]}, {results[3], results[2]}}
	for i, p := range cmp.Pairs {
		lite, pg := pairs[i][0], pairs[i][1]
		if p.SQLite != lite.TasksPerSec || p.Postgres != pg.TasksPerSec || p.Ratio != lite.TasksPerSec/pg.TasksPerSec {
			t.Errorf("pair %d = %+v, from SQLite %v and PostgreSQL %v tasks/s", i+1, p, lite.TasksPerSec, pg.TasksPerSec)
		}
	}
	lo, hi := min(cmp.Pairs[0].Ratio, cmp.Pairs[1].Ratio), max(cmp.Pairs[0].Ratio, cmp.Pairs[1].Ratio)
	if cmp.Min != lo || cmp.Max != hi || cmp.Median != (lo+hi)/2 || cmp.Target != 2 {
		t.Errorf("summary = %+v, want min %v, max %v, median their mean, target 2", cmp, lo, hi)
	}
	if n := strings.Count(progress.String(), "\n"); n != 4 || !strings.Contains(progress.String(), "pair 2 of 2: PostgreSQL") {
		t.Errorf("progress:\n%s", progress.String())
	}
	// Several results are numbered in the table and in the lines under it.
	var all bytes.Buffer
	if err := bench.WriteTable(&all, results...); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(all.String(), "\n"); !strings.HasPrefix(strings.TrimSpace(lines[0]), "#") ||
		!strings.HasPrefix(strings.TrimSpace(lines[4]), "4 ") || !strings.Contains(all.String(), "\n#4 burn-down: the work phase took") {
		t.Errorf("table of the results:\n%s", all.String())
	}
	var table bytes.Buffer
	if err := bench.WriteComparison(&table, cmp); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), fmt.Sprintf("median %.2f×", cmp.Median)) || strings.Count(table.String(), "\n") != 4 {
		t.Errorf("comparison table:\n%s", table.String())
	}
}

// A comparison stopped part of the way (here cancelled once its first
// pair is done) returns what it measured with the error.
func TestCompareCancelled(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	cfg := tiny(t)
	cfg.DB = url
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	lines := &cancelAfter{n: 2, cancel: cancel}
	results, cmp, err := bench.Compare(c, cfg, 3, lines)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if len(results) != 2 || cmp == nil || len(cmp.Pairs) != 1 || cmp.Median != cmp.Pairs[0].Ratio ||
		cmp.Pairs[0].SQLite != results[0].TasksPerSec || cmp.Pairs[0].Postgres != results[1].TasksPerSec {
		t.Errorf("after the first pair: %d results, comparison %+v", len(results), cmp)
	}
}

// cancelAfter is a progress writer that cancels after n lines.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	if w.n -= bytes.Count(p, []byte("\n")); w.n <= 0 {
		w.cancel()
	}
	return len(p), nil
}

// A comparison that cannot run says so before it measures anything.
func TestCompareErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cfg   bench.Config
		pairs int
		want  string
	}{
		{"no PostgreSQL", bench.Config{DB: filepath.Join(t.TempDir(), "x.db")}, 1, "needs a PostgreSQL URL"},
		{"no pairs", bench.Config{DB: "postgres://127.0.0.1:1/none"}, 0, "pairs must be between 1 and 100"},
		{"a kept schema", bench.Config{DB: "postgres://127.0.0.1:1/none", Schema: "kept"}, 1, "fresh schema, not in a given one"},
		{"bad setting", bench.Config{DB: "postgres://127.0.0.1:1/none", Synchronous: "OFF"}, 1, "synchronous must be FULL or NORMAL"},
		{"bad driver", bench.Config{DB: "postgres://127.0.0.1:1/none", SQLiteDriver: "cc"}, 1, `SQLite driver must be`},
	} {
		results, cmp, err := bench.Compare(ctx(t), tc.cfg, tc.pairs, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || results != nil || cmp != nil {
			t.Errorf("%s: %v, %v, %v; want an error saying %q and nothing run", tc.name, results, cmp, err, tc.want)
		}
		if _, err := bench.CompareConfig(tc.cfg, tc.pairs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CompareConfig: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	cfg, err := bench.CompareConfig(bench.Config{DB: "postgres://127.0.0.1:1/none"}, 1)
	if err != nil || cfg.N != bench.DefaultCompareN {
		t.Errorf("CompareConfig with no N: %v, N %d; want N %d", err, cfg.N, bench.DefaultCompareN)
	}
}
