package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasker-go/tasker"
)

// head is the common part of the test templates: fast backoff and a short
// timeout so that "times out once" costs little.
const head = `
defaults:
  timeout: 300ms
  retry: {limit: 3, backoff: {initial: 10ms, multiplier: 2, max: 100ms, jitter: 0.1}}
`

func shapeTemplate(name string, steps string) string {
	return "namespace: shapes\nname: " + name + "\nversion: 1.0.0\n" + head + "steps:\n" + steps
}

// The five DAG shapes of the original system, with the failures its tests
// injected: steps that fail once or time out once still complete.
var shapes = map[string]string{
	"linear": `
  - {name: initialize_data, handler: work}
  - {name: validate_input, handler: work, depends_on: [initialize_data]}
  - {name: process_data, handler: work, depends_on: [validate_input], config: {fail_times: 1}}
  - {name: transform_results, handler: work, depends_on: [process_data]}
  - {name: validate_output, handler: work, depends_on: [transform_results]}
  - {name: finalize_workflow, handler: work, depends_on: [validate_output]}
`,
	"diamond": `
  - {name: start_workflow, handler: work}
  - {name: branch_one_process, handler: work, depends_on: [start_workflow], config: {fail_times: 1}}
  - {name: branch_one_validate, handler: work, depends_on: [branch_one_process]}
  - {name: branch_two_process, handler: work, depends_on: [start_workflow], config: {timeout_times: 1}}
  - {name: branch_two_validate, handler: work, depends_on: [branch_two_process]}
  - {name: merge_branches, handler: work, depends_on: [branch_one_validate, branch_two_validate]}
  - {name: end_workflow, handler: work, depends_on: [merge_branches]}
`,
	"parallel_merge": `
  - {name: fetch_user_data, handler: work}
  - {name: fetch_order_data, handler: work, config: {fail_times: 1}}
  - {name: fetch_inventory_data, handler: work, config: {timeout_times: 1}}
  - {name: fetch_pricing_data, handler: work}
  - {name: process_user_data, handler: work, depends_on: [fetch_user_data]}
  - {name: process_order_data, handler: work, depends_on: [fetch_order_data]}
  - {name: merge_all_data, handler: work, depends_on: [process_user_data, process_order_data, fetch_inventory_data, fetch_pricing_data], config: {fail_times: 1}}
`,
	"tree": `
  - {name: root_initialization, handler: work}
  - {name: branch_a_setup, handler: work, depends_on: [root_initialization]}
  - {name: branch_b_setup, handler: work, depends_on: [root_initialization], config: {fail_times: 1}}
  - {name: a_task_one, handler: work, depends_on: [branch_a_setup]}
  - {name: a_task_two, handler: work, depends_on: [branch_a_setup], config: {timeout_times: 1}}
  - {name: b_task_one, handler: work, depends_on: [branch_b_setup]}
  - {name: b_task_two, handler: work, depends_on: [branch_b_setup], config: {fail_times: 1}}
  - {name: aggregate_results, handler: work, depends_on: [a_task_one, a_task_two, b_task_one, b_task_two]}
`,
	"mixed": `
  - {name: init_auth, handler: work}
  - {name: init_config, handler: work}
  - {name: validate_permissions, handler: work, depends_on: [init_auth], config: {fail_times: 1}}
  - {name: setup_environment, handler: work, depends_on: [init_config], config: {timeout_times: 1}}
  - {name: begin_processing, handler: work, depends_on: [validate_permissions, setup_environment]}
  - {name: process_critical_data, handler: work, depends_on: [begin_processing], config: {fail_times: 2}}
  - {name: process_optional_data, handler: work, depends_on: [begin_processing]}
  - {name: cleanup_temp_files, handler: work, depends_on: [setup_environment]}
  - {name: finalize_and_report, handler: work, depends_on: [process_critical_data, cleanup_temp_files]}
`,
}

func TestShapesCompleteDespiteFailures(t *testing.T) {
	t.Parallel()
	for name, steps := range shapes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, backend string) {
				b := setup(t, bundleOpts{backend: backend})
				tmpl := b.register(shapeTemplate(name, steps))
				b.start()
				var ids []string
				for range 3 {
					ids = append(ids, b.create(tmpl, `{}`).ID)
				}
				for _, id := range ids {
					task := b.wait(id, 20*time.Second)
					if task.State != tasker.TaskComplete {
						t.Fatalf("task %s ended %s, want complete; steps: %+v", id, task.State, task.Steps)
					}
					for _, s := range task.Steps {
						var cfg workConfig
						def := tmpl.Steps[indexOf(tmpl, s.Name)]
						_ = json.Unmarshal(def.Config, &cfg)
						if want := 1 + cfg.FailTimes + cfg.TimeoutTimes; s.Attempts != want || s.State != tasker.StepComplete {
							t.Errorf("step %s: %s after %d attempts, want complete after %d", s.Name, s.State, s.Attempts, want)
						}
					}
					// Dependencies' results reach the steps that need them.
					for _, s := range task.Steps {
						var res struct{ Deps int }
						_ = json.Unmarshal(s.Results, &res)
						if want := len(tmpl.Steps[indexOf(tmpl, s.Name)].DependsOn); res.Deps != want {
							t.Errorf("step %s saw %d dependency results, want %d", s.Name, res.Deps, want)
						}
					}
				}
				b.checkAudit()
			})
		})
	}
}

func indexOf(t *tasker.Template, name string) int {
	for i, s := range t.Steps {
		if s.Name == name {
			return i
		}
	}
	return -1
}

func TestFailuresBeyondRetryLimit(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, bundleOpts{backend: backend})
		tmpl := b.register(shapeTemplate("exhausted", `
  - {name: first, handler: work}
  - {name: flaky_forever, handler: work, depends_on: [first], config: {fail_times: 5}}
  - {name: independent, handler: work, config: {sleep: 50ms}}
  - {name: never_runs, handler: work, depends_on: [flaky_forever, independent]}
`))
		b.start()
		task := b.wait(b.create(tmpl, `{}`).ID, 20*time.Second)
		if task.State != tasker.TaskError {
			t.Fatalf("task = %s, want error", task.State)
		}
		steps := stepsByName(task)
		bad := steps["flaky_forever"]
		if bad.State != tasker.StepError || bad.Attempts != 3 || !strings.Contains(bad.LastError, "simulated failure on attempt 3") {
			t.Fatalf("flaky_forever = %s after %d attempts, last error %q; want error after 3 with the last attempt's error", bad.State, bad.Attempts, bad.LastError)
		}
		if steps["independent"].State != tasker.StepComplete {
			t.Errorf("independent branch = %s; a failure must not stop independent steps", steps["independent"].State)
		}
		if steps["never_runs"].State != tasker.StepPending || steps["never_runs"].Attempts != 0 {
			t.Errorf("never_runs = %s/%d, want pending and never attempted", steps["never_runs"].State, steps["never_runs"].Attempts)
		}
		history, err := b.client.Transitions(context.Background(), task.ID)
		if err != nil {
			t.Fatal(err)
		}
		last := history[len(history)-1]
		if last.Event != "task.failed" || !strings.Contains(last.Metadata.Error, "flaky_forever") {
			t.Errorf("last transition = %s %q, want task.failed naming the failed step", last.Event, last.Metadata.Error)
		}
		b.checkAudit()
	})
}

func TestPermanentAndNotRetryableFailOnce(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, bundleOpts{backend: backend})
		tmpl := b.register(shapeTemplate("permanent", `
  - {name: declined, handler: work, config: {permanent: true}}
  - {name: one_shot, handler: work, retryable: false, config: {fail_times: 1}}
`))
		b.start()
		task := b.wait(b.create(tmpl, `{}`).ID, 10*time.Second)
		steps := stepsByName(task)
		if task.State != tasker.TaskError {
			t.Fatalf("task = %s", task.State)
		}
		if s := steps["declined"]; s.State != tasker.StepError || s.Attempts != 1 || s.ErrorClass != "permanent" {
			t.Errorf("declined = %s/%d/%s, want error after 1 attempt, class permanent", s.State, s.Attempts, s.ErrorClass)
		}
		if s := steps["one_shot"]; s.State != tasker.StepError || s.Attempts != 1 || s.RetryLimit != 1 {
			t.Errorf("one_shot = %s/%d of %d, want error after its single attempt", s.State, s.Attempts, s.RetryLimit)
		}
		b.checkAudit()
	})
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, bundleOpts{backend: backend, pollInterval: 5 * time.Second})
		tmpl := b.register(shapeTemplate("retry_after", `
  - {name: rate_limited, handler: work, retry: {backoff: {max: 5s}}, config: {fail_times: 1, retry_after: 400ms}}
`))
		b.start()
		task := b.wait(b.create(tmpl, `{}`).ID, 10*time.Second)
		if task.State != tasker.TaskComplete {
			t.Fatalf("task = %s", task.State)
		}
		history, _ := b.client.Transitions(context.Background(), task.ID)
		var dueAt, retriedAt time.Time
		for _, tr := range history {
			if tr.Event == "step.attempt_failed" {
				dueAt = tr.Metadata.NextAttemptAt
				if got := tr.Metadata.NextAttemptAt.Sub(tr.OccurredAt); got < 390*time.Millisecond || got > 410*time.Millisecond {
					t.Errorf("next attempt scheduled %s after the failure, want the requested 400ms", got)
				}
			}
			if tr.Event == "step.execution_requested" && tr.Metadata.Attempt == 2 {
				retriedAt = tr.OccurredAt
			}
		}
		// The retry is claimed when due, driven by the engine's timer, not
		// by the 5s poll.
		if late := retriedAt.Sub(dueAt); late < 0 || late > 2*time.Second {
			t.Errorf("retry claimed %s after it was due, want at or just after", late)
		}
		b.checkAudit()
	})
}

func TestParallelStepsAndConcurrencyLimits(t *testing.T) {
	t.Parallel()
	var twenty strings.Builder
	for i := range 20 {
		fmt.Fprintf(&twenty, "  - {name: s%02d, handler: work, config: {sleep: 200ms}}\n", i)
	}
	t.Run("parallel", func(t *testing.T) {
		t.Parallel()
		forEachBackend(t, func(t *testing.T, backend string) {
			b := setup(t, bundleOpts{backend: backend, concurrency: 32})
			tmpl := b.register(shapeTemplate("parallel", twenty.String()))
			b.start()
			started := time.Now()
			task := b.wait(b.create(tmpl, `{}`).ID, 10*time.Second)
			elapsed := time.Since(started)
			if task.State != tasker.TaskComplete {
				t.Fatalf("task = %s", task.State)
			}
			// Serially the 20 steps take 4s.
			if elapsed > 2*time.Second {
				t.Errorf("20 independent 200ms steps took %s; they should run in parallel (serial: 4s)", elapsed)
			}
			if peak := b.ledger.peak.Load(); peak < 10 {
				t.Errorf("peak concurrency %d; expected most of the 20 steps at once", peak)
			}
			b.checkAudit()
		})
	})
	t.Run("global limit", func(t *testing.T) {
		t.Parallel()
		forEachBackend(t, func(t *testing.T, backend string) {
			b := setup(t, bundleOpts{backend: backend, concurrency: 3})
			tmpl := b.register(shapeTemplate("global_limit", strings.ReplaceAll(twenty.String(), "200ms", "30ms")))
			b.start()
			task := b.wait(b.create(tmpl, `{}`).ID, 10*time.Second)
			if task.State != tasker.TaskComplete {
				t.Fatalf("task = %s", task.State)
			}
			if peak := b.ledger.peak.Load(); peak != 3 {
				t.Errorf("peak concurrency %d with a limit of 3, want exactly 3", peak)
			}
			b.checkAudit()
		})
	})
	t.Run("template limit", func(t *testing.T) {
		t.Parallel()
		forEachBackend(t, func(t *testing.T, backend string) {
			b := setup(t, bundleOpts{backend: backend, concurrency: 16})
			tmpl := b.register(strings.Replace(shapeTemplate("template_limit", strings.ReplaceAll(twenty.String(), "200ms", "30ms")),
				"version: 1.0.0\n", "version: 1.0.0\nconcurrency: 2\n", 1))
			b.start()
			var ids []string
			for range 3 {
				ids = append(ids, b.create(tmpl, `{}`).ID)
			}
			for _, id := range ids {
				if task := b.wait(id, 10*time.Second); task.State != tasker.TaskComplete {
					t.Fatalf("task = %s", task.State)
				}
			}
			if peak := b.ledger.peak.Load(); peak != 2 {
				t.Errorf("peak concurrency %d with a template limit of 2, want exactly 2", peak)
			}
			// The dispatcher counts a limited template's slots; creations
			// leave its steps to it.
			if n := b.client.Stats().ClaimedOnCreation; n != 0 {
				t.Errorf("%d steps of a limited template claimed at creation, want 0", n)
			}
			b.checkAudit()
		})
	})
}

// On a running engine with free slots, a task's creation claims its first
// steps in its own transaction, up to the free slots; without a running
// engine the task waits for one, as before.
func TestCreationClaimsFirstSteps(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		// Without prefetching, so that the free slots are the concurrency's.
		b := setup(t, bundleOpts{backend: backend, concurrency: 2, prefetch: -1, pollInterval: time.Hour})
		tmpl := b.register(shapeTemplate("creation_claims", `
  - {name: a, handler: work, timeout: 10s, config: {sleep: 500ms}}
  - {name: b, handler: work, timeout: 10s, config: {sleep: 500ms}}
  - {name: c, handler: work}
  - {name: d, handler: work, depends_on: [a, b, c]}
`))
		ctx := context.Background()
		// Not started: nothing is claimed; Start's first claim finds the task.
		early := b.create(tmpl, `{}`)
		if n := b.client.Stats().ClaimedOnCreation; n != 0 {
			t.Fatalf("%d steps claimed at creation on an engine that is not running", n)
		}
		b.start()
		if task := b.wait(early.ID, 10*time.Second); task.State != tasker.TaskComplete {
			for _, s := range task.Steps {
				t.Logf("step %s %s attempts %d err %q", s.Name, s.State, s.Attempts, s.LastError)
			}
			t.Fatalf("task created before Start = %s", task.State)
		}
		// The completion that finished the first task gives its claim's
		// reservation back just after its commit, which the wait above may
		// see first.
		time.Sleep(100 * time.Millisecond)
		before := b.client.Stats()
		task := b.create(tmpl, `{}`)
		// Two free slots: a and b were claimed by the creation (c, over
		// the limit, waits; the dispatcher polls hourly here, so it runs
		// when a completion frees a slot).
		after := b.client.Stats()
		if got := after.ClaimedOnCreation - before.ClaimedOnCreation; got != 2 {
			t.Fatalf("claimed at creation: %d, want 2", got)
		}
		if after.ClaimCalls != before.ClaimCalls {
			t.Errorf("the dispatcher claimed %d times for a task whose creation claimed", after.ClaimCalls-before.ClaimCalls)
		}
		steps, err := b.client.Task(ctx, task.ID)
		if err != nil {
			t.Fatal(err)
		}
		byName := stepsByName(steps)
		if byName["a"].State != tasker.StepInProgress || byName["b"].State != tasker.StepInProgress || byName["c"].State != tasker.StepPending {
			t.Fatalf("after creation: a %s, b %s, c %s; want a and b running, c pending", byName["a"].State, byName["b"].State, byName["c"].State)
		}
		if done := b.wait(task.ID, 10*time.Second); done.State != tasker.TaskComplete {
			for _, s := range done.Steps {
				t.Logf("step %s %s attempts %d err %q", s.Name, s.State, s.Attempts, s.LastError)
			}
			t.Fatalf("task = %s", done.State)
		}
		if peak := b.ledger.peak.Load(); peak > 2 {
			t.Errorf("peak concurrency %d with a limit of 2", peak)
		}
		b.checkAudit()
	})
}

func TestNoRunawayReprocessingDuringBackoff(t *testing.T) {
	t.Parallel()
	const poll = 100 * time.Millisecond
	b := setup(t, bundleOpts{pollInterval: poll})
	tmpl := b.register(shapeTemplate("backoff", `
  - {name: waits, handler: work, retry: {backoff: {max: 5s}}, config: {fail_times: 1, retry_after: 1500ms}}
`))
	b.start()
	id := b.create(tmpl, `{}`).ID
	deadline := time.Now().Add(5 * time.Second)
	for {
		task, err := b.client.Task(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if task.Steps[0].State == tasker.StepWaitingForRetry {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("step never reached waiting_for_retry")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := b.client.Stats()
	const window = time.Second
	time.Sleep(window)
	during := b.client.Stats()
	// While the step waits, nothing is claimed, run or finalized; the
	// dispatcher only wakes on its poll interval.
	if during.Claimed != before.Claimed || during.HandlerRuns != before.HandlerRuns || during.Finalized != before.Finalized ||
		during.CompleteCalls != before.CompleteCalls {
		t.Errorf("work happened during backoff: before %+v, during %+v", before, during)
	}
	if cycles, most := during.DispatchCycles-before.DispatchCycles, int64(window/poll)+3; cycles > most {
		t.Errorf("%d dispatcher cycles in %s of backoff, want at most %d (one per poll)", cycles, window, most)
	}
	task := b.wait(id, 10*time.Second)
	if task.State != tasker.TaskComplete {
		t.Fatalf("task = %s", task.State)
	}
	after := b.client.Stats()
	if after.Finalized != 1 || after.HandlerRuns != 2 {
		t.Errorf("finalized %d times with %d handler runs, want 1 and 2", after.Finalized, after.HandlerRuns)
	}
	b.checkAudit()
}

// The engine measures each outcome's wait for the completion in flight and
// each completion transaction, on both stores: every outcome and every
// write is counted once, and the writes, which go to a real database, take
// time.
func TestCompletionLatencyStats(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, bundleOpts{backend: backend})
		tmpl := b.register(shapeTemplate("latency", shapes["diamond"]))
		before := b.client.Stats()
		if before.OutcomeWait.Count != 0 || before.CompletionWrite.Count != 0 {
			t.Fatalf("before any work: %d waits, %d writes measured", before.OutcomeWait.Count, before.CompletionWrite.Count)
		}
		began := time.Now()
		b.start()
		var ids []string
		for range 3 {
			ids = append(ids, b.create(tmpl, `{}`).ID)
		}
		for _, id := range ids {
			if task := b.wait(id, 20*time.Second); task.State != tasker.TaskComplete {
				t.Fatalf("task %s = %s", id, task.State)
			}
		}
		if err := b.client.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		elapsed := time.Since(began)
		s := b.client.Stats()
		// 3 tasks of 7 steps, one failing once and one timing out once.
		if outcomes := s.Completed + s.Stale; s.OutcomeWait.Count != outcomes || outcomes < 3*9 {
			t.Errorf("%d outcome waits measured for %d outcomes recorded (want at least 27)", s.OutcomeWait.Count, outcomes)
		}
		if s.CompletionWrite.Count != s.CompleteCalls || s.CompleteCalls == 0 {
			t.Errorf("%d completion writes measured for %d completion transactions", s.CompletionWrite.Count, s.CompleteCalls)
		}
		w := s.CompletionWrite
		if w.Sum <= 0 || w.Quantile(0.5) <= 0 || w.Quantile(0.5) > w.Quantile(0.99) || w.Mean() > 5*time.Second {
			t.Errorf("completion writes: sum %s, p50 %s, p99 %s, mean %s", w.Sum, w.Quantile(0.5), w.Quantile(0.99), w.Mean())
		}
		// Every wait and write happened within the run: none is measured
		// from a time the attempt never had.
		if o := s.OutcomeWait; o.Sum > time.Duration(o.Count)*elapsed || w.Sum > time.Duration(w.Count)*elapsed {
			t.Errorf("outcome waits: %d summing %s, writes: %d summing %s, in a run of %s", o.Count, o.Sum, w.Count, w.Sum, elapsed)
		}
	})
}

func TestCustomEvents(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, bundleOpts{backend: backend})
		tmpl := b.register(`
namespace: shop
name: custom
version: 1.0.0
events:
  - name: order.placed
    description: An order was placed
    schema: {type: object, required: [step], properties: {step: {type: string}}}
steps:
  - {name: place, handler: work, config: {publish: order.placed}}
  - {name: sneaky, handler: work, retryable: false, config: {publish: order.undeclared}}
`)
		sub := b.client.Subscribe(&tasker.SubscribeOpts{Names: []string{"order.*"}, Buffer: 16})
		defer sub.Close()
		b.start()
		task := b.wait(b.create(tmpl, `{}`).ID, 10*time.Second)
		steps := stepsByName(task)
		if steps["place"].State != tasker.StepComplete {
			t.Fatalf("place = %s: %s", steps["place"].State, steps["place"].LastError)
		}
		if s := steps["sneaky"]; s.State != tasker.StepError || !strings.Contains(s.LastError, "order.undeclared") {
			t.Errorf("publishing an undeclared event: step %s, error %q; want the handler's Publish to fail", s.State, s.LastError)
		}
		select {
		case ev := <-sub.Events():
			if ev.Name != "order.placed" || ev.Data["step"] != "place" || ev.StepName != "place" || ev.Cursor == 0 {
				t.Errorf("custom event = %+v", ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("custom event not received")
		}
		stored, err := b.client.Events(context.Background(), &tasker.EventListOpts{TaskID: task.ID})
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, ev := range stored {
			if ev.Name == "order.placed" {
				found++
			}
		}
		if found != 1 {
			t.Errorf("order.placed stored %d times, want 1", found)
		}
		b.checkAudit()
	})
}

func TestTaskIdentity(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, bundleOpts{backend: backend})
		ctx := context.Background()
		unique := b.register(shapeTemplate("unique", "  - {name: a, handler: work}\n"))
		hashed := b.register(strings.Replace(shapeTemplate("hashed", "  - {name: a, handler: work}\n"), "version: 1.0.0\n", "version: 1.0.0\nidentity_strategy: hash\n", 1))
		keyed := b.register(strings.Replace(shapeTemplate("keyed", "  - {name: a, handler: work}\n"), "version: 1.0.0\n", "version: 1.0.0\nidentity_strategy: idempotency_key\n", 1))
		create := func(tmpl *tasker.Template, c, key string) (*tasker.TaskCreated, error) {
			return b.client.CreateTask(ctx, tasker.TaskRequest{Namespace: tmpl.Namespace, Name: tmpl.Name, Context: json.RawMessage(c), IdempotencyKey: key})
		}

		// Concurrent submits with one key make exactly one task.
		var wg sync.WaitGroup
		results := make(chan *tasker.TaskCreated, 20)
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := create(unique, `{"n":1}`, "order-7")
				if err != nil {
					t.Errorf("CreateTask: %v", err)
					return
				}
				results <- res
			}()
		}
		wg.Wait()
		close(results)
		ids, created := map[string]bool{}, 0
		for r := range results {
			ids[r.Task.ID] = true
			if r.Created {
				created++
			}
		}
		if len(ids) != 1 || created != 1 {
			t.Errorf("20 concurrent submits with one key: %d tasks, %d created; want 1 and 1", len(ids), created)
		}

		// always_unique without a key: every request is a new task.
		a1, _ := create(unique, `{"n":1}`, "")
		a2, _ := create(unique, `{"n":1}`, "")
		if a1.Task.ID == a2.Task.ID || !a2.Created {
			t.Error("always_unique deduplicated requests without a key")
		}
		// hash: the same context (in any key order or spacing) is the same task.
		h1, _ := create(hashed, `{"a":1,"b":[1,2]}`, "")
		h2, _ := create(hashed, `{ "b": [1, 2], "a": 1 }`, "")
		h3, _ := create(hashed, `{"a":2,"b":[1,2]}`, "")
		if h1.Task.ID != h2.Task.ID || h2.Created || h3.Task.ID == h1.Task.ID {
			t.Errorf("hash identity: %s %s(created %v) %s", h1.Task.ID, h2.Task.ID, h2.Created, h3.Task.ID)
		}
		// idempotency_key: a key is required.
		if _, err := create(keyed, `{}`, ""); !errors.Is(err, tasker.ErrInvalidRequest) {
			t.Errorf("keyed template without a key: err = %v, want ErrInvalidRequest", err)
		}
		k1, err := create(keyed, `{}`, "abc")
		if err != nil || !k1.Created {
			t.Fatalf("keyed create: %v", err)
		}
		if k2, _ := create(keyed, `{ }`, "abc"); k2 == nil || k2.Task.ID != k1.Task.ID || k2.Created {
			t.Error("same key did not return the first task")
		}
		// The same key for a different request is a conflict, not a silent
		// answer about another task.
		if _, err := create(keyed, `{"different":true}`, "abc"); !errors.Is(err, tasker.ErrConflict) {
			t.Errorf("same key, different context: err = %v, want ErrConflict", err)
		}
	})
}

func TestStopReleasesRunningStepsWithoutChargingThem(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, bundleOpts{backend: backend})
		tmpl := b.register(`
namespace: stop
name: slow
version: 1.0.0
steps:
  - {name: slow, handler: work, retry: {limit: 1}, timeout: 1m, config: {sleep: 30s}}
`)
		b.start()
		id := b.create(tmpl, `{}`).ID
		deadline := time.Now().Add(5 * time.Second)
		for b.ledger.running.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("step never started")
			}
			time.Sleep(5 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := b.client.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		task, err := b.client.Task(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		s := task.Steps[0]
		if task.State != tasker.TaskInProgress || s.State != tasker.StepPending || s.Attempts != 1 || s.RetryLimit != 2 {
			t.Fatalf("after stop: task %s, step %s attempts %d/%d; want in_progress, pending, 1/2 (attempt refunded)", task.State, s.State, s.Attempts, s.RetryLimit)
		}
	})
}

// Retries scheduled by this process are claimed when due, each of them, not
// on the next poll.
func TestSeveralRetriesEachClaimedWhenDue(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, bundleOpts{backend: backend, pollInterval: 10 * time.Second})
		tmpl := b.register(shapeTemplate("two_retries", `
  - {name: soon, handler: work, retry: {backoff: {max: 5s}}, config: {fail_times: 1, retry_after: 300ms}}
  - {name: later, handler: work, retry: {backoff: {max: 5s}}, config: {fail_times: 1, retry_after: 700ms}}
`))
		b.start()
		started := time.Now()
		task := b.wait(b.create(tmpl, `{}`).ID, 8*time.Second)
		if task.State != tasker.TaskComplete {
			t.Fatalf("task = %s", task.State)
		}
		if took := time.Since(started); took > 3*time.Second {
			t.Errorf("took %s; the second retry waited for the poll interval", took)
		}
		b.checkAudit()
	})
}

func TestClientRestartsAfterStop(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, bundleOpts{backend: backend})
		tmpl := b.register(shapeTemplate("restart", "  - {name: a, handler: work}\n"))
		for range 2 {
			b.start()
			if task := b.wait(b.create(tmpl, `{}`).ID, 10*time.Second); task.State != tasker.TaskComplete {
				t.Fatalf("task = %s", task.State)
			}
			if err := b.client.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		b.checkAudit()
	})
}
