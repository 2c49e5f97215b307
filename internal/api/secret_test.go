package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/api"
)

const canaryYAML = `namespace: vault
name: canary
version: 1.0.0
defaults:
  retry: {limit: 3, backoff: {initial: 10ms, max: 50ms}}
steps:
  - name: flaky
    handler: http
    config:
      url: "%[1]s/flaky?key=${env:CANARY_TOKEN}"
      headers: {Authorization: "Bearer ${env:CANARY_TOKEN}", X-Signing: "${file:%[2]s}"}
  - name: rejected
    handler: http
    config:
      method: POST
      url: "%[1]s/rejected"
      headers: {Authorization: "Bearer ${env:CANARY_TOKEN}"}
      body: {token: "${file:%[2]s}"}
`

// A canary secret used by steps that succeed, fail and retry shows up
// nowhere: not in the database file, the logs, the events or the API.
func TestCanarySecretStaysSecret(t *testing.T) {
	const envCanary = "tok-CANARY-9f8e7d6c"
	const fileCanary = "sig/CANARY+5a4b3c2d"
	t.Setenv("CANARY_TOKEN", envCanary)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secrets", "signing")
	os.MkdirAll(filepath.Dir(secretFile), 0o700)
	if err := os.WriteFile(secretFile, []byte(fileCanary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The service echoes what it receives, secrets included, in its answers.
	var flakyCalls atomic.Int64
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		echo := fmt.Sprintf(`{"auth": %q, "signing": %q, "query": %q, "body": %q}`,
			r.Header.Get("Authorization"), r.Header.Get("X-Signing"), r.URL.RawQuery, body)
		if r.Header.Get("Authorization") != "Bearer "+envCanary {
			w.WriteHeader(500)
			return
		}
		switch r.URL.Path {
		case "/flaky":
			if flakyCalls.Add(1) == 1 {
				w.WriteHeader(503)
				io.WriteString(w, echo)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, echo)
		case "/rejected":
			w.WriteHeader(401)
			io.WriteString(w, echo)
		}
	}))
	defer svc.Close()

	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&logs, &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	db := filepath.Join(dir, "t.db")
	c, err := tasker.Open(ctx, tasker.Config{Database: db, PollInterval: 20 * time.Millisecond, DisableCommandHandler: true,
		SecretEnv: []string{"CANARY_*"}, SecretDirs: []string{filepath.Dir(secretFile)}, HTTPAllow: []string{"127.0.0.1"}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, err := api.New(api.Config{Client: c, DisableAuth: true, EventPoll: 20 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	defer srv.Close()
	f := &fixture{t: t, url: hs.URL}

	r := f.do("PUT", "/v1/templates", "", map[string]any{"source": fmt.Sprintf(canaryYAML, svc.URL, secretFile)})
	if r.status != 200 && r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	if err := c.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	r = f.do("POST", "/v1/tasks", "", map[string]any{"namespace": "vault", "name": "canary"})
	var created struct{ Task tasker.Task }
	r.json(t, &created)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	task, err := c.WaitTask(wctx, created.Task.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The steps did use the secrets: one retried and succeeded, one failed.
	if task.State != tasker.TaskError || flakyCalls.Load() != 2 {
		t.Fatalf("task %s after %d flaky calls, want error after 2", task.State, flakyCalls.Load())
	}
	for _, st := range task.Steps {
		want := map[string]tasker.StepState{"flaky": tasker.StepComplete, "rejected": tasker.StepError}[st.Name]
		if st.State != want {
			t.Errorf("step %s is %s, want %s", st.Name, st.State, want)
		}
	}
	if !strings.Contains(string(task.Steps[0].Results)+task.Steps[1].LastError, "[REDACTED]") {
		t.Errorf("the echoed secrets were not masked: %s %s", task.Steps[0].Results, task.Steps[1].LastError)
	}

	// Everything the API shows.
	var seen bytes.Buffer
	for _, path := range []string{
		"/v1/tasks/" + task.ID, "/v1/tasks/" + task.ID + "/transitions", "/v1/tasks?limit=10",
		"/v1/steps/" + task.Steps[0].ID, "/v1/steps/" + task.Steps[1].ID, "/v1/steps/" + task.Steps[1].ID + "/transitions",
		"/v1/events?limit=500", "/v1/templates/vault/canary", "/v1/analytics", "/v1/tasks/" + task.ID + "/diagram",
	} {
		r := f.do("GET", path, "", nil)
		if r.status != 200 {
			t.Errorf("GET %s: %d", path, r.status)
		}
		seen.Write(r.body)
	}
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	resp := f.stream(sctx, "?task_id="+task.ID)
	body, _ := io.ReadAll(resp.Body) // until the timeout
	resp.Body.Close()
	scancel()
	if !bytes.Contains(body, []byte("step.failed")) {
		t.Errorf("the event stream did not deliver the task's events: %.300s", body)
	}
	seen.Write(body)
	// The events the client publishes.
	evs, err := c.Events(ctx, &tasker.EventListOpts{TaskID: task.ID, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		fmt.Fprintf(&seen, "%+v %s\n", ev, ev.Data)
	}
	c.Stop(ctx)
	c.Close()
	files := map[string][]byte{"api": seen.Bytes(), "logs": logs.Bytes()}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if b, err := os.ReadFile(db + suffix); err == nil {
			files["database"+suffix] = b
		}
	}
	if !bytes.Contains(logs.Bytes(), []byte("rejected")) {
		t.Error("the logs do not mention the failed step; the test would not notice a leak there")
	}
	for where, b := range files {
		for _, canary := range []string{envCanary, fileCanary, "CANARY-9f8e", "CANARY%2B5a4b", "CANARY+5a4b"} {
			if bytes.Contains(b, []byte(canary)) {
				i := bytes.Index(b, []byte(canary))
				t.Errorf("%s holds the secret %q: …%s…", where, canary, b[max(0, i-80):min(len(b), i+80)])
			}
		}
	}
	if !bytes.Contains(files["database"], []byte("${env:CANARY_TOKEN}")) && !bytes.Contains(files["database-wal"], []byte("${env:CANARY_TOKEN}")) {
		t.Error("the stored template should hold the reference")
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
