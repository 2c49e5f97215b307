package bench_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tasker-go/tasker/internal/bench"
	"github.com/tasker-go/tasker/internal/cli"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

// TestCommand runs `tasker bench` (internal/cli/bench.go) end to end: by
// default it must leave the working directory's tasker.db and TASKER_DB
// alone, and an explicit --db must be used.
func TestCommand(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("TASKER_DB", filepath.Join(dir, "env.db"))

	run := func(args ...string) (string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := cli.Main(ctx(t), args, &out, &errOut); code != cli.ExitOK {
			t.Fatalf("tasker %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
		}
		return out.String(), errOut.String()
	}

	// A scenario's defaults are its own: compare's (20,000 tasks) do not
	// leak into burn-down's.
	out, _ := run("bench", "burn-down", "--synchronous", "NORMAL", "--json")
	var def bench.Report
	if err := json.Unmarshal([]byte(out), &def); err != nil || len(def.Results) != 1 || def.Results[0].N != bench.DefaultN {
		t.Errorf("burn-down without -n: %v, report %+v; want %d tasks", err, def.Results, bench.DefaultN)
	}
	out, _ = run("bench", "burn-down", "-n", "10", "--synchronous", "NORMAL")
	// The table, then the line on the work phase's CPU and allocations.
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[1], "burn-down") ||
		!strings.HasPrefix(strings.TrimSpace(lines[2]), "burn-down: the work phase took ") {
		t.Errorf("burn-down table:\n%s", out)
	}
	out, _ = run("bench", "chain", "--steps", "3", "--runs", "1", "--synchronous", "normal", "--json")
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("chain --json: %v\n%s", err, out)
	}
	if len(rep.Results) != 1 || rep.Results[0].Scenario != "chain" || rep.Results[0].Steps != 3 || rep.Results[0].Synchronous != "NORMAL" ||
		rep.Settings.Runs != 1 || rep.Machine.NumCPU < 1 || rep.Results[0].Prefetch != 128 {
		t.Errorf("chain report = %+v", rep)
	}
	// --prefetch 0 turns prefetching off, and the report says so.
	out, errOut := run("bench", "burn-down", "-n", "10", "--synchronous", "NORMAL", "--concurrency", "4", "--prefetch", "0", "--json")
	rep = bench.Report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("burn-down --json: %v\n%s", err, out)
	}
	if r := rep.Results[0]; r.Concurrency != 4 || r.Prefetch != 0 || !strings.Contains(errOut, "concurrency 4, prefetch 0") {
		t.Errorf("--concurrency 4 --prefetch 0: report concurrency %d prefetch %d; stderr %q", r.Concurrency, r.Prefetch, errOut)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("bench without --db left %v in the working directory", entries)
	}

	kept := filepath.Join(dir, "kept.db")
	_, errOut = run("--db", kept, "bench", "diamond", "-n", "5", "--synchronous", "NORMAL")
	if _, err := os.Stat(kept); err != nil || !strings.Contains(errOut, kept) {
		t.Errorf("bench with --db %s: stat %v, stderr %q", kept, err, errOut)
	}

	for _, bad := range [][]string{{"--synchronous", "OFF"}, {"--prefetch", "-1"}} {
		var out2, errOut2 bytes.Buffer
		if code := cli.Main(ctx(t), append([]string{"bench", "burn-down"}, bad...), &out2, &errOut2); code != cli.ExitUsage {
			t.Errorf("%s: exit %d, want %d; stderr %q", strings.Join(bad, " "), code, cli.ExitUsage, errOut2.String())
		}
	}
}

// `tasker bench compare` needs a PostgreSQL --db, and reports the
// comparison in its JSON.
func TestCompareCommand(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := cli.Main(ctx(t), []string{"bench", "compare", "-n", "10"}, &out, &errOut); code != cli.ExitUsage ||
		!strings.Contains(errOut.String(), "needs --db with the PostgreSQL URL") {
		t.Errorf("compare without --db: exit %d, stderr %q", code, errOut.String())
	}
	url := pgtest.URL(t)
	out.Reset()
	errOut.Reset()
	if code := cli.Main(ctx(t), []string{"--db", url, "--schema", "kept", "bench", "compare", "-n", "10"}, &out, &errOut); code != cli.ExitUsage ||
		!strings.Contains(errOut.String(), "--schema is refused") || strings.Contains(errOut.String(), "burn-downs of") {
		t.Errorf("compare with --schema: exit %d, stderr %q", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := cli.Main(ctx(t), []string{"--db", url, "bench", "compare", "--pairs", "0"}, &out, &errOut); code != cli.ExitUsage ||
		!strings.Contains(errOut.String(), "pairs must be between 1 and 100") || strings.Contains(errOut.String(), "burn-downs of") {
		t.Errorf("compare --pairs 0: exit %d, stderr %q", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	args := []string{"--db", url, "bench", "compare", "-n", "20", "--pairs", "1", "--synchronous", "NORMAL", "--json"}
	if code := cli.Main(ctx(t), args, &out, &errOut); code != cli.ExitOK {
		t.Fatalf("compare: exit %d\n%s", code, errOut.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("compare --json: %v\n%s", err, out.String())
	}
	if c := rep.Comparison; c == nil || len(c.Pairs) != 1 || len(rep.Results) != 2 || c.Pairs[0].SQLite != rep.Results[0].TasksPerSec ||
		c.Pairs[0].Postgres != rep.Results[1].TasksPerSec || c.Median != c.Pairs[0].Ratio {
		t.Errorf("compare report: comparison %+v, %d results", rep.Comparison, len(rep.Results))
	}
	if !strings.Contains(errOut.String(), "pair 1 of 1: PostgreSQL") {
		t.Errorf("compare progress on stderr: %q", errOut.String())
	}
}

// `tasker bench dag` runs the four DAG scenarios in order, each with its
// own defaults and -n for the diamonds only, in one report; a bad setting
// stops it before anything runs.
func TestDAGCommand(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := cli.Main(ctx(t), []string{"bench", "dag", "-n", "5", "--synchronous", "NORMAL", "--json"}, &out, &errOut); code != cli.ExitOK {
		t.Fatalf("bench dag: exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("bench dag --json: %v\n%s", err, out.String())
	}
	want := []struct {
		scenario string
		n, steps int
	}{{"diamond", 5, 4}, {"chain", 5, bench.DefaultChainSteps}, {"fanout", bench.DefaultFanoutN, bench.DefaultFanoutWidth + 2}, {"big", 1, bench.DefaultBigSteps}}
	if len(rep.Results) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(rep.Results), len(want), rep.Results)
	}
	for i, w := range want {
		if r := rep.Results[i]; r.Scenario != w.scenario || r.N != w.n || r.Steps != w.steps || r.Duration <= 0 {
			t.Errorf("result %d: %s, %d tasks of %d steps in %s; want %s, %d of %d", i, r.Scenario, r.N, r.Steps, r.Duration, w.scenario, w.n, w.steps)
		}
	}
	if n := strings.Count(errOut.String(), " done in "); n != 4 {
		t.Errorf("%d progress lines on stderr, want 4:\n%s", n, errOut.String())
	}

	out.Reset()
	errOut.Reset()
	if code := cli.Main(ctx(t), []string{"bench", "dag", "-n", "-1"}, &out, &errOut); code != cli.ExitUsage ||
		out.Len() != 0 || !strings.Contains(errOut.String(), "n must be at least 1") {
		t.Errorf("bench dag -n -1: exit %d, stdout %q, stderr %q; want a usage error and no table", code, out.String(), errOut.String())
	}
}
