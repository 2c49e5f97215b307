package examples_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
)

// builtinHandlers are the handlers the templates may use: the CLI's
// built-ins, nothing else.
var builtinHandlers = []string{"command", "noop", "sleep"}

// Working directory. "go test" runs in this directory, "tasker run" in the
// user's (the docs say: the repository root), and os.Chdir is process-wide,
// so it cannot be used by parallel tests. The templates therefore keep
// every script inline ("sh -c ..."): no command refers to a file, and they
// run the same from any directory. TestTemplatesHaveNoScriptFiles guards
// that choice.

// expectation is what running one template must produce, besides
// validating.
type expectation struct {
	// state is the task's end state.
	state tasker.TaskState
	// check, when set, inspects the finished task.
	check func(t *testing.T, task *tasker.Task)
}

// expectations by file name. Every template must validate; a template
// without an entry must run to complete.
var expectations = map[string]expectation{
	"linear.yaml": {tasker.TaskComplete, func(t *testing.T, task *tasker.Task) {
		var r struct{ Summary string }
		decode(t, task, "summarise", &r)
		if want := "56 sales, 5313.23 in total, 94.88 on average; best region: north"; r.Summary != want {
			t.Errorf("summary = %q, want %q", r.Summary, want)
		}
	}},
	"diamond.yaml": {tasker.TaskComplete, func(t *testing.T, task *tasker.Task) {
		var r struct{ Report string }
		decode(t, task, "end", &r)
		if want := "9 words, 3.89 letters per word on average"; r.Report != want {
			t.Errorf("report = %q, want %q", r.Report, want)
		}
		// The branches ran side by side: each started before the other ended.
		a, b := step(t, task, "count_words"), step(t, task, "count_letters")
		if !a.StartedAt.Before(b.FinishedAt) || !b.StartedAt.Before(a.FinishedAt) {
			t.Errorf("the branches did not overlap: count_words %s–%s, count_letters %s–%s",
				a.StartedAt, a.FinishedAt, b.StartedAt, b.FinishedAt)
		}
	}},
	"fanout.yaml": {tasker.TaskComplete, func(t *testing.T, task *tasker.Task) {
		var r struct{ Shards, Primes int }
		decode(t, task, "aggregate", &r)
		if r.Shards != 20 || r.Primes != 2262 {
			t.Errorf("aggregate = %+v, want 20 shards and 2262 primes below 20,000", r)
		}
		// 20 shards sleep 1 s each: 20 s one after the other.
		const serial = 20 * time.Second
		if took := task.FinishedAt.Sub(task.StartedAt); took >= serial/2 {
			t.Errorf("the fan-out took %s, want well under the serial %s", took, serial)
		}
	}},
	"flaky.yaml": {tasker.TaskComplete, func(t *testing.T, task *tasker.Task) {
		if s := step(t, task, "fetch_rates"); s.Attempts != 3 {
			t.Errorf("fetch_rates succeeded after %d attempts, want 3", s.Attempts)
		}
		var r struct{ EUR, USD float64 }
		decode(t, task, "convert", &r)
		if r.EUR != 100 || r.USD != 108 {
			t.Errorf("convert = %+v, want 100 EUR = 108 USD", r)
		}
	}},
	"permanent_failure.yaml": {tasker.TaskError, func(t *testing.T, task *tasker.Task) {
		if s := step(t, task, "charge_card"); s.State != tasker.StepError || s.Attempts != 1 || s.RetryLimit < 2 {
			t.Errorf("charge_card is %s after %d of %d attempts, want error after 1 although retries are allowed",
				s.State, s.Attempts, s.RetryLimit)
		} else if !strings.Contains(s.LastError, "card declined") {
			t.Errorf("charge_card error %q lacks the script's message", s.LastError)
		}
		if s := step(t, task, "ship_order"); s.State != tasker.StepPending || s.Attempts != 0 {
			t.Errorf("ship_order is %s after %d attempts, want pending, never run", s.State, s.Attempts)
		}
	}},
	"release.yaml": {tasker.TaskComplete, func(t *testing.T, task *tasker.Task) {
		if s := step(t, task, "integration_tests"); s.Attempts != 2 {
			t.Errorf("integration_tests succeeded after %d attempts, want 2", s.Attempts)
		}
		var r struct{ Message, Notified string }
		decode(t, task, "announce", &r)
		if r.Message != "shop-api 1.4.0 is live on staging" || r.Notified != "releases@example.com" {
			t.Errorf("announce = %+v, want the defaults of the context schema", r)
		}
	}},
}

func templateFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("templates", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < len(expectations) {
		t.Fatalf("found %d templates %v, want at least %d", len(files), files, len(expectations))
	}
	return files
}

// TestTemplates validates every template and runs it to its end on a fresh
// database, in process, as "tasker run FILE" does without --context.
func TestTemplates(t *testing.T) {
	t.Parallel()
	for _, path := range templateFiles(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tmpl, err := tasker.ParseTemplateFile(path, &tasker.TemplateOpts{KnownHandlers: builtinHandlers})
			if err != nil {
				t.Fatal(err)
			}
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(src), "# "+name+": ") || !strings.Contains(string(src), "tasker run examples/templates/"+name) {
				t.Errorf("%s must start with a comment that says what it shows and how to run it", path)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// Concurrency 32 lets all 20 shards of fanout.yaml run at once.
			client, err := tasker.Open(ctx, tasker.Config{Database: filepath.Join(t.TempDir(), "tasker.db"), Concurrency: 32})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := client.Close(); err != nil {
					t.Error(err)
				}
			}()
			if _, err := client.LoadTemplateFile(ctx, path); err != nil {
				t.Fatal(err)
			}
			created, err := client.CreateTask(ctx, tasker.TaskRequest{Namespace: tmpl.Namespace, Name: tmpl.Name, Version: tmpl.Version})
			if err != nil {
				t.Fatal(err)
			}
			if err := client.Start(ctx, nil); err != nil {
				t.Fatal(err)
			}
			task, err := client.WaitTask(ctx, created.Task.ID)
			if err != nil {
				t.Fatalf("task %s did not finish: %v", created.Task.ID, err)
			}

			want, ok := expectations[name]
			if !ok {
				want.state = tasker.TaskComplete
			}
			if task.State != want.state {
				t.Fatalf("task ended %s, want %s; steps:\n%s", task.State, want.state, describeSteps(task))
			}
			if want.check != nil {
				want.check(t, task)
			}
		})
	}
}

// TestTemplatesHaveNoScriptFiles keeps the templates independent of the
// working directory (see the comment at the top of this file).
func TestTemplatesHaveNoScriptFiles(t *testing.T) {
	t.Parallel()
	for _, path := range templateFiles(t) {
		tmpl, err := tasker.ParseTemplateFile(path, &tasker.TemplateOpts{KnownHandlers: builtinHandlers})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range tmpl.Steps {
			if s.Handler != "command" {
				continue
			}
			var cfg struct {
				Command []string `json:"command"`
				Dir     string   `json:"dir"`
			}
			if err := json.Unmarshal(s.Config, &cfg); err != nil {
				t.Fatalf("%s: step %s: %v", path, s.Name, err)
			}
			if len(cfg.Command) < 3 || cfg.Command[0] != "sh" || cfg.Command[1] != "-c" || cfg.Dir != "" {
				t.Errorf("%s: step %s runs %q: want an inline script, [sh, -c, SCRIPT], so that the template works from any directory",
					path, s.Name, cfg.Command)
			}
		}
	}
}

func step(t *testing.T, task *tasker.Task, name string) *tasker.Step {
	t.Helper()
	for _, s := range task.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("task %s has no step %q", task.ID, name)
	return nil
}

// decode unmarshals the result of a step of task into v.
func decode(t *testing.T, task *tasker.Task, name string, v any) {
	t.Helper()
	s := step(t, task, name)
	if err := json.Unmarshal(s.Results, v); err != nil {
		t.Fatalf("step %s: result %s: %v", name, s.Results, err)
	}
}

func describeSteps(task *tasker.Task) string {
	var b strings.Builder
	for _, s := range task.Steps {
		b.WriteString("  " + s.Name + ": " + string(s.State))
		if s.LastError != "" {
			b.WriteString(": " + s.LastError)
		}
		b.WriteString("\n")
	}
	return b.String()
}
