package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

// NewStore opens a fresh, empty store for one test; it registers its own cleanup.
type NewStore func(t *testing.T) store.Store

// Exercise runs the conformance suite against the stores newStore opens.
func Exercise(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b *bundle)
	}{
		{"TemplateRegister", testTemplateRegister},
		{"TaskCreate", testTaskCreate},
		{"TaskCreateIdentity", testTaskCreateIdentity},
		{"TaskCreateIdentityConcurrent", testTaskCreateIdentityConcurrent},
		{"TaskCreateRequireCurrent", testTaskCreateRequireCurrent},
		{"TaskGetNotFound", testTaskGetNotFound},
		{"TaskList", testTaskList},
		{"StepClaimReadyOnly", testStepClaimReadyOnly},
		{"StepClaimFilters", testStepClaimFilters},
		{"StepClaimConcurrentNoDoubleClaim", testStepClaimConcurrent},
		{"DiamondRunsToComplete", testDiamond},
		{"CompleteAndClaim", testCompleteAndClaim},
		{"CreateAndClaim", testCreateAndClaim},
		{"StaleOutcomeDiscarded", testStaleOutcome},
		{"DuplicateOutcomeInBatch", testDuplicateOutcome},
		{"MixedOutcomesInBatch", testMixedOutcomes},
		{"RetryWaitsUntilDue", testRetryWaitsUntilDue},
		{"FailureDrainsThenErrors", testFailureDrainsThenErrors},
		{"CustomEventsStoredWithOutcome", testCustomEvents},
		{"RescueExpiredLease", testRescueExpired},
		{"RescueDeadOwner", testRescueDeadOwner},
		{"RescueExhaustedFails", testRescueExhausted},
		{"ReleaseRefundsAttempt", testRelease},
		{"TaskCancelCascades", testTaskCancel},
		{"TaskRetryResetsFailedSteps", testTaskRetry},
		{"TaskResolveClosesErrorTask", testTaskResolve},
		{"EventListFilters", testEventList},
		{"NextRunAt", testNextRunAt},
		{"LargeTask", testLargeTask},
		{"OnCommitInCommitOrder", testOnCommit},
		{"EventCursorAt", testEventCursorAt},
		{"EventCursorAtSearch", testEventCursorAtSearch},
		{"LeaseRenew", testLeaseRenew},
		{"Leader", testLeader},
		{"DeleteFinished", testDeleteFinished},
		{"TaskListFilters", testTaskListFilters},
		{"TaskListSearch", testTaskListSearch},
		{"TaskListPagination", testTaskListPagination},
		{"TaskCancelRetryActor", testTaskCancelRetryActor},
		{"StepResetTaskInError", testStepResetTaskInError},
		{"StepResetTaskInProgress", testStepResetTaskInProgress},
		{"StepResetRejected", testStepResetRejected},
		{"StepResolveInProgress", testStepResolveInProgress},
		{"StepResolveCompletesTask", testStepResolveCompletesTask},
		{"StepResolveResumesTask", testStepResolveResumesTask},
		{"StepResolveResumesAndCompletes", testStepResolveResumesAndCompletes},
		{"StepResolveTaskStaysInError", testStepResolveStaysInError},
		{"StepResolveRejected", testStepResolveRejected},
		{"StepCancelRunning", testStepCancelRunning},
		{"StepCancelLastOpenFailsTask", testStepCancelLastOpen},
		{"StepCancelWaitingAndBlocked", testStepCancelWaitingAndBlocked},
		{"StepCancelTaskInError", testStepCancelTaskInError},
		{"StepCancelRejected", testStepCancelRejected},
		{"StepCancelRacesCompletion", testStepCancelRacesCompletion},
		{"StepActionsAnnounced", testStepActionsAnnounced},
		{"StepCountReady", testStepCountReady},
		{"EventListTemplateFilters", testEventListTemplateFilters},
		{"EventListNames", testEventListNames},
		{"EventListSince", testEventListSince},
		{"Tokens", testTokens},
		{"TokenRevoke", testTokenRevoke},
		{"SubscriptionSync", testSubscriptionSync},
		{"Deliveries", testDeliveries},
		{"StateCounts", testStateCounts},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &bundle{s: newStore(t), ctx: context.Background(), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
			tc.fn(t, b)
			b.checkInvariants(t)
		})
	}
}

type bundle struct {
	s   store.Store
	ctx context.Context
	now time.Time
	mu  sync.Mutex
	tok int64
}

func (b *bundle) tick(d time.Duration) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.now = b.now.Add(d)
	return b.now
}

func (b *bundle) token() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tok++
	return b.tok*1000 + 7
}

// shape describes a task to create: step names and their parents by name.
type shape struct {
	steps   []string
	parents map[string][]string
	handler map[string]string
	max     map[string]int
}

func diamond() shape {
	return shape{steps: []string{"a", "b", "c", "d"}, parents: map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"b", "c"}}}
}

func single(name string) shape { return shape{steps: []string{name}} }

func (b *bundle) template(t *testing.T, id string) *store.Template {
	t.Helper()
	tp, err := b.s.TemplateRegister(b.ctx, &store.TemplateRegisterParams{ID: id, Namespace: "ns", Name: "tmpl-" + id,
		Version: "1.0.0", Definition: json.RawMessage(`{"id":"` + id + `"}`), Now: b.now})
	if err != nil {
		t.Fatalf("TemplateRegister: %v", err)
	}
	return tp
}

// templateKey registers template id as namespace/name@version.
func (b *bundle) templateKey(t *testing.T, id, namespace, name, version string) *store.Template {
	t.Helper()
	tp, err := b.s.TemplateRegister(b.ctx, &store.TemplateRegisterParams{ID: id, Namespace: namespace, Name: name,
		Version: version, Definition: json.RawMessage(`{"id":"` + id + `"}`), Now: b.now})
	if err != nil {
		t.Fatalf("TemplateRegister: %v", err)
	}
	return tp
}

type createOpts struct {
	template    string
	identity    string
	idempotency string
	context     string
}

func (b *bundle) create(t *testing.T, sh shape, o createOpts) *store.TaskCreateResult {
	t.Helper()
	if o.template == "" {
		o.template = "t1"
	}
	if o.context == "" {
		o.context = `{"n":1}`
	}
	if _, err := b.s.TemplateGet(b.ctx, o.template); errors.Is(err, store.ErrNotFound) {
		b.template(t, o.template)
	}
	tp, err := b.s.TemplateGet(b.ctx, o.template)
	if err != nil {
		t.Fatalf("TemplateGet: %v", err)
	}
	idx := map[string]int{}
	for i, n := range sh.steps {
		idx[n] = i
	}
	specs := make([]store.StepSpec, len(sh.steps))
	for i, n := range sh.steps {
		h := "work"
		if sh.handler[n] != "" {
			h = sh.handler[n]
		}
		m := 3
		if sh.max[n] != 0 {
			m = sh.max[n]
		}
		specs[i] = store.StepSpec{Name: n, Handler: h, MaxAttempts: m, Timeout: time.Minute}
		for _, p := range sh.parents[n] {
			specs[i].Parents = append(specs[i].Parents, idx[p])
		}
	}
	res, err := b.s.TaskCreate(b.ctx, &store.TaskCreateParams{TemplateID: tp.ID, Namespace: tp.Namespace, Name: tp.Name,
		Version: tp.Version, Context: json.RawMessage(o.context), IdentityKey: o.identity, IdempotencyKey: o.idempotency,
		Steps: specs, Now: b.now})
	if err != nil {
		t.Fatalf("TaskCreate: %v", err)
	}
	return res
}

func (b *bundle) claim(t *testing.T, p store.StepClaimParams) *store.StepClaimResult {
	t.Helper()
	if p.Worker == "" {
		p.Worker = "w1"
	}
	if p.Limit == 0 {
		p.Limit = 100
	}
	if p.Now.IsZero() {
		p.Now = b.now
	}
	if p.LeaseToken == 0 {
		p.LeaseToken = b.token()
	}
	if p.LeaseTTL == 0 {
		p.LeaseTTL = time.Minute
	}
	res, err := b.s.StepClaim(b.ctx, &p)
	if err != nil {
		t.Fatalf("StepClaim: %v", err)
	}
	return res
}

func claimedNames(res *store.StepClaimResult) []string {
	var out []string
	for _, c := range res.Steps {
		out = append(out, c.Step.Name)
	}
	slices.Sort(out)
	return out
}

func outcome(c *store.ClaimedStep, kind store.OutcomeKind) store.StepOutcome {
	return store.StepOutcome{StepID: c.Step.ID, LeaseToken: c.Step.LeaseToken, Attempt: c.Step.Attempts, Kind: kind,
		Result: json.RawMessage(`{"step":"` + c.Step.Name + `"}`), DurationMS: 5}
}

func (b *bundle) complete(t *testing.T, outs ...store.StepOutcome) *store.StepCompleteManyResult {
	t.Helper()
	res, err := b.s.StepCompleteMany(b.ctx, &store.StepCompleteManyParams{Worker: "w1", Now: b.now, Outcomes: outs})
	if err != nil {
		t.Fatalf("StepCompleteMany: %v", err)
	}
	return res
}

func (b *bundle) task(t *testing.T, id string) *store.Task {
	t.Helper()
	task, err := b.s.TaskGet(b.ctx, id)
	if err != nil {
		t.Fatalf("TaskGet: %v", err)
	}
	return task
}

func (b *bundle) steps(t *testing.T, taskID string) map[string]*store.Step {
	t.Helper()
	steps, err := b.s.StepListByTask(b.ctx, taskID)
	if err != nil {
		t.Fatalf("StepListByTask: %v", err)
	}
	out := map[string]*store.Step{}
	for _, s := range steps {
		out[s.Name] = s
	}
	return out
}

func (b *bundle) history(t *testing.T, taskID string) []*store.Event {
	t.Helper()
	evs, err := b.s.EventList(b.ctx, &store.EventListParams{TaskID: taskID, Limit: 100000})
	if err != nil {
		t.Fatalf("EventList: %v", err)
	}
	return evs
}

// checkInvariants recounts every task's counters from its steps and checks
// every history in the store.
func (b *bundle) checkInvariants(t *testing.T) {
	t.Helper()
	tasks, err := b.s.TaskList(b.ctx, &store.TaskListParams{Limit: 100000})
	if err != nil {
		t.Fatalf("TaskList: %v", err)
	}
	for _, task := range tasks {
		steps, err := b.s.StepListByTask(b.ctx, task.ID)
		if err != nil {
			t.Fatalf("StepListByTask: %v", err)
		}
		done, open := 0, 0
		for _, s := range steps {
			if s.State.SatisfiesDependents() {
				done++
			}
			if s.State == lifecycle.StepInProgress || s.State == lifecycle.StepWaitingForRetry ||
				(s.State == lifecycle.StepPending && s.DepsRemaining == 0 && task.State == lifecycle.TaskInProgress) {
				open++
			}
			ready := !s.RunAt.IsZero()
			wantReady := task.State == lifecycle.TaskInProgress && (s.State == lifecycle.StepWaitingForRetry ||
				(s.State == lifecycle.StepPending && s.DepsRemaining == 0))
			if ready != wantReady {
				t.Errorf("task %s step %s (%s, deps %d): run_at set = %v, want %v", task.ID, s.Name, s.State, s.DepsRemaining, ready, wantReady)
			}
		}
		if task.StepsDone != done || task.StepsOpen != open || task.StepsTotal != len(steps) {
			t.Errorf("task %s counters total/done/open = %d/%d/%d, recount %d/%d/%d",
				task.ID, task.StepsTotal, task.StepsDone, task.StepsOpen, len(steps), done, open)
		}
		if err := CheckHistory(b.history(t, task.ID)); err != nil {
			t.Errorf("history of task %s:\n%v", task.ID, err)
		}
	}
}

func names(evs []*store.Event) []string {
	var out []string
	for _, e := range evs {
		who := "task"
		if e.StepName != "" {
			who = e.StepName
		}
		out = append(out, who+":"+string(e.Name))
	}
	return out
}

func testTemplateRegister(t *testing.T, b *bundle) {
	a := b.template(t, "d1")
	if !a.Current || a.Namespace != "ns" || string(a.Definition) != `{"id":"d1"}` {
		t.Fatalf("registered = %+v", a)
	}
	// Registering the same digest again is idempotent.
	again := b.template(t, "d1")
	if again.ID != "d1" || !again.Current {
		t.Fatalf("re-registered = %+v", again)
	}
	// A new definition of the same key replaces the current one.
	tp, err := b.s.TemplateRegister(b.ctx, &store.TemplateRegisterParams{ID: "d2", Namespace: "ns", Name: "tmpl-d1",
		Version: "1.0.0", Definition: json.RawMessage(`{"id":"d2"}`), Now: b.now})
	if err != nil || !tp.Current {
		t.Fatalf("replace: %+v, %v", tp, err)
	}
	cur, err := b.s.TemplateGetCurrent(b.ctx, "ns", "tmpl-d1", "1.0.0")
	if err != nil || cur.ID != "d2" {
		t.Fatalf("current after replace = %+v, %v", cur, err)
	}
	old, err := b.s.TemplateGet(b.ctx, "d1")
	if err != nil || old.Current {
		t.Fatalf("replaced definition = %+v, %v; want kept, not current", old, err)
	}
	list, err := b.s.TemplateList(b.ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("TemplateList = %d, %v; want 2", len(list), err)
	}
	if _, err := b.s.TemplateGet(b.ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TemplateGet(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := b.s.TemplateGetCurrent(b.ctx, "ns", "nope", "1.0.0"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TemplateGetCurrent(unknown) err = %v, want ErrNotFound", err)
	}
	// The versions of a template are its current definitions, one per
	// version: not the replaced ones, not other templates'.
	if _, err := b.s.TemplateRegister(b.ctx, &store.TemplateRegisterParams{ID: "d3", Namespace: "ns", Name: "tmpl-d1",
		Version: "1.10.0", Definition: json.RawMessage(`{"id":"d3"}`), Now: b.now}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.s.TemplateRegister(b.ctx, &store.TemplateRegisterParams{ID: "d4", Namespace: "other", Name: "tmpl-d1",
		Version: "9.0.0", Definition: json.RawMessage(`{"id":"d4"}`), Now: b.now}); err != nil {
		t.Fatal(err)
	}
	versions, err := b.s.TemplateVersions(b.ctx, "ns", "tmpl-d1")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range versions {
		ids = append(ids, v.ID+"@"+v.Version)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"d2@1.0.0", "d3@1.10.0"}) {
		t.Fatalf("TemplateVersions = %v; want d2@1.0.0 and d3@1.10.0", ids)
	}
	if none, err := b.s.TemplateVersions(b.ctx, "ns", "nope"); err != nil || len(none) != 0 {
		t.Fatalf("TemplateVersions(unknown) = %d, %v; want none", len(none), err)
	}
}

func testTaskCreate(t *testing.T, b *bundle) {
	res := b.create(t, diamond(), createOpts{context: `{"order":42}`})
	if !res.Created {
		t.Fatal("Created = false for a new task")
	}
	task := b.task(t, res.Task.ID)
	if task.State != lifecycle.TaskInProgress || task.StepsTotal != 4 || task.StepsOpen != 1 || task.StepsDone != 0 {
		t.Fatalf("task = %+v", task)
	}
	var ctxv map[string]int
	if err := json.Unmarshal(task.Context, &ctxv); err != nil || ctxv["order"] != 42 {
		t.Fatalf("context = %s", task.Context)
	}
	if task.StartedAt.IsZero() || !task.CreatedAt.Equal(b.now) {
		t.Fatalf("times: created %v started %v", task.CreatedAt, task.StartedAt)
	}
	want := []string{"task:task.initialize_requested", "a:step.initialize_requested", "b:step.initialize_requested",
		"c:step.initialize_requested", "d:step.initialize_requested", "task:task.start_requested"}
	if diff := cmp.Diff(want, names(res.Events)); diff != "" {
		t.Fatalf("create events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(names(res.Events), names(b.history(t, task.ID))); diff != "" {
		t.Fatalf("stored events differ from returned ones (-returned +stored):\n%s", diff)
	}
	for i, e := range res.Events {
		if e.Cursor == 0 || (i > 0 && e.Cursor <= res.Events[i-1].Cursor) {
			t.Fatalf("event %d cursor %d not increasing", i, e.Cursor)
		}
		if e.Namespace != "ns" || e.TaskName != "tmpl-t1" || e.Version != "1.0.0" {
			t.Fatalf("event subject = %q %q %q", e.Namespace, e.TaskName, e.Version)
		}
	}
	if len(res.Ready) != 1 || !slices.Equal(res.Ready[0].Steps, []string{"a"}) {
		t.Fatalf("ready = %+v, want [a]", res.Ready)
	}
	steps := b.steps(t, task.ID)
	if steps["a"].DepsRemaining != 0 || steps["d"].DepsRemaining != 2 || steps["a"].RunAt.IsZero() || !steps["b"].RunAt.IsZero() {
		t.Fatalf("steps = a:%+v d:%+v", steps["a"], steps["d"])
	}
	if steps["a"].MaxAttempts != 3 || steps["a"].RetryLimit != 3 || steps["a"].Timeout != time.Minute || steps["a"].Handler != "work" {
		t.Fatalf("step a policy = %+v", steps["a"])
	}
}

func testTaskCreateIdentity(t *testing.T, b *bundle) {
	first := b.create(t, single("x"), createOpts{identity: "key-1"})
	second := b.create(t, single("x"), createOpts{identity: "key-1", context: `{"other":true}`})
	if !first.Created || second.Created {
		t.Fatalf("Created = %v, %v; want true, false", first.Created, second.Created)
	}
	if second.Task.ID != first.Task.ID || len(second.Events) != 0 {
		t.Fatalf("duplicate returned task %s with %d events; want %s and none", second.Task.ID, len(second.Events), first.Task.ID)
	}
	other := b.create(t, single("x"), createOpts{identity: "key-2"})
	unkeyed1 := b.create(t, single("x"), createOpts{})
	unkeyed2 := b.create(t, single("x"), createOpts{})
	if !other.Created || !unkeyed1.Created || !unkeyed2.Created || unkeyed1.Task.ID == unkeyed2.Task.ID {
		t.Fatal("distinct or unkeyed requests must create distinct tasks")
	}
}

// A creation that requires its template to be current stores nothing once
// another definition replaced it; an existing task with the same identity
// is still returned.
func testTaskCreateRequireCurrent(t *testing.T, b *bundle) {
	old := b.templateKey(t, "old", "ns", "orders", "1.0.0")
	create := func(tp *store.Template, identity string, requireCurrent bool) (*store.TaskCreateResult, error) {
		return b.s.TaskCreate(b.ctx, &store.TaskCreateParams{TemplateID: tp.ID, Namespace: tp.Namespace, Name: tp.Name,
			Version: tp.Version, Context: json.RawMessage(`{}`), IdentityKey: identity, RequireCurrent: requireCurrent,
			Steps: []store.StepSpec{{Name: "a", Handler: "work", MaxAttempts: 1, Timeout: time.Minute}}, Now: b.now})
	}
	first, err := create(old, "key-1", true)
	if err != nil || !first.Created {
		t.Fatalf("creation with the current template: %+v, %v", first, err)
	}
	replacement := b.templateKey(t, "new", "ns", "orders", "1.0.0")
	for _, identity := range []string{"", "key-2"} {
		if res, err := create(old, identity, true); !errors.Is(err, store.ErrTemplateReplaced) {
			t.Fatalf("creation (identity %q) with a replaced template: %+v, %v; want ErrTemplateReplaced", identity, res, err)
		}
	}
	all, err := b.s.TaskList(b.ctx, &store.TaskListParams{})
	if err != nil || len(all) != 1 {
		t.Fatalf("stored tasks = %d, %v; want only the first", len(all), err)
	}
	if n, err := b.s.StepCountReady(b.ctx, b.now); err != nil || n != 1 {
		t.Fatalf("ready steps = %d, %v; want only the first task's", n, err)
	}
	dup, err := create(old, "key-1", true)
	if err != nil || dup.Created || dup.Task.ID != first.Task.ID {
		t.Fatalf("same identity with a replaced template: %+v, %v; want the existing task", dup, err)
	}
	if res, err := create(replacement, "", true); err != nil || !res.Created {
		t.Fatalf("creation with the replacement: %+v, %v", res, err)
	}
	if res, err := create(old, "", false); err != nil || !res.Created {
		t.Fatalf("creation with a replaced template, not required current: %+v, %v", res, err)
	}
}

func testTaskCreateIdentityConcurrent(t *testing.T, b *bundle) {
	b.template(t, "t1")
	const n = 16
	ids := make(chan string, n)
	created := make(chan bool, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := b.create(t, single("x"), createOpts{identity: "same"})
			ids <- res.Task.ID
			created <- res.Created
		}()
	}
	wg.Wait()
	close(ids)
	close(created)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	nCreated := 0
	for c := range created {
		if c {
			nCreated++
		}
	}
	if len(seen) != 1 || nCreated != 1 {
		t.Fatalf("%d concurrent submits made %d distinct tasks, %d reported created; want 1 and 1", n, len(seen), nCreated)
	}
	all, err := b.s.TaskList(b.ctx, &store.TaskListParams{})
	if err != nil || len(all) != 1 {
		t.Fatalf("stored tasks = %d, %v; want 1", len(all), err)
	}
}

func testTaskGetNotFound(t *testing.T, b *bundle) {
	if _, err := b.s.TaskGet(b.ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TaskGet err = %v, want ErrNotFound", err)
	}
	if _, err := b.s.StepGet(b.ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("StepGet err = %v, want ErrNotFound", err)
	}
	if _, err := b.s.TaskCancel(b.ctx, &store.TaskCancelParams{TaskID: "00000000-0000-0000-0000-000000000000", Now: b.now}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TaskCancel err = %v, want ErrNotFound", err)
	}
}

func testTaskList(t *testing.T, b *bundle) {
	var ids []string
	for range 3 {
		ids = append(ids, b.create(t, single("x"), createOpts{}).Task.ID)
		b.tick(time.Second)
	}
	c := b.claim(t, store.StepClaimParams{TaskIDs: []string{ids[0]}})
	b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	all, err := b.s.TaskList(b.ctx, &store.TaskListParams{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, task := range all {
		got = append(got, task.ID)
	}
	if diff := cmp.Diff([]string{ids[2], ids[1], ids[0]}, got); diff != "" {
		t.Fatalf("TaskList order, newest first (-want +got):\n%s", diff)
	}
	done, err := b.s.TaskList(b.ctx, &store.TaskListParams{State: lifecycle.TaskComplete})
	if err != nil || len(done) != 1 || done[0].ID != ids[0] {
		t.Fatalf("TaskList(complete) = %d, %v", len(done), err)
	}
	limited, err := b.s.TaskList(b.ctx, &store.TaskListParams{Limit: 2})
	if err != nil || len(limited) != 2 {
		t.Fatalf("TaskList(limit 2) = %d, %v", len(limited), err)
	}
}

func testStepClaimReadyOnly(t *testing.T, b *bundle) {
	res := b.create(t, diamond(), createOpts{context: `{"k":"v"}`})
	c := b.claim(t, store.StepClaimParams{Worker: "w9", LeaseTTL: 10 * time.Second})
	if diff := cmp.Diff([]string{"a"}, claimedNames(c)); diff != "" {
		t.Fatalf("claimed (-want +got):\n%s", diff)
	}
	cs := c.Steps[0]
	if cs.Step.State != lifecycle.StepInProgress || cs.Step.Attempts != 1 || cs.Step.LeaseOwner != "w9" || cs.Step.LeaseToken == 0 {
		t.Fatalf("claimed step = %+v", cs.Step)
	}
	if want := b.now.Add(10 * time.Second); !cs.Step.LeaseExpiresAt.Equal(want) {
		t.Fatalf("lease expires %v, want now+TTL %v", cs.Step.LeaseExpiresAt, want)
	}
	if string(cs.Context) != `{"k":"v"}` || cs.Namespace != "ns" || cs.TaskName != "tmpl-t1" || len(cs.Dependencies) != 0 {
		t.Fatalf("claimed step data = %+v", cs)
	}
	if len(c.Events) != 1 || c.Events[0].Name != event.StepExecutionRequested || c.Events[0].Metadata.Attempt != 1 ||
		c.Events[0].Metadata.Worker != "w9" || c.Events[0].Metadata.LeaseToken != cs.Step.LeaseToken {
		t.Fatalf("claim events = %+v", c.Events)
	}
	stored := b.steps(t, res.Task.ID)["a"]
	if stored.State != lifecycle.StepInProgress || stored.LeaseToken != cs.Step.LeaseToken || !stored.RunAt.IsZero() {
		t.Fatalf("stored claimed step = %+v", stored)
	}
	if again := b.claim(t, store.StepClaimParams{}); len(again.Steps) != 0 {
		t.Fatalf("second claim got %v; a claimed step must not be claimed again", claimedNames(again))
	}
	if zero, err := b.s.StepClaim(b.ctx, &store.StepClaimParams{Worker: "w", Limit: 0, Now: b.now, LeaseTTL: time.Minute}); err != nil || len(zero.Steps) != 0 {
		t.Fatalf("claim with limit 0 = %v, %v", zero, err)
	}
}

func testStepClaimFilters(t *testing.T, b *bundle) {
	b.template(t, "other")
	t1 := b.create(t, shape{steps: []string{"p", "q", "r"}, handler: map[string]string{"q": "special"}}, createOpts{})
	t2 := b.create(t, single("s"), createOpts{template: "other"})
	if got := claimedNames(b.claim(t, store.StepClaimParams{Limit: 1, TaskIDs: []string{t1.Task.ID}})); len(got) != 1 {
		t.Fatalf("limit 1 claimed %v", got)
	}
	if got := claimedNames(b.claim(t, store.StepClaimParams{Handlers: []string{"special"}})); !slices.Equal(got, []string{"q"}) {
		t.Fatalf("handler filter claimed %v, want [q]", got)
	}
	if got := claimedNames(b.claim(t, store.StepClaimParams{ExcludeTemplateIDs: []string{"t1"}})); !slices.Equal(got, []string{"s"}) {
		t.Fatalf("exclude filter claimed %v, want [s]", got)
	}
	if got := claimedNames(b.claim(t, store.StepClaimParams{TemplateIDs: []string{"other"}})); len(got) != 0 {
		t.Fatalf("template filter claimed %v after s was taken", got)
	}
	rest := claimedNames(b.claim(t, store.StepClaimParams{TemplateIDs: []string{"t1"}}))
	if len(rest) != 1 {
		t.Fatalf("remaining t1 claim = %v", rest)
	}
	_ = t2
}

func testStepClaimConcurrent(t *testing.T, b *bundle) {
	b.template(t, "t1")
	for range 20 {
		b.create(t, shape{steps: []string{"a", "b", "c", "d", "e"}}, createOpts{})
	}
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker := fmt.Sprintf("w%d", w)
			for {
				res, err := b.s.StepClaim(b.ctx, &store.StepClaimParams{Worker: worker, Limit: 7, Now: b.now, LeaseToken: int64(w + 1), LeaseTTL: time.Minute})
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				if len(res.Steps) == 0 {
					return
				}
				mu.Lock()
				for _, c := range res.Steps {
					if prev, dup := seen[c.Step.ID]; dup {
						t.Errorf("step %s claimed by %s and %s", c.Step.ID, prev, worker)
					}
					seen[c.Step.ID] = worker
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 100 {
		t.Fatalf("claimed %d distinct steps, want 100", len(seen))
	}
}

func testDiamond(t *testing.T, b *bundle) {
	res := b.create(t, diamond(), createOpts{})
	id := res.Task.ID
	c := b.claim(t, store.StepClaimParams{})
	r := b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	if len(r.Stale) != 0 || r.Count != 1 {
		t.Fatalf("complete a: stale %v count %d", r.Stale, r.Count)
	}
	if len(r.Ready) != 1 || !slices.Equal(r.Ready[0].Steps, []string{"b", "c"}) {
		t.Fatalf("ready after a = %+v, want [b c]", r.Ready)
	}
	c = b.claim(t, store.StepClaimParams{})
	if diff := cmp.Diff([]string{"b", "c"}, claimedNames(c)); diff != "" {
		t.Fatalf("claim after a (-want +got):\n%s", diff)
	}
	for _, cs := range c.Steps {
		if got := string(cs.Dependencies["a"]); got != `{"step":"a"}` || len(cs.Dependencies) != 1 {
			t.Fatalf("dependencies of %s = %v", cs.Step.Name, cs.Dependencies)
		}
	}
	byName := map[string]*store.ClaimedStep{}
	for _, cs := range c.Steps {
		byName[cs.Step.Name] = cs
	}
	r = b.complete(t, outcome(byName["b"], store.OutcomeComplete))
	if len(r.Ready) != 0 {
		t.Fatalf("d became ready with c unfinished: %+v", r.Ready)
	}
	r = b.complete(t, outcome(byName["c"], store.OutcomeComplete))
	if len(r.Ready) != 1 || !slices.Equal(r.Ready[0].Steps, []string{"d"}) {
		t.Fatalf("ready after c = %+v, want [d]", r.Ready)
	}
	c = b.claim(t, store.StepClaimParams{})
	if len(c.Steps) != 1 || len(c.Steps[0].Dependencies) != 2 {
		t.Fatalf("claim d = %v deps %v", claimedNames(c), c.Steps)
	}
	r = b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	if len(r.Finalized) != 1 || r.Finalized[0].State != lifecycle.TaskComplete || r.Finalized[0].TaskID != id {
		t.Fatalf("finalized = %+v, want task complete", r.Finalized)
	}
	if last := r.Events[len(r.Events)-1]; last.Name != event.TaskCompleted || last.StepID != "" {
		t.Fatalf("last event = %s, want task.completed", last.Name)
	}
	task := b.task(t, id)
	if task.State != lifecycle.TaskComplete || task.StepsDone != 4 || task.StepsOpen != 0 || task.FinishedAt.IsZero() {
		t.Fatalf("task = %+v", task)
	}
	steps := b.steps(t, id)
	if string(steps["d"].Results) != `{"step":"d"}` || steps["d"].State != lifecycle.StepComplete || steps["d"].FinishedAt.IsZero() {
		t.Fatalf("step d = %+v", steps["d"])
	}
	// A sweep finds nothing more to finalize: finalization happened once.
	rs, err := b.s.StepRescue(b.ctx, &store.StepRescueParams{Now: b.tick(time.Hour)})
	if err != nil || len(rs.Finalized) != 0 || len(rs.Events) != 0 {
		t.Fatalf("rescue after completion = %+v, %v", rs, err)
	}
	completed := 0
	for _, e := range b.history(t, id) {
		if e.Name == event.TaskCompleted {
			completed++
		}
	}
	if completed != 1 {
		t.Fatalf("task.completed recorded %d times", completed)
	}
}

// testCompleteAndClaim: a completion that also claims takes the children
// its outcomes made ready, in the same transaction, with their parents'
// results, and records the claim after the completion.
// A creation with a claim stores the roots it claims already running,
// logs their claim after the creation, and leaves the rest ready.
func testCreateAndClaim(t *testing.T, b *bundle) {
	tp := b.template(t, "t1")
	create := func(claim *store.StepClaimParams) *store.TaskCreateResult {
		t.Helper()
		res, err := b.s.TaskCreate(b.ctx, &store.TaskCreateParams{TemplateID: tp.ID, Namespace: tp.Namespace, Name: tp.Name,
			Version: tp.Version, Context: json.RawMessage(`{"n":1}`), Claim: claim, Now: b.now,
			Steps: []store.StepSpec{
				{Name: "a", Handler: "work", MaxAttempts: 3, Timeout: time.Minute},
				{Name: "b", Handler: "other", MaxAttempts: 3, Timeout: time.Minute},
				{Name: "c", Handler: "work", MaxAttempts: 2, Timeout: time.Minute},
				{Name: "d", Handler: "work", MaxAttempts: 3, Timeout: time.Minute, Parents: []int{0}},
			}})
		if err != nil {
			t.Fatalf("TaskCreate: %v", err)
		}
		return res
	}
	if _, err := b.s.TaskCreate(b.ctx, &store.TaskCreateParams{TemplateID: tp.ID, Namespace: tp.Namespace, Name: tp.Name,
		Version: tp.Version, Context: json.RawMessage(`{}`), Claim: &store.StepClaimParams{Limit: 1}, Now: b.now,
		Steps: []store.StepSpec{{Name: "a", Handler: "work", MaxAttempts: 1, Timeout: time.Minute}}}); err == nil {
		t.Fatal("a claim without worker and lease TTL was accepted")
	}
	token := b.token()
	claim := &store.StepClaimParams{Worker: "w1", LeaseToken: token, LeaseTTL: time.Minute, Limit: 1, Handlers: []string{"work"}}
	res := create(claim)
	// The limit and the handler filter hold: a (not b, another handler's;
	// not c, over the limit; not d, not ready).
	if len(res.Claimed) != 1 || res.Claimed[0].Step.Name != "a" {
		t.Fatalf("claimed %v, want [a]", res.Claimed)
	}
	cs := res.Claimed[0]
	if cs.Step.State != lifecycle.StepInProgress || cs.Step.LeaseToken != token || cs.Step.LeaseOwner != "w1" ||
		cs.Step.Attempts != 1 || cs.TaskName != tp.Name || string(cs.Context) != `{"n":1}` || len(cs.Dependencies) != 0 {
		t.Fatalf("claimed a = %+v (%+v)", cs.Step, cs)
	}
	stored := b.steps(t, res.Task.ID)
	a := stored["a"]
	if a.State != lifecycle.StepInProgress || a.LeaseToken != token || a.LeaseOwner != "w1" || a.Attempts != 1 || a.Seq != 2 ||
		!a.RunAt.IsZero() || !a.LeaseExpiresAt.Equal(b.now.Add(time.Minute)) || !a.StartedAt.Equal(b.now) {
		t.Fatalf("stored a = %+v", a)
	}
	if stored["b"].State != lifecycle.StepPending || stored["b"].RunAt.IsZero() || stored["c"].RunAt.IsZero() {
		t.Fatalf("b and c are not left ready: %+v %+v", stored["b"], stored["c"])
	}
	last := res.Events[len(res.Events)-1]
	if last.StepName != "a" || last.Name != event.StepExecutionRequested || last.From != string(lifecycle.StepPending) ||
		last.To != string(lifecycle.StepInProgress) || last.Seq != 2 || last.Metadata.Worker != "w1" ||
		last.Metadata.LeaseToken != token || last.Metadata.Attempt != 1 || last.Cursor == 0 {
		t.Fatalf("last log entry of the creation = %+v, want a's claim", last)
	}
	if n, err := b.s.StepCountReady(b.ctx, b.now); err != nil || n != 2 {
		t.Fatalf("ready steps = %d, %v; want b and c", n, err)
	}
	// The claim's lease is a lease like any other: the outcome counts and
	// releases d.
	r := b.complete(t, outcome(cs, store.OutcomeComplete))
	if len(r.Stale) != 0 {
		t.Fatalf("the outcome under the creation's lease is stale")
	}
	if d := b.steps(t, res.Task.ID)["d"]; d.RunAt.IsZero() {
		t.Fatalf("d is not ready after a completed: %+v", d)
	}
	// Claims that cannot include the new task claim nothing.
	for name, cl := range map[string]*store.StepClaimParams{
		"other tasks":       {TaskIDs: []string{"x"}},
		"excluded template": {ExcludeTemplateIDs: []string{tp.ID}},
		"other templates":   {TemplateIDs: []string{"t2"}},
	} {
		cl.Worker, cl.LeaseToken, cl.LeaseTTL, cl.Limit = "w1", b.token(), time.Minute, 4
		if res := create(cl); len(res.Claimed) != 0 {
			t.Fatalf("a claim for %s claimed %v", name, res.Claimed)
		}
	}
	b.checkInvariants(t)
}

func testCompleteAndClaim(t *testing.T, b *bundle) {
	res := b.create(t, diamond(), createOpts{})
	other := b.create(t, single("x"), createOpts{})
	c := b.claim(t, store.StepClaimParams{TaskIDs: []string{res.Task.ID}})
	if len(c.Steps) != 1 || c.Steps[0].Step.Name != "a" {
		t.Fatalf("claim = %v, want [a]", claimedNames(c))
	}
	// Bad claim parameters are rejected before anything changes.
	if _, err := b.s.StepCompleteMany(b.ctx, &store.StepCompleteManyParams{Worker: "w1", Now: b.now,
		Outcomes: []store.StepOutcome{outcome(c.Steps[0], store.OutcomeComplete)}, Claim: &store.StepClaimParams{Limit: 2}}); err == nil {
		t.Fatal("a claim without worker and lease TTL was accepted")
	}
	if st := b.steps(t, res.Task.ID)["a"]; st.State != lifecycle.StepInProgress {
		t.Fatalf("a is %s after a rejected completion", st.State)
	}
	token := b.token()
	r, err := b.s.StepCompleteMany(b.ctx, &store.StepCompleteManyParams{Worker: "w1", Now: b.tick(time.Second),
		Outcomes: []store.StepOutcome{outcome(c.Steps[0], store.OutcomeComplete)},
		Claim:    &store.StepClaimParams{Worker: "w1", LeaseToken: token, LeaseTTL: time.Minute, Limit: 2, TaskIDs: []string{res.Task.ID}}})
	if err != nil {
		t.Fatalf("complete and claim: %v", err)
	}
	var got []string
	for _, cs := range r.Claimed {
		got = append(got, cs.Step.Name)
		if cs.Step.State != lifecycle.StepInProgress || cs.Step.LeaseToken != token || cs.Step.Attempts != 1 {
			t.Fatalf("claimed %s = %+v", cs.Step.Name, cs.Step)
		}
		if string(cs.Dependencies["a"]) != `{"step":"a"}` || cs.TaskName != res.Task.Name || string(cs.Context) != string(res.Task.Context) {
			t.Fatalf("claimed %s: dependencies %v, task %q, context %s", cs.Step.Name, cs.Dependencies, cs.TaskName, cs.Context)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("claimed %v, want [b c]", got)
	}
	var seq []string
	for _, e := range r.Events {
		seq = append(seq, e.StepName+":"+string(e.Name))
	}
	if len(seq) != 3 || seq[0] != "a:"+string(event.StepCompleted) || seq[1] == seq[2] ||
		!strings.HasSuffix(seq[1], ":"+string(event.StepExecutionRequested)) || !strings.HasSuffix(seq[2], ":"+string(event.StepExecutionRequested)) {
		t.Fatalf("events = %v, want a completed, then b and c claimed", seq)
	}
	for i := 1; i < len(r.Events); i++ {
		if r.Events[i].Cursor <= r.Events[i-1].Cursor {
			t.Fatalf("events out of cursor order: %v", r.Events)
		}
	}
	steps := b.steps(t, res.Task.ID)
	if steps["b"].State != lifecycle.StepInProgress || steps["c"].State != lifecycle.StepInProgress || steps["d"].State != lifecycle.StepPending {
		t.Fatalf("steps after complete and claim: b %s, c %s, d %s", steps["b"].State, steps["c"].State, steps["d"].State)
	}
	if x := b.steps(t, other.Task.ID)["x"]; x.State != lifecycle.StepPending {
		t.Fatalf("a step outside the claim's tasks was claimed: %s", x.State)
	}
	// A completion with a claim of nothing ready claims nothing.
	byName := map[string]*store.ClaimedStep{}
	for _, cs := range r.Claimed {
		byName[cs.Step.Name] = cs
	}
	r, err = b.s.StepCompleteMany(b.ctx, &store.StepCompleteManyParams{Worker: "w1", Now: b.now,
		Outcomes: []store.StepOutcome{outcome(byName["b"], store.OutcomeComplete)},
		Claim:    &store.StepClaimParams{Worker: "w1", LeaseToken: b.token(), LeaseTTL: time.Minute, Limit: 5, TaskIDs: []string{res.Task.ID}}})
	if err != nil || len(r.Claimed) != 0 {
		t.Fatalf("complete b and claim = %v, %v; want nothing claimed (d waits for c)", r, err)
	}
	r, err = b.s.StepCompleteMany(b.ctx, &store.StepCompleteManyParams{Worker: "w1", Now: b.now,
		Outcomes: []store.StepOutcome{outcome(byName["c"], store.OutcomeComplete)},
		Claim:    &store.StepClaimParams{Worker: "w1", LeaseToken: b.token(), LeaseTTL: time.Minute, Limit: 5, TaskIDs: []string{res.Task.ID}}})
	if err != nil || len(r.Claimed) != 1 || r.Claimed[0].Step.Name != "d" || len(r.Claimed[0].Dependencies) != 2 {
		t.Fatalf("complete c and claim = %+v, %v; want d with two dependencies", r, err)
	}
	r = b.complete(t, outcome(r.Claimed[0], store.OutcomeComplete))
	if len(r.Finalized) != 1 || r.Finalized[0].State != lifecycle.TaskComplete {
		t.Fatalf("finalized = %+v", r.Finalized)
	}
}

// testDuplicateOutcome: two outcomes for the same step in one batch apply
// like two calls one after the other: the first, then a stale one.
func testDuplicateOutcome(t *testing.T, b *bundle) {
	res := b.create(t, single("a"), createOpts{})
	c := b.claim(t, store.StepClaimParams{TaskIDs: []string{res.Task.ID}})
	if len(c.Steps) != 1 {
		t.Fatalf("claimed %d steps", len(c.Steps))
	}
	first := outcome(c.Steps[0], store.OutcomeComplete)
	second := outcome(c.Steps[0], store.OutcomeFail)
	r := b.complete(t, first, second)
	if len(r.Stale) != 1 || r.Stale[0] != 1 || r.Count != 1 {
		t.Fatalf("stale %v, count %d; want the second outcome stale", r.Stale, r.Count)
	}
	if st := b.steps(t, res.Task.ID)["a"]; st.State != lifecycle.StepComplete {
		t.Fatalf("step a = %s, want complete (the first outcome)", st.State)
	}
	if task := b.task(t, res.Task.ID); task.State != lifecycle.TaskComplete {
		t.Fatalf("task = %s, want complete", task.State)
	}
}

// testMixedOutcomes: one batch with a completion, a retry, a permanent
// failure and a stale outcome applies each as on its own, in order.
func testMixedOutcomes(t *testing.T, b *bundle) {
	ok := b.create(t, single("a"), createOpts{})
	again := b.create(t, shape{steps: []string{"a"}, max: map[string]int{"a": 3}}, createOpts{})
	bad := b.create(t, single("a"), createOpts{})
	lost := b.create(t, single("a"), createOpts{})
	c := b.claim(t, store.StepClaimParams{})
	byTask := map[string]*store.ClaimedStep{}
	for _, cs := range c.Steps {
		byTask[cs.Step.TaskID] = cs
	}
	if len(byTask) != 4 {
		t.Fatalf("claimed %d steps, want 4", len(byTask))
	}
	next := b.now.Add(time.Minute)
	retry := outcome(byTask[again.Task.ID], store.OutcomeRetry)
	retry.NextAttemptAt, retry.Error, retry.ErrorClass = next, "try later", "retryable"
	fail := outcome(byTask[bad.Task.ID], store.OutcomeFail)
	fail.Permanent, fail.Error, fail.ErrorClass = true, "no", "permanent"
	stale := outcome(byTask[lost.Task.ID], store.OutcomeComplete)
	stale.LeaseToken++
	r := b.complete(t, outcome(byTask[ok.Task.ID], store.OutcomeComplete), retry, stale, fail)
	if !slices.Equal(r.Stale, []int{2}) || r.Count != 3 {
		t.Fatalf("stale %v, count %d; want [2] and 3", r.Stale, r.Count)
	}
	var seq []string
	for _, e := range r.Events {
		if e.StepID != "" {
			seq = append(seq, e.TaskID+":"+e.To)
		}
	}
	want := []string{ok.Task.ID + ":complete", again.Task.ID + ":waiting_for_retry", bad.Task.ID + ":error"}
	if !slices.Equal(seq, want) {
		t.Fatalf("step events %v, want %v (in outcome order)", seq, want)
	}
	if st := b.steps(t, again.Task.ID)["a"]; st.State != lifecycle.StepWaitingForRetry || !st.RunAt.Equal(next) ||
		st.LastError != "try later" || st.ErrorClass != "retryable" || st.LeaseToken != 0 {
		t.Fatalf("retried step = %+v", st)
	}
	if st := b.steps(t, bad.Task.ID)["a"]; st.State != lifecycle.StepError || st.LastError != "no" || st.FinishedAt.IsZero() {
		t.Fatalf("failed step = %+v", st)
	}
	if st := b.steps(t, lost.Task.ID)["a"]; st.State != lifecycle.StepInProgress {
		t.Fatalf("the step of the stale outcome = %s, want still in_progress", st.State)
	}
	for id, want := range map[string]lifecycle.TaskState{ok.Task.ID: lifecycle.TaskComplete, again.Task.ID: lifecycle.TaskInProgress,
		bad.Task.ID: lifecycle.TaskError, lost.Task.ID: lifecycle.TaskInProgress} {
		if task := b.task(t, id); task.State != want {
			t.Errorf("task %s = %s, want %s", id, task.State, want)
		}
	}
}

func testStaleOutcome(t *testing.T, b *bundle) {
	res := b.create(t, single("x"), createOpts{})
	c := b.claim(t, store.StepClaimParams{})
	good := outcome(c.Steps[0], store.OutcomeComplete)
	badToken := good
	badToken.LeaseToken++
	badAttempt := good
	badAttempt.Attempt++
	unknown := good
	unknown.StepID = "00000000-0000-0000-0000-000000000000"
	r := b.complete(t, badToken, badAttempt, unknown)
	if !slices.Equal(r.Stale, []int{0, 1, 2}) || len(r.Events) != 0 {
		t.Fatalf("stale = %v events %d; want all three discarded", r.Stale, len(r.Events))
	}
	if st := b.steps(t, res.Task.ID)["x"]; st.State != lifecycle.StepInProgress {
		t.Fatalf("step after stale outcomes = %s", st.State)
	}
	r = b.complete(t, good, good)
	if !slices.Equal(r.Stale, []int{1}) || r.Count != 1 {
		t.Fatalf("duplicate outcome: stale %v count %d; want the second discarded", r.Stale, r.Count)
	}
	// After a rescue and a new claim, the first lease's outcome is stale.
	res2 := b.create(t, single("y"), createOpts{})
	c1 := b.claim(t, store.StepClaimParams{Worker: "old", TaskIDs: []string{res2.Task.ID}})
	b.tick(2 * time.Minute)
	if _, err := b.s.StepRescue(b.ctx, &store.StepRescueParams{Now: b.now}); err != nil {
		t.Fatal(err)
	}
	c2 := b.claim(t, store.StepClaimParams{Worker: "new", TaskIDs: []string{res2.Task.ID}})
	if len(c2.Steps) != 1 || c2.Steps[0].Step.Attempts != 2 {
		t.Fatalf("reclaim = %v", claimedNames(c2))
	}
	r = b.complete(t, outcome(c1.Steps[0], store.OutcomeComplete))
	if len(r.Stale) != 1 {
		t.Fatalf("fenced-out worker's outcome was applied")
	}
	r = b.complete(t, outcome(c2.Steps[0], store.OutcomeComplete))
	if len(r.Stale) != 0 || len(r.Finalized) != 1 {
		t.Fatalf("current worker's outcome: stale %v finalized %v", r.Stale, r.Finalized)
	}
}

func testRetryWaitsUntilDue(t *testing.T, b *bundle) {
	res := b.create(t, single("x"), createOpts{})
	c := b.claim(t, store.StepClaimParams{})
	o := outcome(c.Steps[0], store.OutcomeRetry)
	o.Error, o.ErrorClass = "flaky", "retryable"
	o.NextAttemptAt = b.now.Add(30 * time.Second)
	r := b.complete(t, o)
	if len(r.Events) != 1 || r.Events[0].Name != event.StepAttemptFailed || r.Events[0].Metadata.Error != "flaky" ||
		!r.Events[0].Metadata.NextAttemptAt.Equal(o.NextAttemptAt) {
		t.Fatalf("retry events = %+v", r.Events)
	}
	st := b.steps(t, res.Task.ID)["x"]
	if st.State != lifecycle.StepWaitingForRetry || st.LastError != "flaky" || !st.RunAt.Equal(o.NextAttemptAt) || st.LeaseOwner != "" {
		t.Fatalf("step = %+v", st)
	}
	if task := b.task(t, res.Task.ID); task.State != lifecycle.TaskInProgress || task.StepsOpen != 1 {
		t.Fatalf("task while waiting = %s open %d", task.State, task.StepsOpen)
	}
	if got := b.claim(t, store.StepClaimParams{Now: b.now.Add(29 * time.Second)}); len(got.Steps) != 0 {
		t.Fatal("claimed a step before its retry was due")
	}
	got := b.claim(t, store.StepClaimParams{Now: b.now.Add(30 * time.Second)})
	if len(got.Steps) != 1 || got.Steps[0].Step.Attempts != 2 || got.Events[0].From != string(lifecycle.StepWaitingForRetry) {
		t.Fatalf("due claim = %+v", got.Steps)
	}
	b.tick(30 * time.Second)
	b.complete(t, outcome(got.Steps[0], store.OutcomeComplete))
	if task := b.task(t, res.Task.ID); task.State != lifecycle.TaskComplete {
		t.Fatalf("task = %s", task.State)
	}
}

func testFailureDrainsThenErrors(t *testing.T, b *bundle) {
	// a fails; b (independent) still runs; c depends on a and never runs.
	sh := shape{steps: []string{"a", "b", "c"}, parents: map[string][]string{"c": {"a"}}}
	res := b.create(t, sh, createOpts{})
	c := b.claim(t, store.StepClaimParams{})
	by := map[string]*store.ClaimedStep{}
	for _, cs := range c.Steps {
		by[cs.Step.Name] = cs
	}
	fail := outcome(by["a"], store.OutcomeFail)
	fail.Error, fail.ErrorClass, fail.Permanent = "card declined", "permanent", true
	r := b.complete(t, fail)
	if len(r.Finalized) != 0 {
		t.Fatalf("task finalized while b is still running: %+v", r.Finalized)
	}
	if r.Events[0].Name != event.StepFailed || !r.Events[0].Metadata.Permanent {
		t.Fatalf("fail events = %+v", r.Events[0])
	}
	r = b.complete(t, outcome(by["b"], store.OutcomeComplete))
	if len(r.Finalized) != 1 || r.Finalized[0].State != lifecycle.TaskError {
		t.Fatalf("finalized = %+v, want error", r.Finalized)
	}
	last := r.Events[len(r.Events)-1]
	if last.Name != event.TaskFailed || !slices.Equal(last.Metadata.FailedSteps, []string{"a"}) {
		t.Fatalf("task.failed = %+v", last)
	}
	steps := b.steps(t, res.Task.ID)
	if steps["a"].State != lifecycle.StepError || steps["a"].LastError != "card declined" || steps["a"].Attempts != 1 ||
		steps["c"].State != lifecycle.StepPending || steps["b"].State != lifecycle.StepComplete {
		t.Fatalf("steps: a=%s/%q b=%s c=%s", steps["a"].State, steps["a"].LastError, steps["b"].State, steps["c"].State)
	}
}

func testCustomEvents(t *testing.T, b *bundle) {
	res := b.create(t, single("x"), createOpts{})
	c := b.claim(t, store.StepClaimParams{})
	o := outcome(c.Steps[0], store.OutcomeComplete)
	o.CustomEvents = []store.CustomEvent{{Name: "order.placed", Payload: json.RawMessage(`{"total":12}`)}}
	r := b.complete(t, o)
	var custom *store.Event
	for _, e := range r.Events {
		if !e.IsTransition() {
			custom = e
		}
	}
	if custom == nil || custom.Name != "order.placed" || string(custom.Payload) != `{"total":12}` || custom.StepName != "x" || custom.Cursor == 0 {
		t.Fatalf("custom event = %+v", custom)
	}
	stored := b.history(t, res.Task.ID)
	found := false
	for _, e := range stored {
		if e.Name == "order.placed" && string(e.Payload) == `{"total":12}` {
			found = true
		}
	}
	if !found {
		t.Fatal("custom event not in the durable log")
	}
	// A stale outcome's custom events are discarded with it.
	res2 := b.create(t, single("y"), createOpts{})
	c2 := b.claim(t, store.StepClaimParams{TaskIDs: []string{res2.Task.ID}})
	stale := outcome(c2.Steps[0], store.OutcomeComplete)
	stale.LeaseToken++
	stale.CustomEvents = []store.CustomEvent{{Name: "order.ghost", Payload: json.RawMessage(`{}`)}}
	b.complete(t, stale)
	for _, e := range b.history(t, res2.Task.ID) {
		if e.Name == "order.ghost" {
			t.Fatal("a discarded attempt's custom event was stored")
		}
	}
}

func testRescueExpired(t *testing.T, b *bundle) {
	res := b.create(t, single("x"), createOpts{})
	c := b.claim(t, store.StepClaimParams{Worker: "dead", LeaseTTL: 5 * time.Second})
	expiry := c.Steps[0].Step.LeaseExpiresAt
	r, err := b.s.StepRescue(b.ctx, &store.StepRescueParams{Now: expiry.Add(-time.Millisecond)})
	if err != nil || r.Count != 0 {
		t.Fatalf("rescue before expiry = %+v, %v", r, err)
	}
	r, err = b.s.StepRescue(b.ctx, &store.StepRescueParams{Now: expiry})
	if err != nil || r.Count != 1 {
		t.Fatalf("rescue at expiry = %+v, %v", r, err)
	}
	if r.Events[0].Name != event.StepRescued || r.Events[0].Metadata.Worker != "dead" {
		t.Fatalf("rescue event = %+v", r.Events[0])
	}
	if len(r.Ready) != 1 || !slices.Equal(r.Ready[0].Steps, []string{"x"}) {
		t.Fatalf("rescue ready = %+v", r.Ready)
	}
	st := b.steps(t, res.Task.ID)["x"]
	if st.State != lifecycle.StepPending || st.Attempts != 1 || st.LeaseOwner != "" || st.RunAt.IsZero() {
		t.Fatalf("rescued step = %+v", st)
	}
	again := b.claim(t, store.StepClaimParams{Worker: "alive", Now: expiry})
	if len(again.Steps) != 1 || again.Steps[0].Step.Attempts != 2 {
		t.Fatalf("reclaim after rescue = %v", claimedNames(again))
	}
}

func testRescueDeadOwner(t *testing.T, b *bundle) {
	b.create(t, shape{steps: []string{"x", "y"}, handler: map[string]string{"y": "other"}}, createOpts{})
	b.claim(t, store.StepClaimParams{Worker: "gone", Handlers: []string{"work"}})
	b.claim(t, store.StepClaimParams{Worker: "alive", Handlers: []string{"other"}})
	owners, err := b.s.StepLeaseOwners(b.ctx)
	slices.Sort(owners)
	if err != nil || !slices.Equal(owners, []string{"alive", "gone"}) {
		t.Fatalf("StepLeaseOwners = %v, %v", owners, err)
	}
	r, err := b.s.StepRescue(b.ctx, &store.StepRescueParams{Now: b.now, DeadOwners: []string{"gone"}})
	if err != nil || r.Count != 1 || r.Events[0].StepName != "x" {
		t.Fatalf("rescue of dead owner = %+v, %v", r, err)
	}
}

func testRescueExhausted(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"x"}, max: map[string]int{"x": 1}}, createOpts{})
	c := b.claim(t, store.StepClaimParams{})
	r, err := b.s.StepRescue(b.ctx, &store.StepRescueParams{Now: c.Steps[0].Step.LeaseExpiresAt})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Finalized) != 1 || r.Finalized[0].State != lifecycle.TaskError {
		t.Fatalf("finalized = %+v", r.Finalized)
	}
	st := b.steps(t, res.Task.ID)["x"]
	if st.State != lifecycle.StepError || st.ErrorClass != "lease_expired" {
		t.Fatalf("step = %+v", st)
	}
}

func testTaskCancel(t *testing.T, b *bundle) {
	res := b.create(t, diamond(), createOpts{})
	c := b.claim(t, store.StepClaimParams{})
	r, err := b.s.TaskCancel(b.ctx, &store.TaskCancelParams{TaskID: res.Task.ID, Reason: "customer asked", Now: b.now})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a:step.cancelled", "b:step.cancelled", "c:step.cancelled", "d:step.cancelled", "task:task.cancelled"}
	if diff := cmp.Diff(want, names(r.Events)); diff != "" {
		t.Fatalf("cancel events (-want +got):\n%s", diff)
	}
	if r.Events[4].Metadata.Reason != "customer asked" {
		t.Fatalf("reason = %q", r.Events[4].Metadata.Reason)
	}
	task := b.task(t, res.Task.ID)
	if task.State != lifecycle.TaskCancelled || task.StepsOpen != 0 || task.FinishedAt.IsZero() {
		t.Fatalf("task = %+v", task)
	}
	// The running step's late outcome is discarded.
	if late := b.complete(t, outcome(c.Steps[0], store.OutcomeComplete)); len(late.Stale) != 1 {
		t.Fatal("outcome of a cancelled step was applied")
	}
	if got := b.claim(t, store.StepClaimParams{}); len(got.Steps) != 0 {
		t.Fatal("claimed a step of a cancelled task")
	}
	// Cancelling again is a no-op.
	r, err = b.s.TaskCancel(b.ctx, &store.TaskCancelParams{TaskID: res.Task.ID, Now: b.now})
	if err != nil || len(r.Events) != 0 || r.Count != 0 {
		t.Fatalf("second cancel = %+v, %v; want no-op", r, err)
	}
	// A complete task cannot be cancelled.
	done := b.create(t, single("x"), createOpts{})
	cc := b.claim(t, store.StepClaimParams{TaskIDs: []string{done.Task.ID}})
	b.complete(t, outcome(cc.Steps[0], store.OutcomeComplete))
	if _, err := b.s.TaskCancel(b.ctx, &store.TaskCancelParams{TaskID: done.Task.ID, Now: b.now}); !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Fatalf("cancel complete task err = %v, want ErrInvalidTransition", err)
	}
}

func testTaskRetry(t *testing.T, b *bundle) {
	sh := shape{steps: []string{"a", "b"}, parents: map[string][]string{"b": {"a"}}, max: map[string]int{"a": 2}}
	res := b.create(t, sh, createOpts{})
	id := res.Task.ID
	if _, err := b.s.TaskRetry(b.ctx, &store.TaskRetryParams{TaskID: id, Now: b.now}); !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Fatalf("retry of in-progress task err = %v, want ErrInvalidTransition", err)
	}
	for range 2 {
		c := b.claim(t, store.StepClaimParams{})
		o := outcome(c.Steps[0], store.OutcomeFail)
		o.Error = "down"
		b.complete(t, o)
		if b.task(t, id).State == lifecycle.TaskError {
			break
		}
	}
	if task := b.task(t, id); task.State != lifecycle.TaskError {
		t.Fatalf("task = %s, want error", task.State)
	}
	r, err := b.s.TaskRetry(b.ctx, &store.TaskRetryParams{TaskID: id, Reason: "fixed the API", Now: b.tick(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"task:task.retry_requested", "a:step.retry_requested", "task:task.start_requested"}
	if diff := cmp.Diff(want, names(r.Events)); diff != "" {
		t.Fatalf("retry events (-want +got):\n%s", diff)
	}
	if len(r.Ready) != 1 || r.Ready[0].Steps[0] != "a" {
		t.Fatalf("ready = %+v", r.Ready)
	}
	a := b.steps(t, id)["a"]
	if a.State != lifecycle.StepPending || a.RetryLimit != a.Attempts+a.MaxAttempts {
		t.Fatalf("reset step = %+v; want a fresh budget", a)
	}
	c := b.claim(t, store.StepClaimParams{})
	b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	c = b.claim(t, store.StepClaimParams{})
	r2 := b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	if len(r2.Finalized) != 1 || r2.Finalized[0].State != lifecycle.TaskComplete {
		t.Fatalf("finalized after retry = %+v", r2.Finalized)
	}
	if _, err := b.s.TaskRetry(b.ctx, &store.TaskRetryParams{TaskID: id, Now: b.now}); !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Fatalf("retry of complete task err = %v, want ErrInvalidTransition", err)
	}
}

func testEventList(t *testing.T, b *bundle) {
	t1 := b.create(t, single("x"), createOpts{})
	t2 := b.create(t, single("y"), createOpts{})
	all, err := b.s.EventList(b.ctx, &store.EventListParams{})
	if err != nil || len(all) != 6 {
		t.Fatalf("EventList = %d, %v; want 6", len(all), err)
	}
	after, err := b.s.EventList(b.ctx, &store.EventListParams{After: all[2].Cursor})
	if err != nil || len(after) != 3 || after[0].Cursor != all[3].Cursor {
		t.Fatalf("EventList after cursor = %d, %v", len(after), err)
	}
	page, err := b.s.EventList(b.ctx, &store.EventListParams{Limit: 2})
	if err != nil || len(page) != 2 {
		t.Fatalf("EventList limit = %d, %v", len(page), err)
	}
	only2, err := b.s.EventList(b.ctx, &store.EventListParams{TaskID: t2.Task.ID})
	if err != nil || len(only2) != 3 {
		t.Fatalf("EventList by task = %d, %v", len(only2), err)
	}
	stepID := b.steps(t, t1.Task.ID)["x"].ID
	bystep, err := b.s.EventList(b.ctx, &store.EventListParams{StepID: stepID})
	if err != nil || len(bystep) != 1 || bystep[0].StepName != "x" {
		t.Fatalf("EventList by step = %d, %v", len(bystep), err)
	}
	c := b.claim(t, store.StepClaimParams{TaskIDs: []string{t1.Task.ID}})
	o := outcome(c.Steps[0], store.OutcomeComplete)
	o.CustomEvents = []store.CustomEvent{{Name: "x.done", Payload: json.RawMessage(`1`)}}
	b.complete(t, o)
	tr, err := b.s.EventList(b.ctx, &store.EventListParams{TaskID: t1.Task.ID, TransitionsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tr {
		if !e.IsTransition() {
			t.Fatal("TransitionsOnly returned a custom event")
		}
	}
	if len(tr) != 6 {
		t.Fatalf("transitions of t1 = %d, want 6 (init, step init, start, claim, complete, task complete)", len(tr))
	}
}

func testNextRunAt(t *testing.T, b *bundle) {
	if _, ok, err := b.s.StepNextRunAt(b.ctx, &store.StepNextRunAtParams{}); err != nil || ok {
		t.Fatalf("empty store: ok %v err %v", ok, err)
	}
	res := b.create(t, single("x"), createOpts{})
	at, ok, err := b.s.StepNextRunAt(b.ctx, &store.StepNextRunAtParams{})
	if err != nil || !ok || !at.Equal(b.now) {
		t.Fatalf("next run = %v %v %v; want now", at, ok, err)
	}
	if _, ok, _ := b.s.StepNextRunAt(b.ctx, &store.StepNextRunAtParams{Handlers: []string{"none"}}); ok {
		t.Fatal("handler filter ignored")
	}
	c := b.claim(t, store.StepClaimParams{})
	o := outcome(c.Steps[0], store.OutcomeRetry)
	o.NextAttemptAt = b.now.Add(time.Hour)
	b.complete(t, o)
	at, ok, err = b.s.StepNextRunAt(b.ctx, &store.StepNextRunAtParams{TaskIDs: []string{res.Task.ID}})
	if err != nil || !ok || !at.Equal(o.NextAttemptAt) {
		t.Fatalf("next run = %v %v %v; want the retry time", at, ok, err)
	}
}

func testLargeTask(t *testing.T, b *bundle) {
	// A chain head fanning out to 2,000 leaves that all join into one sink.
	const n = 2000
	sh := shape{steps: []string{"head"}, parents: map[string][]string{}}
	var leaves []string
	for i := range n {
		name := fmt.Sprintf("leaf%04d", i)
		sh.steps = append(sh.steps, name)
		sh.parents[name] = []string{"head"}
		leaves = append(leaves, name)
	}
	sh.steps = append(sh.steps, "sink")
	sh.parents["sink"] = leaves
	res := b.create(t, sh, createOpts{})
	if len(res.Events) != n+4 {
		t.Fatalf("create events = %d", len(res.Events))
	}
	// Every change's log entries, as the store returned them: they must
	// be the entries it stored, under the same cursors, even where a
	// store writes one change's entries in several statements.
	returned := slices.Clone(res.Events)
	c := b.claim(t, store.StepClaimParams{})
	returned = append(returned, c.Events...)
	r := b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	returned = append(returned, r.Events...)
	if len(r.Ready) != 1 || len(r.Ready[0].Steps) != n {
		t.Fatalf("ready after head = %d", len(r.Ready))
	}
	for {
		c = b.claim(t, store.StepClaimParams{Limit: 500})
		if len(c.Steps) == 0 {
			break
		}
		outs := make([]store.StepOutcome, len(c.Steps))
		for i, cs := range c.Steps {
			outs[i] = outcome(cs, store.OutcomeComplete)
		}
		returned = append(returned, c.Events...)
		returned = append(returned, b.complete(t, outs...).Events...)
	}
	if task := b.task(t, res.Task.ID); task.State != lifecycle.TaskComplete || task.StepsDone != n+2 {
		t.Fatalf("task = %s done %d", task.State, task.StepsDone)
	}
	entry := func(e *store.Event) string {
		return fmt.Sprintf("%d %s %s %s→%s", e.Cursor, e.StepName, e.Name, e.From, e.To)
	}
	var want, got []string
	for _, e := range returned {
		want = append(want, entry(e))
	}
	for _, e := range b.history(t, res.Task.ID) {
		got = append(got, entry(e))
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("returned log entries differ from stored ones (-returned +stored):\n%s", diff)
	}
}

func testRelease(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"x"}, max: map[string]int{"x": 1}}, createOpts{})
	c := b.claim(t, store.StepClaimParams{Worker: "stopping"})
	cs := c.Steps[0]
	lease := store.Lease{StepID: cs.Step.ID, LeaseToken: cs.Step.LeaseToken, Attempt: cs.Step.Attempts}
	wrong := lease
	wrong.LeaseToken++
	r, err := b.s.StepRelease(b.ctx, &store.StepReleaseParams{Worker: "stopping", Reason: "worker stopping", Leases: []store.Lease{wrong}, Now: b.now})
	if err != nil || r.Count != 0 {
		t.Fatalf("release with a stale lease = %+v, %v; want nothing released", r, err)
	}
	r, err = b.s.StepRelease(b.ctx, &store.StepReleaseParams{Worker: "stopping", Reason: "worker stopping", Leases: []store.Lease{lease}, Now: b.now})
	if err != nil || r.Count != 1 || r.Events[0].Name != event.StepRescued || r.Events[0].Metadata.Reason != "worker stopping" {
		t.Fatalf("release = %+v, %v", r, err)
	}
	st := b.steps(t, res.Task.ID)["x"]
	if st.State != lifecycle.StepPending || st.RetryLimit != 2 || st.Attempts != 1 {
		t.Fatalf("released step = %+v; want pending with the attempt refunded", st)
	}
	// The step had one attempt allowed; the interrupted one is not charged.
	again := b.claim(t, store.StepClaimParams{})
	o := outcome(again.Steps[0], store.OutcomeComplete)
	if r := b.complete(t, o); len(r.Finalized) != 1 || r.Finalized[0].State != lifecycle.TaskComplete {
		t.Fatalf("finalized = %+v", r.Finalized)
	}
}

func testOnCommit(t *testing.T, b *bundle) {
	var (
		mu      sync.Mutex
		changes []*store.ChangeResult
	)
	b.s.OnCommit(func(c *store.ChangeResult) {
		mu.Lock()
		changes = append(changes, c)
		mu.Unlock()
	})
	defer b.s.OnCommit(nil)
	res := b.create(t, diamond(), createOpts{})
	mu.Lock()
	if len(changes) != 1 || len(changes[0].Events) != len(res.Events) || len(changes[0].Ready) != 1 {
		t.Fatalf("after create: %d changes announced; want the create, before TaskCreate returned", len(changes))
	}
	mu.Unlock()
	// Many concurrent writers: announcements arrive in commit (cursor) order.
	b.template(t, "t1")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				r, err := b.s.TaskCreate(b.ctx, &store.TaskCreateParams{TemplateID: "t1", Namespace: "ns", Name: "tmpl-t1", Version: "1.0.0",
					Context: json.RawMessage(`{}`), Steps: []store.StepSpec{{Name: "x", Handler: "work", MaxAttempts: 1, Timeout: time.Second}}, Now: b.now})
				if err != nil {
					t.Errorf("TaskCreate: %v", err)
					return
				}
				c, err := b.s.StepClaim(b.ctx, &store.StepClaimParams{Worker: "w", Limit: 1, Now: b.now, LeaseToken: 9, LeaseTTL: time.Minute, TaskIDs: []string{r.Task.ID}})
				if err != nil || len(c.Steps) != 1 {
					t.Errorf("StepClaim: %v", err)
					return
				}
				if _, err := b.s.StepCompleteMany(b.ctx, &store.StepCompleteManyParams{Worker: "w", Now: b.now,
					Outcomes: []store.StepOutcome{outcome(c.Steps[0], store.OutcomeComplete)}}); err != nil {
					t.Errorf("StepCompleteMany: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	var last int64
	n := 0
	for _, c := range changes {
		for _, e := range c.Events {
			if e.Cursor <= last {
				t.Fatalf("announced cursor %d after %d: not in commit order", e.Cursor, last)
			}
			last = e.Cursor
			n++
		}
	}
	all, err := b.s.EventList(b.ctx, &store.EventListParams{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	before := len(changes)
	mu.Unlock()
	if n != len(all) {
		t.Fatalf("announced %d events, the log holds %d", n, len(all))
	}
	// A write that changes nothing announces nothing.
	if _, err := b.s.StepClaim(b.ctx, &store.StepClaimParams{Worker: "w", Limit: 5, Now: b.now, LeaseToken: 1, LeaseTTL: time.Minute, TaskIDs: []string{"00000000-0000-0000-0000-000000000000"}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != before {
		t.Fatal("an empty claim was announced")
	}
}

func testLeaseRenew(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"x", "y"}}, createOpts{})
	c := b.claim(t, store.StepClaimParams{Worker: "w1", LeaseTTL: 10 * time.Second})
	if len(c.Steps) != 2 {
		t.Fatalf("claimed %d", len(c.Steps))
	}
	lease := func(cs *store.ClaimedStep) store.Lease {
		return store.Lease{StepID: cs.Step.ID, LeaseToken: cs.Step.LeaseToken, Attempt: cs.Step.Attempts}
	}
	// x completes; y keeps running and renews.
	b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	later := b.now.Add(8 * time.Second)
	r, err := b.s.StepLeaseRenew(b.ctx, &store.StepLeaseRenewParams{Worker: "w1", Now: later, TTL: 10 * time.Second,
		Leases: []store.Lease{lease(c.Steps[0]), lease(c.Steps[1])}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Renewed, []store.Lease{lease(c.Steps[1])}) || !slices.Equal(r.Lost, []store.Lease{lease(c.Steps[0])}) {
		t.Fatalf("renew = %+v; want y renewed and the completed x lost", r)
	}
	y := b.steps(t, res.Task.ID)[c.Steps[1].Step.Name]
	if !y.LeaseExpiresAt.Equal(later.Add(10 * time.Second)) {
		t.Fatalf("renewed lease expires %v, want %v", y.LeaseExpiresAt, later.Add(10*time.Second))
	}
	// The original expiry has passed, the renewed one has not: no rescue.
	rs, err := b.s.StepRescue(b.ctx, &store.StepRescueParams{Now: b.now.Add(11 * time.Second)})
	if err != nil || rs.Count != 0 {
		t.Fatalf("rescue of a renewed lease = %+v, %v", rs, err)
	}
	// Another worker cannot renew it, and a wrong token is lost.
	r, err = b.s.StepLeaseRenew(b.ctx, &store.StepLeaseRenewParams{Worker: "w2", Now: later, TTL: time.Hour, Leases: []store.Lease{lease(c.Steps[1])}})
	if err != nil || len(r.Lost) != 1 {
		t.Fatalf("renew by another worker = %+v, %v", r, err)
	}
	// Once rescued, the first worker has lost it.
	if _, err := b.s.StepRescue(b.ctx, &store.StepRescueParams{Now: later.Add(11 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	r, err = b.s.StepLeaseRenew(b.ctx, &store.StepLeaseRenewParams{Worker: "w1", Now: later.Add(12 * time.Second), TTL: time.Minute, Leases: []store.Lease{lease(c.Steps[1])}})
	if err != nil || len(r.Lost) != 1 || len(r.Renewed) != 0 {
		t.Fatalf("renew after rescue = %+v, %v", r, err)
	}
}

func testLeader(t *testing.T, b *bundle) {
	p := func(holder string, at time.Time) *store.LeaderParams {
		return &store.LeaderParams{Name: "maintenance", Holder: holder, TTL: 10 * time.Second, Now: at}
	}
	acquire := func(holder string, at time.Time) bool {
		t.Helper()
		ok, err := b.s.LeaderAcquire(b.ctx, p(holder, at))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !acquire("a", b.now) {
		t.Fatal("first holder did not get the leadership")
	}
	if acquire("b", b.now.Add(5*time.Second)) {
		t.Fatal("second holder took an unexpired leadership")
	}
	if !acquire("a", b.now.Add(9*time.Second)) {
		t.Fatal("the leader could not extend its leadership")
	}
	if acquire("b", b.now.Add(18*time.Second)) {
		t.Fatal("the extension was not honoured")
	}
	if !acquire("b", b.now.Add(20*time.Second)) {
		t.Fatal("an expired leadership was not taken over")
	}
	if err := b.s.LeaderRelease(b.ctx, p("a", b.now)); err != nil {
		t.Fatal(err)
	}
	if acquire("a", b.now.Add(21*time.Second)) {
		t.Fatal("release by a non-holder freed the leadership")
	}
	if err := b.s.LeaderRelease(b.ctx, p("b", b.now)); err != nil {
		t.Fatal(err)
	}
	if !acquire("a", b.now.Add(22*time.Second)) {
		t.Fatal("a released leadership was not free")
	}
	// Concurrent candidates: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	at := b.now.Add(time.Hour)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := b.s.LeaderAcquire(b.ctx, &store.LeaderParams{Name: "race", Holder: fmt.Sprint("c", i), TTL: time.Minute, Now: at})
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				winners++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d concurrent candidates won, want 1", winners)
	}
}

func testDeleteFinished(t *testing.T, b *bundle) {
	old := b.create(t, single("x"), createOpts{})
	c := b.claim(t, store.StepClaimParams{})
	b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	failed := b.create(t, shape{steps: []string{"y"}, max: map[string]int{"y": 1}}, createOpts{})
	c = b.claim(t, store.StepClaimParams{})
	b.complete(t, outcome(c.Steps[0], store.OutcomeFail))
	b.tick(time.Hour)
	recent := b.create(t, single("z"), createOpts{})
	c = b.claim(t, store.StepClaimParams{})
	b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	running := b.create(t, single("w"), createOpts{})

	n, err := b.s.TaskDeleteFinished(b.ctx, &store.TaskDeleteFinishedParams{Before: b.now.Add(-time.Minute)})
	if err != nil || n != 1 {
		t.Fatalf("deleted %d, %v; want only the old complete task", n, err)
	}
	if _, err := b.s.TaskGet(b.ctx, old.Task.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old task still there: %v", err)
	}
	if evs := b.history(t, old.Task.ID); len(evs) != 0 {
		t.Fatalf("%d log entries of the deleted task remain", len(evs))
	}
	if steps, err := b.s.StepListByTask(b.ctx, old.Task.ID); err != nil || len(steps) != 0 {
		t.Fatalf("steps of the deleted task remain: %d, %v", len(steps), err)
	}
	for _, keep := range []string{failed.Task.ID, recent.Task.ID, running.Task.ID} {
		if _, err := b.s.TaskGet(b.ctx, keep); err != nil {
			t.Fatalf("task %s deleted: %v", keep, err)
		}
	}
}

func testTaskResolve(t *testing.T, b *bundle) {
	sh := shape{steps: []string{"a", "b"}, parents: map[string][]string{"b": {"a"}}, max: map[string]int{"a": 1}}
	res := b.create(t, sh, createOpts{})
	id := res.Task.ID
	if _, err := b.s.TaskResolve(b.ctx, &store.TaskRetryParams{TaskID: id, Now: b.now}); !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Fatalf("resolve of an in-progress task: err = %v, want ErrInvalidTransition", err)
	}
	c := b.claim(t, store.StepClaimParams{})
	b.complete(t, outcome(c.Steps[0], store.OutcomeFail))
	if task := b.task(t, id); task.State != lifecycle.TaskError {
		t.Fatalf("task = %s", task.State)
	}
	r, err := b.s.TaskResolve(b.ctx, &store.TaskRetryParams{TaskID: id, Reason: "refunded by hand", Actor: "ops", Now: b.now})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Events) != 1 || r.Events[0].Name != event.TaskResolvedManually || r.Events[0].Metadata.Actor != "ops" ||
		r.Events[0].Metadata.Reason != "refunded by hand" {
		t.Fatalf("resolve events = %+v", r.Events)
	}
	task := b.task(t, id)
	if task.State != lifecycle.TaskResolvedManually || task.FinishedAt.IsZero() {
		t.Fatalf("task = %+v", task)
	}
	steps := b.steps(t, id)
	if steps["a"].State != lifecycle.StepError || steps["b"].State != lifecycle.StepPending {
		t.Fatalf("steps changed: a=%s b=%s", steps["a"].State, steps["b"].State)
	}
	// Again is a no-op; the task is terminal.
	r, err = b.s.TaskResolve(b.ctx, &store.TaskRetryParams{TaskID: id, Now: b.now})
	if err != nil || len(r.Events) != 0 {
		t.Fatalf("second resolve = %+v, %v", r, err)
	}
	if _, err := b.s.TaskRetry(b.ctx, &store.TaskRetryParams{TaskID: id, Now: b.now}); !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Fatalf("retry of a resolved task: err = %v", err)
	}
}
