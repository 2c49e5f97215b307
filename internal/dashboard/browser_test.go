package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/api"
	"github.com/tasker-go/tasker/internal/auth"
	"github.com/tasker-go/tasker/internal/dashboard"
)

const flowYAML = `namespace: web
name: flow
version: 1.0.0
description: A diamond whose middle step takes a while
steps:
  - {name: fetch, handler: noop}
  - {name: render, handler: sleep, depends_on: [fetch], config: {duration: 3s}}
  - {name: index, handler: noop, depends_on: [fetch]}
  - {name: publish, handler: noop, depends_on: [render, index]}
`

const fragileYAML = `namespace: web
name: fragile
version: 1.0.0
steps:
  - {name: charge, handler: fragile}
  - {name: ship, handler: noop, depends_on: [charge]}
`

// chromium finds the browser: $TASKER_CHROMIUM, else chromium on PATH.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TASKER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "browser tests skipped: no Chromium found (install Debian's chromium package, or set TASKER_CHROMIUM)"
	if os.Getenv("TASKER_TEST_BROWSER_REQUIRED") != "" {
		t.Fatal(msg + "; TASKER_TEST_BROWSER_REQUIRED is set")
	}
	t.Skip(msg)
	return ""
}

type site struct {
	url              string
	client           *tasker.Client
	operator, viewer string
}

func startSite(t *testing.T) *site {
	t.Helper()
	ctx := context.Background()
	// fragile fails permanently on a step's first attempt and succeeds later.
	fragile := tasker.HandlerFunc(func(_ context.Context, in *tasker.StepInput) (any, error) {
		if in.Attempt == 1 {
			return nil, tasker.Permanent(errors.New("card declined: the bank is down for maintenance"))
		}
		return map[string]string{"charge": "ch_42"}, nil
	})
	c, err := tasker.Open(ctx, tasker.Config{Database: filepath.Join(t.TempDir(), "t.db"), SQLiteSynchronous: "NORMAL",
		PollInterval: 50 * time.Millisecond, DisableCommandHandler: true, Handlers: map[string]tasker.Handler{"fragile": fragile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, y := range []string{flowYAML, fragileYAML} {
		tmpl, err := tasker.ParseTemplate("t.yaml", []byte(y), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RegisterTemplate(ctx, tmpl); err != nil {
			t.Fatal(err)
		}
	}
	op, err := c.CreateToken(ctx, tasker.TokenRequest{Name: "ops", Role: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := c.CreateToken(ctx, tasker.TokenRequest{Name: "watcher", Role: "viewer"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Client: c, Auth: auth.NewAuthenticator(c, nil, nil), Dashboard: dashboard.New(),
		EventPoll: 50 * time.Millisecond, RateLimit: 1000, RateBurst: 1000})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { srv.Close(); hs.Close() })
	if err := c.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return &site{url: hs.URL, client: c, operator: op.Secret, viewer: viewer.Secret}
}

func (s *site) create(t *testing.T, name string) string {
	t.Helper()
	res, err := s.client.CreateTask(context.Background(), tasker.TaskRequest{Namespace: "web", Name: name, Context: json.RawMessage(`{"order": 7}`)})
	if err != nil {
		t.Fatal(err)
	}
	return res.Task.ID
}

// shots writes screenshots to $TASKER_SCREENSHOTS (the README's come from
// there), else to a temporary directory.
func shots(t *testing.T) string {
	if d := os.Getenv("TASKER_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func screenshot(t *testing.T, dir, name string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var buf []byte
		if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name), buf, 0o644)
	})
}

// waitJS polls a JavaScript expression until it is true.
func waitJS(expr string) chromedp.Action {
	var ok bool
	return chromedp.Poll(expr, &ok, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))
}

func signIn(base, token string) chromedp.Tasks {
	return chromedp.Tasks{
		chromedp.Navigate(base + "/#/"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", token, chromedp.ByID),
		chromedp.Click(`#signin-form button[type=submit]`),
		chromedp.WaitVisible("#top", chromedp.ByID),
	}
}

func TestDashboardInBrowser(t *testing.T) {
	path := chromium(t)
	s := startSite(t)
	dir := shots(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-gpu", true))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()
	run := func(step string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	dagDone := `document.querySelectorAll('[data-testid=dag] .node[data-state=complete]').length === 4`

	// Sign in as an operator.
	var who string
	run("sign in", signIn(s.url, s.operator), chromedp.Text("#who", &who, chromedp.ByID))
	if who == "" || !strings.Contains(who, "operator") {
		t.Fatalf("signed in as %q", who)
	}

	// A task started through the API: its DAG reaches complete without a reload.
	id := s.create(t, "flow")
	run("open the running task",
		chromedp.Navigate(s.url+"/#/tasks/"+id),
		chromedp.WaitVisible(`[data-testid=dag] .node[data-step=publish]`),
		chromedp.Evaluate(`window.__sameDocument = true`, nil),
		waitJS(`document.querySelector('[data-testid=dag] .node[data-step=render]').dataset.state === 'in_progress'`),
		screenshot(t, dir, "task-running.png"),
		waitJS(dagDone),
		waitJS(`document.querySelector('h1 .badge').dataset.state === 'complete'`))
	var same bool
	run("no reload", chromedp.Evaluate(`window.__sameDocument === true`, &same))
	if !same {
		t.Fatal("the page reloaded while the task ran")
	}
	var audit int
	run("audit trail", chromedp.Evaluate(`document.querySelectorAll('[data-testid=audit] tbody tr').length`, &audit))
	if audit < 15 {
		t.Errorf("the audit trail shows %d transitions, want at least 15", audit)
	}

	// A failed task: reset its failed step, confirm, and see it complete.
	failed := s.create(t, "fragile")
	waitTask(t, s.client, failed, tasker.TaskError)
	run("open the failed task",
		chromedp.Navigate(s.url+"/#/tasks/"+failed),
		waitJS(`document.querySelector('[data-testid=dag] .node[data-step=charge]')?.dataset.state === 'error'`),
		chromedp.Click(`[data-testid=dag] .node[data-step=charge]`),
		chromedp.WaitVisible(`[data-action=reset-step]`),
		waitJS(`document.querySelector('[data-testid=step]').innerText.includes('card declined')`),
		screenshot(t, dir, "task-failed.png"),
		chromedp.Click(`[data-action=reset-step]`),
		chromedp.WaitVisible(`#confirm`, chromedp.ByID),
		chromedp.SendKeys(`#confirm-reason`, "the bank is back", chromedp.ByID),
		chromedp.Click(`#confirm-ok`, chromedp.ByID),
		waitJS(`document.querySelectorAll('[data-testid=dag] .node[data-state=complete]').length === 2`),
		waitJS(`document.querySelector('h1 .badge').dataset.state === 'complete'`),
		waitJS(`document.querySelector('[data-testid=audit]').innerText.includes('reason: the bank is back')`))
	h, err := s.client.Transitions(context.Background(), failed)
	if err != nil {
		t.Fatal(err)
	}
	recorded := false
	for _, tr := range h {
		if tr.Event == "step.retry_requested" && tr.Metadata.Reason == "the bank is back" && strings.Contains(tr.Metadata.Actor, "ops") {
			recorded = true
		}
	}
	if !recorded {
		t.Errorf("the reset is not in the audit trail with its reason and actor: %+v", h)
	}

	// The overview, and the tasks list.
	run("overview",
		chromedp.Navigate(s.url+"/#/"),
		waitJS(`document.querySelector('[data-testid=task-counts] [data-count=complete] .n')?.textContent === '2'`),
		screenshot(t, dir, "overview.png"),
		chromedp.Navigate(s.url+"/#/tasks?state=complete"),
		waitJS(`document.querySelectorAll('[data-testid=task-table] tbody tr').length === 2`))

	// Phone width: nothing overflows the page sideways.
	var overflow bool
	run("narrow screen",
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(s.url+"/#/tasks/"+failed),
		waitJS(`document.querySelectorAll('[data-testid=dag] .node').length === 2`),
		chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow),
		screenshot(t, dir, "task-phone.png"),
		chromedp.EmulateViewport(1280, 900))
	if overflow {
		t.Error("the task page overflows a 390 px wide screen")
	}

	// A viewer sees the same pages without any action.
	another := s.create(t, "fragile")
	waitTask(t, s.client, another, tasker.TaskError)
	var buttons int
	run("viewer",
		chromedp.Click("#signout", chromedp.ByID),
		signIn(s.url, s.viewer),
		chromedp.Navigate(s.url+"/#/tasks/"+another),
		waitJS(`document.querySelector('[data-testid=dag] .node[data-step=charge]')?.dataset.state === 'error'`),
		chromedp.Click(`[data-testid=dag] .node[data-step=charge]`),
		waitJS(`document.querySelector('[data-testid=step]')?.innerText.includes('card declined')`),
		chromedp.Evaluate(`document.querySelectorAll('[data-action]').length`, &buttons))
	// Templates and the event tail render for a viewer too.
	run("templates and events",
		chromedp.Navigate(s.url+"/#/templates"),
		chromedp.WaitVisible(`a[href="#/templates/web/flow/1.0.0"]`),
		chromedp.Click(`a[href="#/templates/web/flow/1.0.0"]`),
		waitJS(`document.querySelectorAll('.dag .node').length === 4 && !document.body.innerText.includes('null')`),
		chromedp.Navigate(s.url+"/#/events?event=task.*"),
		waitJS(`document.querySelectorAll('[data-testid=events] tbody tr').length > 0`))
	if buttons != 0 {
		t.Errorf("a viewer sees %d action buttons", buttons)
	}
	t.Logf("screenshots in %s", dir)
}

func waitTask(t *testing.T, c *tasker.Client, id string, want tasker.TaskState) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	task, err := c.WaitTask(ctx, id)
	if err != nil || task.State != want {
		t.Fatalf("task %s: %v, %v; want %s", id, task, err, want)
	}
}
