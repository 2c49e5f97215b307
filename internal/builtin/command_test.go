//go:build unix

package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tasker-go/tasker/internal/handler"
)

// testInput returns a step input whose config runs argv with extra config
// keys merged in.
func testInput(t *testing.T, argv []string, extra map[string]any) *handler.Input {
	t.Helper()
	cfg := map[string]any{"command": argv}
	for k, v := range extra {
		cfg[k] = v
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("marshal config: %v", err)
	}
	return &handler.Input{
		TaskID:       "task-1",
		StepID:       "step-1",
		StepName:     "charge",
		Namespace:    "shop",
		TaskName:     "checkout",
		Version:      "1.0.0",
		Attempt:      2,
		RetryLimit:   5,
		Context:      json.RawMessage(`{"order": 7}`),
		Config:       raw,
		Dependencies: map[string]json.RawMessage{"reserve": json.RawMessage(`{"sku": "a1"}`), "audit": nil},
	}
}

// sh returns the argv of a POSIX shell script; args become $1, $2, ...
func sh(script string, args ...string) []string {
	return append([]string{"sh", "-c", script, "sh"}, args...)
}

func runCommand(t *testing.T, ctx context.Context, opts CommandOptions, in *handler.Input) (any, error) {
	t.Helper()
	return NewCommand(opts).Handle(ctx, in)
}

func TestCommandSuccess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		want   string // result JSON; "" for nil
	}{
		{"object", `echo '{"charged": 42}'`, `{"charged": 42}`},
		{"surrounding whitespace", `printf '\n  [1, 2]  \n\n'`, `[1, 2]`},
		{"string", `echo '"ok"'`, `"ok"`},
		{"empty stdout", `echo 'to stderr' >&2`, ""},
		{"blank stdout", `printf ' \n'`, ""},
	}
	for _, tc := range tests {
		got, err := runCommand(t, context.Background(), CommandOptions{}, testInput(t, sh(tc.script), nil))
		if err != nil {
			t.Errorf("%s: error %v, want nil", tc.name, err)
			continue
		}
		if gotJSON := resultJSON(t, got); gotJSON != tc.want {
			t.Errorf("%s: result %s, want %s", tc.name, gotJSON, tc.want)
		}
	}
}

func TestCommandStdinDocument(t *testing.T) {
	t.Parallel()
	in := testInput(t, []string{"cat"}, nil)
	got, err := runCommand(t, context.Background(), CommandOptions{}, in)
	if err != nil {
		t.Fatalf("cat: error %v, want nil", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(got.(json.RawMessage), &doc); err != nil {
		t.Fatalf("stdin document is not JSON: %v", err)
	}
	want := map[string]any{
		"task_id":     "task-1",
		"step_id":     "step-1",
		"step_name":   "charge",
		"attempt":     2.0,
		"retry_limit": 5.0,
		"namespace":   "shop",
		"task_name":   "checkout",
		"version":     "1.0.0",
		"context":     map[string]any{"order": 7.0},
		"config":      map[string]any{"command": []any{"cat"}},
		"dependencies": map[string]any{
			"reserve": map[string]any{"sku": "a1"},
			"audit":   nil,
		},
	}
	if diff := cmp.Diff(want, doc); diff != "" {
		t.Errorf("stdin document mismatch (-want +got):\n%s", diff)
	}

	// Absent context and dependencies are null and {}, never missing.
	bare := &handler.Input{Config: json.RawMessage(`{"command": ["cat"]}`)}
	got, err = runCommand(t, context.Background(), CommandOptions{}, bare)
	if err != nil {
		t.Fatalf("cat: error %v, want nil", err)
	}
	var bareDoc map[string]any
	if err := json.Unmarshal(got.(json.RawMessage), &bareDoc); err != nil {
		t.Fatalf("stdin document is not JSON: %v", err)
	}
	if v, ok := bareDoc["context"]; !ok || v != nil {
		t.Errorf("context = %v (present %t), want null", v, ok)
	}
	if diff := cmp.Diff(map[string]any{}, bareDoc["dependencies"]); diff != "" {
		t.Errorf("dependencies mismatch (-want +got):\n%s", diff)
	}
}

func TestCommandNotJSON(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 500)
	tests := []struct {
		name   string
		script string
		want   string
	}{
		{"text", `echo 'charged 42'`, `stdout is not JSON: "charged 42"`},
		{"two values", `echo '1 2'`, `stdout is not JSON: "1 2"`},
		{"long", `echo ` + long, `stdout is not JSON: "` + long[:200] + `"... (500 bytes)`},
	}
	for _, tc := range tests {
		_, err := runCommand(t, context.Background(), CommandOptions{}, testInput(t, sh(tc.script), nil))
		if err == nil {
			t.Errorf("%s: error nil, want a permanent error", tc.name)
			continue
		}
		if !handler.Classify(err).Permanent {
			t.Errorf("%s: error %q is retryable, want permanent", tc.name, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestCommandExitCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		script  string
		want    handler.Classification
		message []string // substrings of the error message
	}{
		{
			name:    "tempfail",
			script:  `echo 'rate limited' >&2; exit 75`,
			want:    handler.Classification{},
			message: []string{"asked for a retry", "exit status 75", "rate limited"},
		},
		{
			name:    "tempfail with duration string",
			script:  `echo '{"retry_after": "30s"}'; exit 75`,
			want:    handler.Classification{Delay: 30 * time.Second, Requested: true},
			message: []string{"exit status 75"},
		},
		{
			name:    "tempfail with seconds",
			script:  `echo '{"retry_after": 30}'; exit 75`,
			want:    handler.Classification{Delay: 30 * time.Second, Requested: true},
			message: []string{"exit status 75"},
		},
		{
			name:    "tempfail with fractional seconds",
			script:  `echo '{"retry_after": 1.5, "why": "busy"}'; exit 75`,
			want:    handler.Classification{Delay: 1500 * time.Millisecond, Requested: true},
			message: []string{"exit status 75"},
		},
		{
			name:    "tempfail with invalid retry_after",
			script:  `echo '{"retry_after": "soon"}'; exit 75`,
			want:    handler.Classification{},
			message: []string{"exit status 75"},
		},
		{
			name:    "tempfail with non-JSON stdout",
			script:  `echo 'retry in 30s'; exit 75`,
			want:    handler.Classification{},
			message: []string{"exit status 75"},
		},
		{
			name:    "config error",
			script:  `echo 'no API key' >&2; exit 78`,
			want:    handler.Classification{Permanent: true},
			message: []string{"failed permanently", "exit status 78", "no API key"},
		},
		{
			name:    "other failure",
			script:  `echo 'first line' >&2; echo >&2; echo '  connection refused  ' >&2; echo >&2; exit 1`,
			want:    handler.Classification{},
			message: []string{"failed", "exit status 1", ": first line\n  connection refused"},
		},
		{
			name:    "killed by a signal",
			script:  `kill -9 $$`,
			want:    handler.Classification{},
			message: []string{"signal: killed"},
		},
	}
	for _, tc := range tests {
		_, err := runCommand(t, context.Background(), CommandOptions{}, testInput(t, sh(tc.script), nil))
		if err == nil {
			t.Errorf("%s: error nil, want one", tc.name)
			continue
		}
		if got := handler.Classify(err); got != tc.want {
			t.Errorf("%s: Classify(%q) = %+v, want %+v", tc.name, err, got, tc.want)
		}
		for _, m := range tc.message {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("%s: error %q, want it to contain %q", tc.name, err, m)
			}
		}
	}
}

func TestCommandStderrTail(t *testing.T) {
	t.Parallel()
	// 100 lines of 100 bytes: the message keeps the last 2 KiB, whole lines.
	script := `i=0; while [ $i -lt 100 ]; do printf 'line %03d %090d\n' $i 0 >&2; i=$((i+1)); done; exit 3`
	_, err := runCommand(t, context.Background(), CommandOptions{}, testInput(t, sh(script), nil))
	if err == nil {
		t.Fatal("error nil, want one")
	}
	msg := err.Error()
	_, tail, ok := strings.Cut(msg, "exit status 3): ")
	if !ok {
		t.Fatalf("error %q, want the exit status followed by stderr", msg)
	}
	if len(tail) > stderrMessageBytes {
		t.Errorf("stderr tail is %d bytes, want at most %d", len(tail), stderrMessageBytes)
	}
	if !strings.HasPrefix(tail, "line ") {
		t.Errorf("stderr tail starts %q, want a whole line", tail[:20])
	}
	if !strings.HasSuffix(tail, "line 099 "+strings.Repeat("0", 90)) {
		t.Errorf("stderr tail ends %q, want the last line", tail[len(tail)-20:])
	}
	if strings.Contains(tail, "line 000 ") {
		t.Error("stderr tail holds the first line, want only the last 2 KiB")
	}
}

func TestCommandLogsStderr(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, err := runCommand(t, context.Background(), CommandOptions{Logger: logger},
		testInput(t, sh(`echo 'progress 50%' >&2`), nil))
	if err != nil {
		t.Fatalf("error %v, want nil", err)
	}
	var found bool
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["stderr"] == nil {
			continue
		}
		found = true
		want := map[string]any{"level": "DEBUG", "task_id": "task-1", "step_name": "charge", "stderr": "progress 50%\n"}
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("stderr log %s = %v, want %v", k, rec[k], v)
			}
		}
	}
	if !found {
		t.Errorf("logs have no stderr record:\n%s", logs.String())
	}
}

func TestCommandEnvAndDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := CommandOptions{Env: []string{"TASKER_TEST_A=from-options", "TASKER_TEST_B=from-options"}}
	in := testInput(t, sh(`printf '["%s", "%s", "%s"]' "$TASKER_TEST_A" "$TASKER_TEST_B" "$(pwd -P)"`), map[string]any{
		"env": map[string]string{"TASKER_TEST_B": "from-step"},
		"dir": dir,
	})
	got, err := runCommand(t, context.Background(), opts, in)
	if err != nil {
		t.Fatalf("error %v, want nil", err)
	}
	var vals []string
	if err := json.Unmarshal(got.(json.RawMessage), &vals); err != nil {
		t.Fatalf("result %s: %v", got, err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"from-options", "from-step", realDir}
	if diff := cmp.Diff(want, vals); diff != "" {
		t.Errorf("environment and directory mismatch (-want +got):\n%s", diff)
	}
}

func TestCommandStartFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		argv  []string
		extra map[string]any
		want  string
	}{
		{"no such program", []string{"tasker-no-such-program"}, nil, "executable file not found"},
		{"no such path", []string{"/nonexistent/tasker/prog"}, nil, "no such file or directory"},
		{"no such dir", []string{"true"}, map[string]any{"dir": "/nonexistent/tasker/dir"}, "no such file or directory"},
	}
	for _, tc := range tests {
		_, err := runCommand(t, context.Background(), CommandOptions{}, testInput(t, tc.argv, tc.extra))
		if err == nil {
			t.Errorf("%s: error nil, want a permanent error", tc.name)
			continue
		}
		if !handler.Classify(err).Permanent {
			t.Errorf("%s: error %q is retryable, want permanent", tc.name, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestCommandOutputCap(t *testing.T) {
	t.Parallel()
	opts := CommandOptions{MaxOutputBytes: 1000}
	tests := []struct {
		name string
		argv []string
	}{
		{"finite", sh(`head -c 5000 /dev/zero`)},
		// A program that never stops writing is stopped.
		{"endless", []string{"yes"}},
		{"endless ignoring SIGPIPE", sh(`trap '' PIPE; while :; do echo '"spam"' 2>/dev/null; done`)},
	}
	for _, tc := range tests {
		start := time.Now()
		_, err := runCommand(t, context.Background(), opts, testInput(t, tc.argv, nil))
		if err == nil {
			t.Errorf("%s: error nil, want a permanent error", tc.name)
			continue
		}
		if !handler.Classify(err).Permanent {
			t.Errorf("%s: error %q is retryable, want permanent", tc.name, err)
		}
		if want := "output exceeds 1000 bytes"; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q, want it to contain %q", tc.name, err, want)
		}
		if elapsed := time.Since(start); elapsed > 4*time.Second {
			t.Errorf("%s: took %v, want the command stopped promptly", tc.name, elapsed)
		}
	}

	// Exactly at the cap is fine.
	got, err := runCommand(t, context.Background(), CommandOptions{MaxOutputBytes: 5}, testInput(t, sh(`printf '"abc"'`), nil))
	if err != nil || resultJSON(t, got) != `"abc"` {
		t.Errorf("output at the cap = %v, %v; want \"abc\", nil", got, err)
	}
}

// TestCommandTimeoutKillsProcessGroup runs a shell that starts a grandchild
// and waits; at the deadline both must die.
func TestCommandTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		min    time.Duration // the grace period applies when SIGTERM is ignored
		max    time.Duration
	}{
		{"terminated", `sleep 100 & echo $! > "$1"; wait`, 0, killGrace},
		{"killed after the grace period", `trap '' TERM; sleep 100 & echo $! > "$1"; wait`, killGrace, killGrace + 2*time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pidFile := filepath.Join(t.TempDir(), "pid")
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			deadline, _ := ctx.Deadline()
			_, err := runCommand(t, ctx, CommandOptions{}, testInput(t, sh(tc.script, pidFile), nil))
			elapsed := time.Since(deadline)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error %v, want one wrapping context.DeadlineExceeded", err)
			}
			if !strings.Contains(err.Error(), "timed out") {
				t.Errorf("error %q, want it to say the step timed out", err)
			}
			if handler.Classify(err).Permanent {
				t.Errorf("error %q is permanent, want retryable", err)
			}
			if elapsed < tc.min || elapsed > tc.max {
				t.Errorf("returned %v after the deadline, want between %v and %v", elapsed, tc.min, tc.max)
			}
			waitGone(t, readPID(t, pidFile))
		})
	}
}

func TestCommandCancelled(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if b, _ := os.ReadFile(pidFile); len(b) > 0 {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	_, err := runCommand(t, ctx, CommandOptions{}, testInput(t, sh(`sleep 100 & echo $! > "$1"; wait`, pidFile), nil))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want one wrapping context.Canceled", err)
	}
	if !strings.Contains(err.Error(), "was cancelled") {
		t.Errorf("error %q, want it to say the step was cancelled", err)
	}
	if handler.Classify(err).Permanent {
		t.Errorf("error %q is permanent, want retryable", err)
	}
	waitGone(t, readPID(t, pidFile))
}

// TestCommandLeftoverHoldsStdout checks that a background process keeping
// stdout open delays the result by at most the grace period, and is killed.
func TestCommandLeftoverHoldsStdout(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	start := time.Now()
	got, err := runCommand(t, context.Background(), CommandOptions{},
		testInput(t, sh(`sleep 100 & echo $! > "$1"; echo '"done"'`, pidFile), nil))
	if err != nil {
		t.Fatalf("error %v, want nil", err)
	}
	if gotJSON := resultJSON(t, got); gotJSON != `"done"` {
		t.Errorf("result %s, want %q", gotJSON, `"done"`)
	}
	if elapsed := time.Since(start); elapsed > killGrace+2*time.Second {
		t.Errorf("returned after %v, want at most about %v", elapsed, killGrace)
	}
	waitGone(t, readPID(t, pidFile))
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read grandchild pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", b, err)
	}
	return pid
}

// waitGone polls until process pid no longer exists (or is a zombie, which
// only waits for its new parent to reap it).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs, want it killed", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) Z ...".
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
