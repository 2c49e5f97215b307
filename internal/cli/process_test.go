//go:build unix

package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the tasker command once for the process tests.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tasker-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tasker")
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		out, err := exec.Command(goBin, "build", "-o", binPath, "github.com/tasker-go/tasker/cmd/tasker").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// ledgerTemplate is a chain of steps that each append "start STEP ATTEMPT"
// and "done STEP ATTEMPT" to a ledger file around a sleep.
func ledgerTemplate(ledger string, steps int, sleep string) string {
	var b strings.Builder
	b.WriteString("namespace: crash\nname: chain\nversion: 1.0.0\nsteps:\n")
	script := `in=$(cat); n=$(printf %s "$in" | sed 's/.*"step_name":"\([^"]*\)".*/\1/'); a=$(printf %s "$in" | sed 's/.*"attempt":\([0-9]*\).*/\1/'); ` +
		`echo "start $n $a" >> ` + ledger + `; sleep ` + sleep + `; echo "done $n $a" >> ` + ledger + `; echo '{}'`
	for i := range steps {
		fmt.Fprintf(&b, "  - name: s%d\n    handler: command\n    config: {command: [sh, -c, %q]}\n", i, script)
		if i > 0 {
			fmt.Fprintf(&b, "    depends_on: [s%d]\n", i-1)
		}
	}
	return b.String()
}

func countLines(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

var taskIDRE = regexp.MustCompile(`task ([0-9a-f-]{36})`)

// startRun starts "tasker run" and waits until the ledger shows that
// doneBefore steps finished and the next one started.
func startRun(t *testing.T, bin, tmpl, db, ledger string, doneBefore int, extra ...string) (*exec.Cmd, *lockedBuffer, string) {
	t.Helper()
	stderr := &lockedBuffer{}
	cmd := exec.Command(bin, append([]string{"run", tmpl, "--db", db}, extra...)...)
	cmd.Stdout = &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		raw, _ := os.ReadFile(ledger)
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		if countLines(lines, "done ") >= doneBefore && countLines(lines, "start ") > doneBefore {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("run did not progress; ledger %q, stderr %s", raw, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	m := taskIDRE.FindStringSubmatch(stderr.String())
	if m == nil {
		cmd.Process.Kill()
		t.Fatalf("no task id on stderr: %q", stderr.String())
	}
	return cmd, stderr, m[1]
}

// lockedBuffer collects a process's output and can be read while the
// process still writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// stepStates reads the steps of a task from the database without running it.
func stepStates(t *testing.T, db, id string) *tasker.Task {
	t.Helper()
	c, err := tasker.Open(context.Background(), tasker.Config{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	task, err := c.Task(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func ledgerLines(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(raw)), "\n")
}

// kill -9 of "tasker run" in the middle of a task, then "tasker resume":
// the task completes and no step that completed runs again.
func TestCrashThenResume(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	dir := t.TempDir()
	db, ledger := filepath.Join(dir, "t.db"), filepath.Join(dir, "ledger")
	tmpl := writeFile(t, dir, "chain.yaml", ledgerTemplate(ledger, 6, "0.3"))
	cmd, _, id := startRun(t, bin, tmpl, db, ledger, 2)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	crashed := stepStates(t, db, id)
	if crashed.State != tasker.TaskInProgress {
		t.Fatalf("after kill -9 the task is %s, want in_progress", crashed.State)
	}
	completed := map[string]bool{}
	for _, s := range crashed.Steps {
		if s.State == tasker.StepComplete {
			completed[s.Name] = true
		}
	}
	if len(completed) < 2 {
		t.Fatalf("only %d steps complete before the kill", len(completed))
	}

	started := time.Now()
	out, err := exec.Command(bin, "resume", id, "--db", db).CombinedOutput()
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	// The dead run's lease (5m step timeout + grace) was rescued at once.
	if took := time.Since(started); took > 20*time.Second {
		t.Errorf("resume took %s; the dead worker's lease should be rescued at once", took)
	}
	final := stepStates(t, db, id)
	if final.State != tasker.TaskComplete {
		t.Fatalf("after resume the task is %s", final.State)
	}
	lines := ledgerLines(t, ledger)
	for i := range 6 {
		name := fmt.Sprintf("s%d", i)
		starts := countLines(lines, "start "+name+" ")
		if completed[name] && starts != 1 {
			t.Errorf("step %s completed before the crash but started %d times: %v", name, starts, lines)
		}
		if countLines(lines, "done "+name+" ") < 1 {
			t.Errorf("step %s never finished: %v", name, lines)
		}
	}
	history, err := exec.Command(bin, "task", "show", id, "--db", db).CombinedOutput()
	if err != nil || !strings.Contains(string(history), "step.rescued") {
		t.Errorf("the audit trail does not show the rescue: %v\n%s", err, history)
	}
}

// Ctrl-C stops cleanly: exit 130, the running step is released without
// being charged an attempt, and resume finishes the task.
func TestInterruptThenResume(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	dir := t.TempDir()
	db, ledger := filepath.Join(dir, "t.db"), filepath.Join(dir, "ledger")
	tmpl := writeFile(t, dir, "chain.yaml", ledgerTemplate(ledger, 3, "2"))
	cmd, stderr, id := startRun(t, bin, tmpl, db, ledger, 1, "--stop-grace", "100ms")
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errorsAs(err, &exit) || exit.ExitCode() != ExitInterrupted {
		t.Fatalf("interrupted run: %v, want exit %d; stderr %s", err, ExitInterrupted, stderr.String())
	}
	if !strings.Contains(stderr.String(), "tasker resume "+id) {
		t.Errorf("stderr does not say how to resume: %s", stderr.String())
	}
	paused := stepStates(t, db, id)
	s1 := paused.Steps[1]
	if paused.State != tasker.TaskInProgress || s1.State != tasker.StepPending || s1.Attempts != 1 || s1.RetryLimit != 4 {
		t.Fatalf("after Ctrl-C: task %s, s1 %s attempts %d/%d; want in_progress, pending, 1/4", paused.State, s1.State, s1.Attempts, s1.RetryLimit)
	}
	out, err := exec.Command(bin, "resume", id, "--db", db, "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if final := stepStates(t, db, id); final.State != tasker.TaskComplete {
		t.Fatalf("after resume: %s", final.State)
	}
	if starts := countLines(ledgerLines(t, ledger), "start s0 "); starts != 1 {
		t.Errorf("s0 completed before Ctrl-C but started %d times", starts)
	}
}
