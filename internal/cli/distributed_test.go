//go:build unix

package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres/pgtest"
	"github.com/tasker-go/tasker/internal/store/storetest"
)

// ledgerDiamond is a diamond whose every step appends "STEP_ID ATTEMPT" to
// a ledger file: the effect of an attempt, recorded under the step's id.
func ledgerDiamond(ledger string) string {
	script := `e=$(sed -n 's/.*"step_id":"\([^"]*\)".*"attempt":\([0-9]*\),.*/\1 \2/p'); echo "$e" >> ` + ledger + `; echo '{}'`
	step := func(name, deps string) string {
		s := fmt.Sprintf("  - name: %s\n    handler: command\n    config: {command: [sh, -c, %q]}\n", name, script)
		if deps != "" {
			s += "    depends_on: [" + deps + "]\n"
		}
		return s
	}
	return "namespace: dist\nname: diamond\nversion: 1.0.0\ndefaults: {retry: {limit: 10, backoff: {initial: 50ms, max: 1s}}, timeout: 30s}\nsteps:\n" +
		step("a", "") + step("b", "a") + step("c", "a") + step("d", "b, c")
}

// cluster is a set of worker processes on one PostgreSQL schema.
type cluster struct {
	t      *testing.T
	bin    string
	db     string
	schema string
	dir    string
	args   []string

	mu      sync.Mutex
	procs   map[string]*exec.Cmd
	kills   map[string]time.Time // worker id -> when it was killed
	started int
}

func newCluster(t *testing.T, db, schema string, args ...string) *cluster {
	return &cluster{t: t, bin: binary(t), db: db, schema: schema, dir: t.TempDir(), args: args,
		procs: map[string]*exec.Cmd{}, kills: map[string]time.Time{}}
}

// start starts a worker process with a new worker id and returns the id.
func (c *cluster) start(name string) string {
	c.t.Helper()
	c.mu.Lock()
	c.started++
	id := fmt.Sprintf("%s-gen%d", name, c.started)
	c.mu.Unlock()
	log, err := os.Create(filepath.Join(c.dir, id+".log"))
	if err != nil {
		c.t.Fatal(err)
	}
	args := append([]string{"worker", "--db", c.db, "--schema", c.schema, "--worker-id", id, "--log-level", "warn"}, c.args...)
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		log.Close()
	}()
	c.mu.Lock()
	c.procs[id] = cmd
	c.mu.Unlock()
	c.t.Cleanup(func() { _ = cmd.Process.Kill() })
	return id
}

// kill sends SIGKILL to a worker and records when.
func (c *cluster) kill(id string) {
	c.mu.Lock()
	cmd := c.procs[id]
	c.kills[id] = time.Now()
	delete(c.procs, id)
	c.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
}

// stop sends SIGTERM to every worker and waits for them to exit.
func (c *cluster) stop() {
	c.mu.Lock()
	procs := c.procs
	c.procs = map[string]*exec.Cmd{}
	c.mu.Unlock()
	for _, cmd := range procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	for id, cmd := range procs {
		deadline := time.Now().Add(30 * time.Second)
		for cmd.ProcessState == nil && processAlive(cmd.Process.Pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if processAlive(cmd.Process.Pid) {
			c.t.Errorf("worker %s did not stop on SIGTERM", id)
		}
	}
}

func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie is not alive.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || !strings.Contains(string(b), ") Z ")
}

func (c *cluster) logs() string {
	var b strings.Builder
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(c.dir, e.Name()))
		fmt.Fprintf(&b, "== %s\n%s\n", e.Name(), data)
	}
	return b.String()
}

// createTasks creates n tasks of the template through the library.
func createTasks(t *testing.T, db, schema, templateYAML string, n int) []string {
	t.Helper()
	ctx := context.Background()
	client, err := tasker.Open(ctx, tasker.Config{Database: db, Schema: schema, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	tmpl, err := tasker.ParseTemplate("dist.yaml", []byte(templateYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.RegisterTemplate(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				res, err := client.CreateTask(ctx, tasker.TaskRequest{Namespace: tmpl.Namespace, Name: tmpl.Name})
				if err != nil {
					errs <- err
					return
				}
				ids[i] = res.Task.ID
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

// countStates returns how many tasks are in each state.
func countStates(t *testing.T, conn *pgx.Conn, schema string) map[string]int {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT state, COUNT(*) FROM "+schema+".tasks GROUP BY state")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		out[s] = n
	}
	return out
}

func waitAllComplete(t *testing.T, conn *pgx.Conn, schema string, n int, timeout time.Duration, during func()) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		counts := countStates(t, conn, schema)
		if counts["complete"] == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: task states %v, want %d complete", timeout, counts, n)
		}
		if during != nil {
			during()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stepHistory is the transition history of one step.
type stepHistory struct {
	taskID string
	events []*store.Event
}

// loadHistories reads every transition of the schema, grouped by step, and
// checks that every history is legal and gapless.
func loadHistories(t *testing.T, conn *pgx.Conn, schema string) map[string]*stepHistory {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT cursor, task_id, COALESCE(step_id, ''), COALESCE(step_name, ''), seq,
		COALESCE(from_state, ''), to_state, name, COALESCE(data::text, '{}'), occurred_at FROM `+schema+`.events
		WHERE to_state IS NOT NULL ORDER BY cursor`)
	if err != nil {
		t.Fatal(err)
	}
	var all []*store.Event
	for rows.Next() {
		var (
			e    store.Event
			name string
			data string
		)
		if err := rows.Scan(&e.Cursor, &e.TaskID, &e.StepID, &e.StepName, &e.Seq, &e.From, &e.To, &name, &data, &e.OccurredAt); err != nil {
			t.Fatal(err)
		}
		e.Name = event.Name(name)
		if err := jsonUnmarshal(data, &e.Metadata); err != nil {
			t.Fatal(err)
		}
		all = append(all, &e)
	}
	if err := storetest.CheckHistory(all); err != nil {
		t.Fatalf("illegal histories:\n%v", err)
	}
	steps := map[string]*stepHistory{}
	for _, e := range all {
		if e.StepID == "" {
			continue
		}
		h := steps[e.StepID]
		if h == nil {
			h = &stepHistory{taskID: e.TaskID}
			steps[e.StepID] = h
		}
		h.events = append(h.events, e)
	}
	return steps
}

// checkFencing checks that each step was held by one lease at a time and
// that every outcome recorded came from the lease holder of that attempt:
// no result of a fenced-out worker was accepted.
func checkFencing(t *testing.T, steps map[string]*stepHistory) {
	t.Helper()
	for id, h := range steps {
		var holder *store.Event // the claim of the current lease, nil when not held
		for _, e := range h.events {
			switch {
			case e.Name == event.StepExecutionRequested:
				if holder != nil {
					t.Fatalf("step %s claimed by %s while %s held it", id, e.Metadata.Worker, holder.Metadata.Worker)
				}
				holder = e
			case e.From == string(tasker.StepInProgress):
				if holder == nil {
					t.Fatalf("step %s left in_progress without a lease: %+v", id, e)
				}
				if e.Name != event.StepCancelled && (e.Metadata.Worker != holder.Metadata.Worker || e.Metadata.LeaseToken != holder.Metadata.LeaseToken) {
					t.Fatalf("step %s: %s recorded by %s/%d, but the lease belonged to %s/%d", id, e.Name,
						e.Metadata.Worker, e.Metadata.LeaseToken, holder.Metadata.Worker, holder.Metadata.LeaseToken)
				}
				if e.Name != event.StepRescued && e.Metadata.Attempt != holder.Metadata.Attempt {
					t.Fatalf("step %s: outcome of attempt %d recorded for the lease of attempt %d", id, e.Metadata.Attempt, holder.Metadata.Attempt)
				}
				holder = nil
			}
		}
	}
}

// checkLedger checks that each step's successful attempt applied its
// effect exactly once.
func checkLedger(t *testing.T, ledgerPath string, steps map[string]*stepHistory) {
	t.Helper()
	f, err := os.Open(ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		entries[sc.Text()]++
	}
	for id, h := range steps {
		var done *store.Event
		for _, e := range h.events {
			if e.Name == event.StepCompleted {
				if done != nil {
					t.Fatalf("step %s completed twice", id)
				}
				done = e
			}
		}
		if done == nil {
			t.Fatalf("step %s never completed", id)
		}
		key := fmt.Sprintf("%s %d", id, done.Metadata.Attempt)
		if entries[key] != 1 {
			for k, v := range entries {
				if strings.HasPrefix(k, id) {
					t.Logf("ledger %q x%d", k, v)
				}
			}
			for _, e := range h.events {
				t.Logf("event %s %s->%s %+v", e.Name, e.From, e.To, e.Metadata)
			}
			raw, _ := os.ReadFile(ledgerPath)
			t.Logf("ledger lines: %d; bytes %d", bytes.Count(raw, []byte("\n")), len(raw))
			t.Fatalf("step %s: the effect of its successful attempt %d was applied %d times, want once", id, done.Metadata.Attempt, entries[key])
		}
	}
}

func jsonUnmarshal(s string, v any) error {
	return json.Unmarshal([]byte(s), v)
}

// Three worker processes work 1,000 diamond tasks while one of them is
// killed with SIGKILL again and again and restarted.
func TestWorkersSurviveRepeatedKills(t *testing.T) {
	if testing.Short() {
		t.Skip("long test")
	}
	t.Parallel()
	db := pgtest.URL(t)
	schema := pgtest.Schema(t, db)
	ledger := filepath.Join(t.TempDir(), "ledger")
	const n = 1000
	const ttl, sweep = time.Second, 250 * time.Millisecond
	createTasks(t, db, schema, ledgerDiamond(ledger), n)
	cl := newCluster(t, db, schema, "--lease-ttl", ttl.String(), "--sweep-interval", sweep.String(),
		"--poll-interval", "200ms", "--concurrency", "8", "--stop-grace", "5s")
	victim := cl.start("victim")
	cl.start("steady-a")
	cl.start("steady-b")
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	kills := 0
	lastKill := time.Now()
	waitAllComplete(t, conn, schema, n, 3*time.Minute, func() {
		if time.Since(lastKill) > 700*time.Millisecond && kills < 12 {
			cl.kill(victim)
			kills++
			lastKill = time.Now()
			victim = cl.start("victim")
		}
	})
	cl.stop()
	if kills < 3 {
		t.Fatalf("only %d kills happened before the run ended; the test proves nothing", kills)
	}
	steps := loadHistories(t, conn, schema)
	if len(steps) != 4*n {
		t.Fatalf("%d step histories, want %d", len(steps), 4*n)
	}
	checkFencing(t, steps)
	checkLedger(t, ledger, steps)

	// Steps of the killed workers were rescued within the bound: lease TTL
	// plus a sweep, plus the leadership TTL (3 sweeps) when the killed
	// worker was the maintenance leader, plus scheduling slack.
	bound := ttl + 4*sweep + time.Second
	rescued := 0
	for _, h := range steps {
		for _, e := range h.events {
			if e.Name != event.StepRescued {
				continue
			}
			killedAt, ok := cl.kills[e.Metadata.Worker]
			if !ok {
				continue
			}
			rescued++
			if late := e.OccurredAt.Sub(killedAt); late > bound {
				t.Errorf("step %s of killed worker %s rescued %s after the kill, over the bound %s", e.StepName, e.Metadata.Worker, late, bound)
			}
		}
	}
	if rescued == 0 {
		t.Error("no step of a killed worker was rescued; the kills hit idle workers only")
	}
	t.Logf("%d kills, %d steps rescued", kills, rescued)
}

// PostgreSQL restarted (immediate stop, then start) during a run: every
// task still completes, nothing is lost, and the workers recover without
// being restarted.
func TestWorkersRideOutDatabaseRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("long test")
	}
	t.Parallel()
	pg := pgtest.StartCluster(t)
	db := pg.URL()
	const schema = "tasker"
	ledger := filepath.Join(t.TempDir(), "ledger")
	const n = 200
	slowDiamond := strings.ReplaceAll(ledgerDiamond(ledger), `echo '{}'`, `sleep 0.1; echo '{}'`)
	createTasks(t, db, schema, slowDiamond, n)
	cl := newCluster(t, db, schema, "--lease-ttl", "2s", "--sweep-interval", "250ms", "--poll-interval", "200ms",
		"--concurrency", "6", "--stop-grace", "5s")
	a, b := cl.start("a"), cl.start("b")

	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for countStates(t, conn, schema)["complete"] < n/4 {
		if time.Now().After(deadline) {
			t.Fatalf("no progress before the restart:\n%s", cl.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn.Close(context.Background())
	pg.StopImmediate()
	time.Sleep(3 * time.Second)
	for _, id := range []string{a, b} {
		if !processAlive(cl.procs[id].Process.Pid) {
			t.Fatalf("worker %s exited while the database was down:\n%s", id, cl.logs())
		}
	}
	pg.Start()
	restarted := time.Now()

	conn, err = pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	waitAllComplete(t, conn, schema, n, 2*time.Minute, nil)
	t.Logf("all %d tasks complete %s after the database came back", n, time.Since(restarted).Round(time.Millisecond))
	for _, id := range []string{a, b} {
		if !processAlive(cl.procs[id].Process.Pid) {
			t.Fatalf("worker %s exited:\n%s", id, cl.logs())
		}
	}
	cl.stop()
	steps := loadHistories(t, conn, schema)
	if len(steps) != 4*n {
		t.Fatalf("%d step histories, want %d", len(steps), 4*n)
	}
	checkFencing(t, steps)
	checkLedger(t, ledger, steps)
}
