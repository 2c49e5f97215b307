//go:build unix

package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	procs   map[string]*proc
	kills   map[string]time.Time // worker id -> when it was killed
	started int
}

// proc is a worker process; done is closed when it has exited, with err.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func newCluster(t *testing.T, db, schema string, args ...string) *cluster {
	return &cluster{t: t, bin: binary(t), db: db, schema: schema, dir: t.TempDir(), args: args,
		procs: map[string]*proc{}, kills: map[string]time.Time{}}
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
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs[id] = p
	c.mu.Unlock()
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return id
}

// kill sends SIGKILL to a worker and records when.
func (c *cluster) kill(id string) {
	c.mu.Lock()
	p := c.procs[id]
	c.kills[id] = time.Now()
	delete(c.procs, id)
	c.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM to every worker, waits for them to exit and returns
// their exit errors by worker id.
func (c *cluster) stop() map[string]error {
	c.mu.Lock()
	procs := c.procs
	c.procs = map[string]*proc{}
	c.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	out := map[string]error{}
	for id, p := range procs {
		select {
		case <-p.done:
			out[id] = p.err
		case <-time.After(30 * time.Second):
			c.t.Errorf("worker %s did not stop on SIGTERM", id)
		}
	}
	return out
}

func (c *cluster) alive(id string) bool {
	c.mu.Lock()
	p := c.procs[id]
	c.mu.Unlock()
	return p != nil && p.alive()
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

// progress describes where a run stands, for a test that gives up on it:
// the tasks and steps by state (steps with their attempts) and the log's
// entries by name.
func progress(t *testing.T, conn *pgx.Conn, schema string) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		"SELECT 'tasks ' || state, COUNT(*) FROM " + schema + ".tasks GROUP BY state",
		"SELECT 'steps ' || state || ' after ' || attempts || ' attempts', COUNT(*) FROM " + schema + ".steps GROUP BY state, attempts",
		"SELECT 'log ' || name, COUNT(*) FROM " + schema + ".events GROUP BY name",
	} {
		rows, err := conn.Query(context.Background(), q+" ORDER BY 1")
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", q, err)
			continue
		}
		for rows.Next() {
			var what string
			var n int
			if err := rows.Scan(&what, &n); err != nil {
				fmt.Fprintf(&b, "%v\n", err)
				break
			}
			fmt.Fprintf(&b, "%s: %d\n", what, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			fmt.Fprintf(&b, "%s: %v\n", q, err)
		}
	}
	return b.String()
}

func stepsComplete(t *testing.T, conn *pgx.Conn, schema string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT COUNT(*) FROM "+schema+".steps WHERE state = 'complete'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
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
			t.Fatalf("after %s: task states %v, want %d complete\n%s", timeout, counts, n, progress(t, conn, schema))
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
		if time.Since(lastKill) <= 700*time.Millisecond || kills >= 12 {
			return
		}
		// The victim is killed only while it holds a lease, so that every
		// kill leaves steps to rescue: on a loaded machine a restarted
		// worker can take longer than the interval to claim anything.
		var held int
		if err := conn.QueryRow(context.Background(), "SELECT COUNT(*) FROM "+schema+
			".steps WHERE state = 'in_progress' AND lease_owner = $1", victim).Scan(&held); err != nil {
			t.Fatal(err)
		}
		if held == 0 {
			return
		}
		cl.kill(victim)
		kills++
		lastKill = time.Now()
		victim = cl.start("victim")
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
	// The restart comes when a quarter of the steps are done. (Not a
	// quarter of the tasks: the steps are claimed in the order they became
	// ready, the first steps of all tasks first, so tasks only complete
	// when most of the steps are done, and on a loaded machine that took
	// longer than the deadline.)
	deadline := time.Now().Add(time.Minute)
	for steps := 4 * n; stepsComplete(t, conn, schema) < steps/4; {
		if time.Now().After(deadline) {
			t.Fatalf("no progress before the restart:\n%s\n%s", progress(t, conn, schema), cl.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn.Close(context.Background())
	pg.StopImmediate()
	time.Sleep(3 * time.Second)
	for _, id := range []string{a, b} {
		if !cl.alive(id) {
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
		if !cl.alive(id) {
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

// SIGTERM stops a worker gracefully: it stops claiming, lets a running
// step finish within the stop grace, and releases one that would not.
func TestWorkerGracefulStop(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	schema := pgtest.Schema(t, db)
	// Each step's command marks that its handler has started.
	marks := t.TempDir()
	quickStarted, longStarted := filepath.Join(marks, "quick"), filepath.Join(marks, "long")
	slow := "namespace: dist\nname: slow\nversion: 1.0.0\nsteps:\n" +
		fmt.Sprintf("  - {name: quick, handler: command, config: {command: [sh, -c, %q]}}\n", "touch "+quickStarted+"; sleep 0.3; echo '{}'") +
		fmt.Sprintf("  - {name: long, handler: command, timeout: 1m, retry: {limit: 1}, config: {command: [sh, -c, %q]}}\n", "touch "+longStarted+"; exec sleep 30")
	ids := createTasks(t, db, schema, slow, 1)
	cl := newCluster(t, db, schema, "--stop-grace", "1s", "--concurrency", "4")
	id := cl.start("w")
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	started := func(path string) bool {
		_, err := os.Stat(path)
		return err == nil
	}
	// A step is in progress in the store from its claim's commit; its
	// handler starts a moment later, and a stop in between releases it
	// unstarted (as it should). Wait until both handlers have started,
	// so that quick (300 ms) is running when SIGTERM arrives.
	deadline := time.Now().Add(20 * time.Second)
	for !started(quickStarted) || !started(longStarted) {
		if time.Now().After(deadline) {
			t.Fatalf("steps never ran:\n%s", cl.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopped := time.Now()
	exits := cl.stop()
	if took := time.Since(stopped); took > 10*time.Second {
		t.Errorf("SIGTERM took %s to stop the worker", took)
	}
	if err, ok := exits[id]; !ok || err != nil {
		t.Errorf("worker exit after SIGTERM: %v, want status 0:\n%s", err, cl.logs())
	}
	rows, err := conn.Query(context.Background(), "SELECT name, state, attempts, retry_limit FROM "+schema+".steps WHERE task_id = $1 ORDER BY idx", ids[0])
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var name, state string
		var attempts, limit int
		if err := rows.Scan(&name, &state, &attempts, &limit); err != nil {
			t.Fatal(err)
		}
		got[name] = fmt.Sprintf("%s %d/%d", state, attempts, limit)
	}
	if got["quick"] != "complete 1/3" || got["long"] != "pending 1/2" {
		t.Errorf("after SIGTERM: %v; want quick complete (it finished within the grace) and long released with its attempt refunded", got)
	}
}

// migrate creates the schema; task create stores a task without running it.
func TestMigrateAndTaskCreate(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	schema := pgtest.Schema(t, db)
	code, out, stderr := run(t, "migrate", "--db", db, "--schema", schema)
	if code != ExitOK || !regexp.MustCompile(`schema version [1-9]`).MatchString(out) {
		t.Fatalf("migrate: exit %d, %q %q", code, out, stderr)
	}
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "ok.yaml", okTemplate)
	code, out, stderr = run(t, "task", "create", tmpl, "--db", db, "--schema", schema, "--context", `{"n": 3}`, "--idempotency-key", "k1")
	id := strings.TrimSpace(out)
	if code != ExitOK || len(id) != 36 {
		t.Fatalf("task create: exit %d, %q %q", code, out, stderr)
	}
	code, out, stderr = run(t, "task", "create", tmpl, "--db", db, "--schema", schema, "--context", `{"n":3}`, "--idempotency-key", "k1")
	if code != ExitOK || strings.TrimSpace(out) != id || !strings.Contains(stderr, "already created") {
		t.Fatalf("duplicate task create: exit %d, %q %q", code, out, stderr)
	}
	if code, _, stderr := run(t, "task", "create", tmpl, "--db", db, "--schema", schema, "--context", `{"n":4}`, "--idempotency-key", "k1"); code != ExitUsage || !strings.Contains(stderr, "different request") {
		t.Fatalf("same key, different context: exit %d %q", code, stderr)
	}
	code, out, _ = run(t, "task", "show", id, "--db", db, "--schema", schema)
	if code != ExitOK || !strings.Contains(out, "in_progress") || !strings.Contains(out, "task.start_requested") {
		t.Fatalf("task show: exit %d\n%s", code, out)
	}
	code, out, stderr = run(t, "resume", id, "--db", db, "--schema", schema, "--json")
	if code != ExitOK || !strings.Contains(out, `"state": "complete"`) {
		t.Fatalf("resume on PostgreSQL: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, _, stderr := run(t, "migrate", "--db", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"); code != ExitUsage || stderr == "" {
		t.Errorf("migrate against an unreachable server: exit %d, %q", code, stderr)
	}
}

// store copy moves an SQLite file into PostgreSQL from the command line.
func TestStoreCopyCommand(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	schema := pgtest.Schema(t, db)
	dir := t.TempDir()
	file := filepath.Join(dir, "t.db")
	tmpl := writeFile(t, dir, "ok.yaml", okTemplate)
	if code, _, stderr := run(t, "run", tmpl, "--db", file, "--context", `{"n": 1}`); code != ExitOK {
		t.Fatalf("run: %s", stderr)
	}
	code, _, _ := run(t, "task", "create", tmpl, "--db", file)
	if code != ExitOK {
		t.Fatal("task create failed")
	}
	code, out, stderr := run(t, "store", "copy", "--from", file, "--to", db, "--schema", schema)
	if code != ExitOK || !strings.Contains(out, "2 tasks (1 unfinished)") || !strings.Contains(out, "tasker worker") {
		t.Fatalf("store copy: exit %d\n%s\n%s", code, out, stderr)
	}
	code, _, stderr = run(t, "store", "copy", "--from", file, "--to", db, "--schema", schema)
	if code != ExitUsage || !strings.Contains(stderr, "already holds tasks") {
		t.Errorf("second copy: exit %d, %q", code, stderr)
	}
	if code, _, stderr := run(t, "store", "copy", "--from", db, "--to", file); code != ExitUsage || !strings.Contains(stderr, "--from must be") {
		t.Errorf("reversed copy: exit %d, %q", code, stderr)
	}
	code, out, _ = run(t, "task", "list", "--db", db, "--schema", schema)
	if code != ExitOK || strings.Count(out, "cli/ok@1.0.0") != 2 {
		t.Errorf("tasks on PostgreSQL after the copy:\n%s", out)
	}
}

// A worker keeps retrying while the database is unreachable, but a
// configuration the server refuses (a database that does not exist) is an
// error at once.
func TestWorkerStartupErrors(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	bin := binary(t)
	bad := strings.Replace(db, "/test?", "/no_such_database_here?", 1)
	out, err := exec.Command(bin, "worker", "--db", bad).CombinedOutput()
	var exit *exec.ExitError
	if !errorsAs(err, &exit) || exit.ExitCode() != ExitUsage || !strings.Contains(string(out), "no_such_database_here") {
		t.Fatalf("worker on a missing database: %v\n%s", err, out)
	}
	down := "postgres://root@127.0.0.1:" + strings.Split(freeAddr(t), ":")[1] + "/test?sslmode=disable"
	var logs lockedBuffer
	cmd := exec.Command(bin, "worker", "--db", down)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// The worker keeps retrying: wait for it to say so (however long a
	// loaded machine takes to start it), and for a while longer.
	deadline := time.After(20 * time.Second)
	for !strings.Contains(logs.String(), "cannot open the database; retrying") {
		select {
		case err := <-exited:
			t.Fatalf("worker gave up on an unreachable database: %v\n%s", err, logs.String())
		case <-deadline:
			t.Fatalf("no retry in the logs after 20s:\n%s", logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	select {
	case err := <-exited:
		t.Fatalf("worker gave up on an unreachable database: %v\n%s", err, logs.String())
	case <-time.After(1500 * time.Millisecond):
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not stop on SIGTERM while waiting for the database")
	}
}

// A worker with --metrics-addr exports the metrics of the steps it runs.
func TestWorkerMetrics(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	schema := pgtest.Schema(t, db)
	ids := createTasks(t, db, schema, "namespace: dist\nname: quick\nversion: 1.0.0\nsteps:\n  - {name: a, handler: noop}\n", 3)
	addr := freeAddr(t)
	cl := newCluster(t, db, schema, "--metrics-addr", addr, "--poll-interval", "100ms")
	cl.start("m")
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	waitAllComplete(t, conn, schema, len(ids), 30*time.Second, nil)
	var body []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(body, []byte(`tasker_tasks_completed_total{namespace="dist",template="quick"} 3`)) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker metrics:\n%s\n%s", body, cl.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/health/ready")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("worker health: %v %v", resp, err)
	}
	resp.Body.Close()
	cl.stop()
}
