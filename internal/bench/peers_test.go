package bench_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
)

// The side-by-side comparison with River (bench/peers, a module of its
// own) runs end to end on a small N: River's jobs, Tasker's tasks and
// diamond steps each get a rate and a ratio, and the schemas it works in
// are dropped afterwards. A smoke test, so that it never rots; the
// figures themselves are measured with a real N (docs/performance.md).
func TestPeersComparisonSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the River comparison; skipped with -short")
	}
	t.Parallel()
	url := pgtest.URL(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Each system works in a schema of its own, named after the process;
	// those of other runs (one killed earlier, one running now) are not
	// this run's.
	schemas := func() map[string]bool {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname ~ '^(river|tasker)_[0-9]+_[0-9]+$'`)
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		for _, n := range names {
			set[n] = true
		}
		return set
	}
	before := schemas()
	cmd := exec.CommandContext(ctx, goBin, "run", ".", "-db", url, "-n", "200", "-workers", "4", "-rounds", "1", "-json")
	cmd.Dir = filepath.Join("..", "..", "bench", "peers")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench/peers: %v\n%s", err, stderr.String())
	}
	var report struct {
		N       int `json:"n"`
		Figures []struct {
			System string  `json:"system"`
			Units  int     `json:"units"`
			PerSec float64 `json:"units_per_sec"`
		} `json:"figures"`
		Tasks   float64 `json:"ratio_tasks_to_river"`
		Diamond float64 `json:"ratio_diamond_steps_to_river"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("the report is not JSON: %v\n%s", err, out)
	}
	systems := map[string]bool{}
	for _, f := range report.Figures {
		systems[f.System] = true
		if f.Units != 200 || f.PerSec <= 0 {
			t.Errorf("%s: %d units at %.0f/s, want 200 at a positive rate", f.System, f.Units, f.PerSec)
		}
	}
	for _, s := range []string{"river jobs", "tasker tasks", "tasker diamond steps"} {
		if !systems[s] {
			t.Errorf("no figure for %s in %s", s, out)
		}
	}
	if report.N != 200 || report.Tasks <= 0 || report.Diamond <= 0 {
		t.Errorf("n %d, ratios %.2f and %.2f; want 200 and positive ratios", report.N, report.Tasks, report.Diamond)
	}
	var left []string
	for n := range schemas() {
		if !before[n] {
			left = append(left, n)
		}
	}
	if len(left) > 0 {
		t.Errorf("schemas left behind: %v", left)
	}
}
