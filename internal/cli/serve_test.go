//go:build unix

package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServe starts "tasker serve" on a free port and waits until it is ready.
func startServe(t *testing.T, db string, args ...string) (string, *exec.Cmd, *bytes.Buffer, chan error) {
	t.Helper()
	addr := freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(binary(t), append([]string{"serve", "--db", db, "--addr", addr}, args...)...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base, cmd, &logs, done
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not become ready:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpJSON(t *testing.T, method, url, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, data)
		}
	}
	return resp.StatusCode
}

// tasker serve runs tasks submitted over HTTP, answers the CLI's --server
// mode, exposes metrics, and stops cleanly on SIGTERM even with an event
// stream open.
func TestServeEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "t.db")
	code, out, stderr := run(t, "token", "create", "--role", "admin", "--name", "e2e", "--db", db, "--json")
	if code != ExitOK {
		t.Fatalf("token create: %s", stderr)
	}
	var tok struct{ Secret string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Secret == "" {
		t.Fatalf("token create output: %q", out)
	}
	code, _, _ = run(t, "token", "create", "--role", "viewer", "--db", db)
	if code != ExitOK {
		t.Fatal("second token")
	}
	tmpl := writeFile(t, dir, "ok.yaml", okTemplate)
	base, cmd, logs, done := startServe(t, db, "--template", tmpl, "--enable-command", "--poll-interval", "100ms")

	if s := httpJSON(t, "GET", base+"/v1/tasks", "", nil, nil); s != 401 {
		t.Errorf("no token: %d, want 401", s)
	}
	var created struct {
		Task    struct{ ID string }
		Created bool
	}
	if s := httpJSON(t, "POST", base+"/v1/tasks", tok.Secret, map[string]any{"namespace": "cli", "name": "ok", "context": map[string]int{"n": 5}}, &created); s != 201 {
		t.Fatalf("create: %d", s)
	}
	id := created.Task.ID
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got struct{ Task struct{ State string } }
		httpJSON(t, "GET", base+"/v1/tasks/"+id, tok.Secret, nil, &got)
		if got.Task.State == "complete" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s:\n%s", id, got.Task.State, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The command line as an API client.
	code, out, stderr = run(t, "task", "list", "--server", base, "--token", tok.Secret)
	if code != ExitOK || !strings.Contains(out, id) || !strings.Contains(out, "complete") {
		t.Errorf("task list --server: %d %q %q", code, out, stderr)
	}
	code, out, _ = run(t, "task", "show", id, "--server", base, "--token", tok.Secret)
	if code != ExitOK || !strings.Contains(out, "task.completed") || !strings.Contains(out, "✓ second") {
		t.Errorf("task show --server: %d\n%s", code, out)
	}
	code, out, _ = run(t, "template", "list", "--server", base, "--token", tok.Secret)
	if code != ExitOK || !strings.Contains(out, "cli/ok@1.0.0") {
		t.Errorf("template list --server: %d %q", code, out)
	}
	code, _, stderr = run(t, "task", "cancel", id, "--server", base, "--token", tok.Secret)
	if code != ExitUsage || !strings.Contains(stderr, "invalid_transition") {
		t.Errorf("cancel of a complete task over the API: %d %q", code, stderr)
	}
	code, _, stderr = run(t, "task", "resolve", id, "--reason", "x", "--server", base, "--token", tok.Secret)
	if code != ExitUsage || !strings.Contains(stderr, "invalid_transition") {
		t.Errorf("resolve of a complete task over the API: %d %q", code, stderr)
	}
	var shown struct{ Task tasker.Task }
	_, out, _ = run(t, "task", "show", id, "--json", "--server", base, "--token", tok.Secret)
	if err := json.Unmarshal([]byte(out), &shown); err != nil || len(shown.Task.Steps) != 2 {
		t.Fatalf("task show --json --server: %v %q", err, out)
	}
	code, out, _ = run(t, "step", "show", shown.Task.Steps[0].ID, "--server", base, "--token", tok.Secret)
	if code != ExitOK || !strings.Contains(out, "step first  complete") || !strings.Contains(out, "step.completed") {
		t.Errorf("step show --server: %d\n%s", code, out)
	}
	code, _, stderr = run(t, "step", "reset", shown.Task.Steps[0].ID, "--server", base, "--token", tok.Secret)
	if code != ExitUsage || !strings.Contains(stderr, "invalid_transition") {
		t.Errorf("reset of a complete step over the API: %d %q", code, stderr)
	}
	code, _, stderr = run(t, "task", "list", "--server", base, "--token", "tsk_0123456789ab_wrongwrongwrongwrongwrong")
	if code != ExitUsage || !strings.Contains(stderr, "unauthenticated") {
		t.Errorf("bad token: %d %q", code, stderr)
	}

	// The dashboard is served at / without a token (its data needs one).
	page, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if page.StatusCode != 200 || !bytes.Contains(html, []byte(`src="/assets/app.js"`)) || page.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("dashboard page: %d %s", page.StatusCode, html)
	}

	// Metrics count the task by template.
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`tasker_tasks_completed_total{namespace="cli",template="ok"} 1`, "tasker_step_duration_seconds_bucket", "tasker_ready_steps", "go_goroutines"} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// Open an event stream, then SIGTERM: the server stops promptly.
	sreq, _ := http.NewRequestWithContext(context.Background(), "GET", base+"/v1/events/stream", nil)
	sreq.Header.Set("Authorization", "Bearer "+tok.Secret)
	sresp, err := http.DefaultClient.Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := bufio.NewReader(sresp.Body).ReadString('\n')
	if !strings.HasPrefix(first, "retry:") {
		t.Errorf("stream starts with %q", first)
	}
	stopped := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve exited with %v after SIGTERM:\n%s", err, logs.String())
		}
		done <- err
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not stop on SIGTERM:\n%s", logs.String())
	}
	sresp.Body.Close()
	if took := time.Since(stopped); took > 10*time.Second {
		t.Errorf("shutdown took %s", took)
	}
	for _, want := range []string{`"msg":"api: request"`, `"correlation_id"`, `"msg":"serve: stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("JSON logs lack %s", want)
		}
	}
}
