package storetest

import (
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/lifecycle"
	"github.com/tasker-go/tasker/internal/store"
)

// This file holds the conformance tests of the read side: task listings,
// the ready-queue depth, event log filters, tokens and Ping.

// cmpDiff is cmp.Diff where an empty slice equals a nil one.
func cmpDiff(want, got any) string { return gocmp.Diff(want, got, cmpopts.EquateEmpty()) }

func (b *bundle) list(t *testing.T, p store.TaskListParams) []string {
	t.Helper()
	if p.Limit == 0 {
		p.Limit = 1000
	}
	tasks, err := b.s.TaskList(b.ctx, &p)
	if err != nil {
		t.Fatalf("TaskList(%+v): %v", p, err)
	}
	ids := make([]string, len(tasks))
	for i, task := range tasks {
		ids[i] = task.ID
	}
	return ids
}

// reversed returns ids newest first, for tasks created in the order given
// at distinct times.
func reversed(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Reverse(out)
	return out
}

func testTaskListFilters(t *testing.T, b *bundle) {
	b.templateKey(t, "co1", "shop", "checkout", "1.0.0")
	b.templateKey(t, "co2", "shop", "checkout", "2.0.0")
	b.templateKey(t, "rf1", "shop", "refund", "1.0.0")
	b.templateKey(t, "ob1", "crm", "checkout", "1.0.0")
	start := b.now
	var co1, co2, rf1, ob1 []string
	times := []time.Time{}
	for range 2 {
		times = append(times, b.now)
		co1 = append(co1, b.create(t, single("x"), createOpts{template: "co1"}).Task.ID)
		b.tick(time.Second)
		co2 = append(co2, b.create(t, single("x"), createOpts{template: "co2"}).Task.ID)
		b.tick(time.Second)
		rf1 = append(rf1, b.create(t, single("x"), createOpts{template: "rf1"}).Task.ID)
		b.tick(time.Second)
		ob1 = append(ob1, b.create(t, single("x"), createOpts{template: "ob1"}).Task.ID)
		b.tick(time.Second)
	}
	all := reversed(co1[0], co2[0], rf1[0], ob1[0], co1[1], co2[1], rf1[1], ob1[1])
	if diff := cmpDiff(all, b.list(t, store.TaskListParams{})); diff != "" {
		t.Fatalf("unfiltered (-want +got):\n%s", diff)
	}

	// Finish some tasks at known times: co1[0] completes at f1, rf1[1]
	// fails at f2.
	f1 := b.tick(time.Minute)
	c := b.claim(t, store.StepClaimParams{TaskIDs: []string{co1[0]}})
	b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	f2 := b.tick(time.Minute)
	c = b.claim(t, store.StepClaimParams{TaskIDs: []string{rf1[1]}})
	fail := outcome(c.Steps[0], store.OutcomeFail)
	fail.Permanent = true
	b.complete(t, fail)

	tests := []struct {
		name string
		p    store.TaskListParams
		want []string
	}{
		{"namespace", store.TaskListParams{Namespace: "shop"}, reversed(co1[0], co2[0], rf1[0], co1[1], co2[1], rf1[1])},
		{"other namespace", store.TaskListParams{Namespace: "crm"}, reversed(ob1...)},
		{"name in every namespace", store.TaskListParams{Name: "checkout"}, reversed(co1[0], co2[0], ob1[0], co1[1], co2[1], ob1[1])},
		{"namespace and name", store.TaskListParams{Namespace: "shop", Name: "checkout"}, reversed(co1[0], co2[0], co1[1], co2[1])},
		{"template", store.TaskListParams{Namespace: "shop", Name: "checkout", Version: "2.0.0"}, reversed(co2...)},
		{"version in every template", store.TaskListParams{Version: "1.0.0"}, reversed(co1[0], rf1[0], ob1[0], co1[1], rf1[1], ob1[1])},
		{"no such template", store.TaskListParams{Namespace: "crm", Name: "refund"}, nil},
		{"created after, inclusive", store.TaskListParams{CreatedAfter: times[1]}, reversed(co1[1], co2[1], rf1[1], ob1[1])},
		{"created before, exclusive", store.TaskListParams{CreatedBefore: times[1]}, reversed(co1[0], co2[0], rf1[0], ob1[0])},
		{"created in a window", store.TaskListParams{CreatedAfter: start.Add(time.Second), CreatedBefore: times[1].Add(time.Second)},
			reversed(co2[0], rf1[0], ob1[0], co1[1])},
		{"empty window", store.TaskListParams{CreatedAfter: times[1], CreatedBefore: times[1]}, nil},
		{"finished after, inclusive", store.TaskListParams{FinishedAfter: f1}, reversed(co1[0], rf1[1])},
		{"finished later", store.TaskListParams{FinishedAfter: f2}, reversed(rf1[1])},
		{"finished after the last", store.TaskListParams{FinishedAfter: f2.Add(time.Microsecond)}, nil},
		{"state", store.TaskListParams{State: lifecycle.TaskError}, reversed(rf1[1])},
		{"state and namespace", store.TaskListParams{State: lifecycle.TaskInProgress, Namespace: "shop", Name: "refund"}, reversed(rf1[0])},
		{"namespace and window", store.TaskListParams{Namespace: "shop", CreatedBefore: times[1]}, reversed(co1[0], co2[0], rf1[0])},
		{"namespace and finished", store.TaskListParams{Namespace: "shop", Name: "checkout", FinishedAfter: start}, reversed(co1[0])},
		{"limit", store.TaskListParams{Namespace: "shop", Limit: 2}, reversed(co2[1], rf1[1])},
	}
	for _, tc := range tests {
		if diff := cmpDiff(tc.want, b.list(t, tc.p)); diff != "" {
			t.Errorf("%s: TaskList(%+v) (-want +got):\n%s", tc.name, tc.p, diff)
		}
	}
}

func testTaskListSearch(t *testing.T, b *bundle) {
	b.templateKey(t, "co1", "shop", "checkout", "1.0.0")
	b.templateKey(t, "ob1", "crm", "onboarding", "1.0.0")
	// Search strings hold letters that are not hex digits, so that they
	// cannot match a task id by chance.
	order := b.create(t, single("x"), createOpts{template: "co1", idempotency: "Order-XYZ-42"}).Task.ID
	b.tick(time.Second)
	promo := b.create(t, single("x"), createOpts{template: "co1", idempotency: "promo_50%"}).Task.ID
	b.tick(time.Second)
	user := b.create(t, single("x"), createOpts{template: "ob1", idempotency: "user-7"}).Task.ID
	b.tick(time.Second)
	plain := b.create(t, single("x"), createOpts{template: "ob1"}).Task.ID

	tests := []struct {
		name   string
		search string
		p      store.TaskListParams
		want   []string
	}{
		{"idempotency key, other case", "xyz-4", store.TaskListParams{}, []string{order}},
		{"idempotency key, upper case", "ORDER-xyz", store.TaskListParams{}, []string{order}},
		{"namespace", "SHO", store.TaskListParams{}, reversed(order, promo)},
		{"name", "boarding", store.TaskListParams{}, reversed(user, plain)},
		{"whole id", plain, store.TaskListParams{}, []string{plain}},
		{"id, upper case", strings.ToUpper(plain[len(plain)-12:]), store.TaskListParams{}, []string{plain}},
		{"underscore is literal", "_", store.TaskListParams{}, []string{promo}},
		{"percent is literal", "50%", store.TaskListParams{}, []string{promo}},
		{"backslash is literal", `\`, store.TaskListParams{}, nil},
		{"no match", "refund", store.TaskListParams{}, nil},
		{"with a filter", "-", store.TaskListParams{Namespace: "crm"}, reversed(user, plain)},
		{"with a state", "user", store.TaskListParams{State: lifecycle.TaskComplete}, nil},
	}
	for _, tc := range tests {
		tc.p.Search = tc.search
		if diff := cmpDiff(tc.want, b.list(t, tc.p)); diff != "" {
			t.Errorf("%s: search %q (-want +got):\n%s", tc.name, tc.search, diff)
		}
	}
}

func testTaskListPagination(t *testing.T, b *bundle) {
	b.templateKey(t, "a", "ns", "alpha", "1.0.0")
	b.templateKey(t, "z", "other", "zeta", "1.0.0")
	// 47 tasks in groups sharing a creation time: ties are broken by id.
	var tasks []*store.Task
	for i := range 47 {
		tmpl := "a"
		if i%3 == 0 {
			tmpl = "z"
		}
		tasks = append(tasks, b.create(t, single("x"), createOpts{template: tmpl}).Task)
		if i%5 == 4 {
			b.tick(time.Second)
		}
	}
	newestFirst := func(ts []*store.Task) []string {
		ts = slices.Clone(ts)
		slices.SortFunc(ts, func(x, y *store.Task) int {
			if c := y.CreatedAt.Compare(x.CreatedAt); c != 0 {
				return c
			}
			return cmp.Compare(y.ID, x.ID)
		})
		ids := make([]string, len(ts))
		for i, task := range ts {
			ids[i] = task.ID
		}
		return ids
	}
	page := func(p store.TaskListParams, size int) []string {
		t.Helper()
		var got []string
		p.Limit = size
		for n := 0; ; n++ {
			if n > 100 {
				t.Fatal("pagination does not end")
			}
			tasks, err := b.s.TaskList(b.ctx, &p)
			if err != nil {
				t.Fatal(err)
			}
			if len(tasks) > size {
				t.Fatalf("page of %d tasks, limit %d", len(tasks), size)
			}
			for _, task := range tasks {
				got = append(got, task.ID)
			}
			if len(tasks) < size {
				return got
			}
			last := tasks[len(tasks)-1]
			p.After = &store.TaskCursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
	}
	want := newestFirst(tasks)
	if diff := cmpDiff(want, b.list(t, store.TaskListParams{})); diff != "" {
		t.Fatalf("one page (-want +got):\n%s", diff)
	}
	for _, size := range []int{1, 3, 5, 7, 47, 50} {
		if diff := cmpDiff(want, page(store.TaskListParams{}, size)); diff != "" {
			t.Fatalf("pages of %d (-want +got):\n%s", size, diff)
		}
	}
	var alpha []*store.Task
	for _, task := range tasks {
		if task.Name == "alpha" {
			alpha = append(alpha, task)
		}
	}
	if diff := cmpDiff(newestFirst(alpha), page(store.TaskListParams{Namespace: "ns"}, 4)); diff != "" {
		t.Fatalf("filtered pages (-want +got):\n%s", diff)
	}
	// The page after a task starts strictly after it, also when the next
	// tasks share its creation time.
	i := slices.IndexFunc(want, func(id string) bool { return id == tasks[2].ID })
	after := b.list(t, store.TaskListParams{After: &store.TaskCursor{CreatedAt: tasks[2].CreatedAt, ID: tasks[2].ID}})
	if diff := cmpDiff(want[i+1:], after); diff != "" {
		t.Fatalf("after task %d (-want +got):\n%s", i, diff)
	}
	// A cursor between the tasks of one second continues by id.
	mid := &store.TaskCursor{CreatedAt: tasks[2].CreatedAt, ID: tasks[2].ID + "~"}
	if diff := cmpDiff(want[i:], b.list(t, store.TaskListParams{After: mid})); diff != "" {
		t.Fatalf("after a position between two ids (-want +got):\n%s", diff)
	}
	// The cursor of the last task ends the listing.
	last := tasks[slices.IndexFunc(tasks, func(task *store.Task) bool { return task.ID == want[len(want)-1] })]
	if got := b.list(t, store.TaskListParams{After: &store.TaskCursor{CreatedAt: last.CreatedAt, ID: last.ID}}); len(got) != 0 {
		t.Fatalf("after the oldest task: %d tasks", len(got))
	}
}

func testStepCountReady(t *testing.T, b *bundle) {
	count := func(at time.Time) int {
		t.Helper()
		n, err := b.s.StepCountReady(b.ctx, at)
		if err != nil {
			t.Fatalf("StepCountReady: %v", err)
		}
		return n
	}
	if n := count(b.now); n != 0 {
		t.Fatalf("empty store: %d ready", n)
	}
	res := b.create(t, diamond(), createOpts{})
	b.create(t, shape{steps: []string{"x", "y"}}, createOpts{})
	if n := count(b.now); n != 3 {
		t.Fatalf("ready after create = %d, want 3 (a, x, y)", n)
	}
	if n := count(b.now.Add(-time.Microsecond)); n != 0 {
		t.Fatalf("ready before the steps' run time = %d, want 0", n)
	}
	c := b.claim(t, store.StepClaimParams{TaskIDs: []string{res.Task.ID}})
	if n := count(b.now); n != 2 {
		t.Fatalf("ready after claiming a = %d, want 2", n)
	}
	o := outcome(c.Steps[0], store.OutcomeRetry)
	o.NextAttemptAt = b.now.Add(time.Hour)
	b.complete(t, o)
	if n := count(b.now); n != 2 {
		t.Fatalf("ready with a waiting for its retry = %d, want 2", n)
	}
	if n := count(o.NextAttemptAt); n != 3 {
		t.Fatalf("ready when a's retry is due = %d, want 3", n)
	}
	if _, err := b.s.TaskCancel(b.ctx, &store.TaskCancelParams{TaskID: res.Task.ID, Now: b.now}); err != nil {
		t.Fatal(err)
	}
	if n := count(o.NextAttemptAt); n != 2 {
		t.Fatalf("ready after cancelling the task = %d, want 2", n)
	}
}

// events reads the event log.
func (b *bundle) events(t *testing.T, p store.EventListParams) []*store.Event {
	t.Helper()
	evs, err := b.s.EventList(b.ctx, &p)
	if err != nil {
		t.Fatalf("EventList(%+v): %v", p, err)
	}
	return evs
}

func cursors(evs []*store.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Cursor
	}
	return out
}

// filter returns the events of all that keep returns true for.
func filter(all []*store.Event, keep func(e *store.Event) bool) []int64 {
	var out []int64
	for _, e := range all {
		if keep(e) {
			out = append(out, e.Cursor)
		}
	}
	return out
}

func testEventListTemplateFilters(t *testing.T, b *bundle) {
	b.templateKey(t, "co1", "shop", "checkout", "1.0.0")
	b.templateKey(t, "rf1", "shop", "refund", "1.0.0")
	b.templateKey(t, "co9", "crm", "checkout", "1.0.0")
	co := b.create(t, single("x"), createOpts{template: "co1"})
	b.create(t, single("x"), createOpts{template: "rf1"})
	b.create(t, single("x"), createOpts{template: "co9"})
	c := b.claim(t, store.StepClaimParams{TaskIDs: []string{co.Task.ID}})
	o := outcome(c.Steps[0], store.OutcomeComplete)
	o.CustomEvents = []store.CustomEvent{{Name: "order.placed", Payload: json.RawMessage(`{}`)}}
	b.complete(t, o)
	all := b.events(t, store.EventListParams{})

	tests := []struct {
		name string
		p    store.EventListParams
		keep func(e *store.Event) bool
	}{
		{"namespace", store.EventListParams{Namespace: "shop"}, func(e *store.Event) bool { return e.Namespace == "shop" }},
		{"task name", store.EventListParams{TaskName: "checkout"}, func(e *store.Event) bool { return e.TaskName == "checkout" }},
		{"namespace and task name", store.EventListParams{Namespace: "shop", TaskName: "checkout"},
			func(e *store.Event) bool { return e.TaskID == co.Task.ID }},
		{"no such template", store.EventListParams{Namespace: "crm", TaskName: "refund"}, func(*store.Event) bool { return false }},
		{"namespace, transitions only", store.EventListParams{Namespace: "shop", TransitionsOnly: true},
			func(e *store.Event) bool { return e.Namespace == "shop" && e.IsTransition() }},
		{"namespace after a cursor", store.EventListParams{Namespace: "shop", After: all[3].Cursor},
			func(e *store.Event) bool { return e.Namespace == "shop" && e.Cursor > all[3].Cursor }},
		{"task and namespace", store.EventListParams{TaskID: co.Task.ID, Namespace: "crm"}, func(*store.Event) bool { return false }},
	}
	for _, tc := range tests {
		if diff := cmpDiff(filter(all, tc.keep), cursors(b.events(t, tc.p))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	// The limit counts matching events.
	want := filter(all, func(e *store.Event) bool { return e.TaskName == "checkout" })
	if got := cursors(b.events(t, store.EventListParams{TaskName: "checkout", Limit: 4})); !slices.Equal(got, want[:4]) {
		t.Fatalf("limited = %v, want %v", got, want[:4])
	}
}

func testEventListNames(t *testing.T, b *bundle) {
	res := b.create(t, shape{steps: []string{"x", "y"}}, createOpts{})
	c := b.claim(t, store.StepClaimParams{})
	o := outcome(c.Steps[0], store.OutcomeComplete)
	o.CustomEvents = []store.CustomEvent{
		{Name: "order.placed", Payload: json.RawMessage(`1`)},
		{Name: "order.item.added", Payload: json.RawMessage(`2`)},
		{Name: "orderaitem.added", Payload: json.RawMessage(`3`)},
		{Name: "order_item.removed", Payload: json.RawMessage(`4`)},
		{Name: "steps.counted", Payload: json.RawMessage(`5`)},
	}
	b.complete(t, o)
	fail := outcome(c.Steps[1], store.OutcomeFail)
	fail.Permanent = true
	b.complete(t, fail)
	all := b.events(t, store.EventListParams{})
	if len(all) != 14 {
		t.Fatalf("%d events", len(all))
	}
	named := func(names ...string) func(e *store.Event) bool {
		return func(e *store.Event) bool { return slices.Contains(names, string(e.Name)) }
	}
	prefixed := func(prefixes ...string) func(e *store.Event) bool {
		return func(e *store.Event) bool {
			for _, p := range prefixes {
				if strings.HasPrefix(string(e.Name), p) {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		name  string
		names []string
		keep  func(e *store.Event) bool
	}{
		{"exact", []string{string(event.StepCompleted)}, named(string(event.StepCompleted))},
		{"several exact", []string{string(event.TaskFailed), "order.placed"}, named(string(event.TaskFailed), "order.placed")},
		{"prefix", []string{"step.*"}, prefixed("step.")},
		{"prefix of custom events", []string{"order.*"}, prefixed("order.")},
		{"nested prefix", []string{"order.item.*"}, named("order.item.added")},
		{"underscore is literal", []string{"order_item.*"}, named("order_item.removed")},
		{"prefixes and names", []string{"task.*", "order.placed", "steps.*"},
			func(e *store.Event) bool { return prefixed("task.", "steps.")(e) || e.Name == "order.placed" }},
		{"exact is not a prefix", []string{"step"}, func(*store.Event) bool { return false }},
		{"case matters", []string{"STEP.*", "Order.placed"}, func(*store.Event) bool { return false }},
	}
	for _, tc := range tests {
		if diff := cmpDiff(filter(all, tc.keep), cursors(b.events(t, store.EventListParams{Names: tc.names}))); diff != "" {
			t.Errorf("%s: names %q (-want +got):\n%s", tc.name, tc.names, diff)
		}
	}
	// Combined with the other filters, and the limit counts matching events.
	steps := filter(all, prefixed("step."))
	got := cursors(b.events(t, store.EventListParams{TaskID: res.Task.ID, Names: []string{"step.*"}, After: steps[0], Limit: 3}))
	if !slices.Equal(got, steps[1:4]) {
		t.Fatalf("step events after %d, limit 3 = %v, want %v", steps[0], got, steps[1:4])
	}
	got = cursors(b.events(t, store.EventListParams{Names: []string{"order.*"}, TransitionsOnly: true}))
	if len(got) != 0 {
		t.Fatalf("custom names with TransitionsOnly = %v", got)
	}
	for _, bad := range [][]string{{""}, {"*"}, {"step*"}, {"*.completed"}} {
		if _, err := b.s.EventList(b.ctx, &store.EventListParams{Names: bad}); err == nil {
			t.Errorf("bad pattern %q accepted", bad)
		}
	}
}

func testEventListSince(t *testing.T, b *bundle) {
	first := b.create(t, single("x"), createOpts{})
	mid := b.tick(time.Minute)
	second := b.create(t, single("y"), createOpts{})
	b.tick(time.Minute)
	c := b.claim(t, store.StepClaimParams{TaskIDs: []string{first.Task.ID}})
	b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	all := b.events(t, store.EventListParams{})
	tests := []struct {
		name string
		p    store.EventListParams
		keep func(e *store.Event) bool
	}{
		{"since, inclusive", store.EventListParams{Since: mid}, func(e *store.Event) bool { return !e.OccurredAt.Before(mid) }},
		{"since, later", store.EventListParams{Since: mid.Add(time.Microsecond)},
			func(e *store.Event) bool { return e.OccurredAt.After(mid) }},
		{"since and task", store.EventListParams{Since: mid, TaskID: first.Task.ID},
			func(e *store.Event) bool { return e.TaskID == first.Task.ID && !e.OccurredAt.Before(mid) }},
		{"since and names", store.EventListParams{Since: mid, Names: []string{"task.*"}},
			func(e *store.Event) bool {
				return strings.HasPrefix(string(e.Name), "task.") && !e.OccurredAt.Before(mid)
			}},
		{"since the future", store.EventListParams{Since: b.now.Add(time.Hour)}, func(*store.Event) bool { return false }},
	}
	for _, tc := range tests {
		want := filter(all, tc.keep)
		if len(want) == 0 && tc.name != "since the future" {
			t.Fatalf("%s: the fixture has no matching event", tc.name)
		}
		if diff := cmpDiff(want, cursors(b.events(t, tc.p))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	_ = second
}

func testTokens(t *testing.T, b *bundle) {
	create := func(p store.TokenCreateParams) *store.Token {
		t.Helper()
		tok, err := b.s.TokenCreate(b.ctx, &p)
		if err != nil {
			t.Fatalf("TokenCreate(%s): %v", p.ID, err)
		}
		return tok
	}
	expires := b.now.Add(30 * 24 * time.Hour)
	admin := create(store.TokenCreateParams{ID: "tok-1", Name: "ci", Role: "admin", Hash: "h1", Now: b.now})
	b.tick(time.Second)
	viewer := create(store.TokenCreateParams{ID: "tok-2", Name: "dashboard", Role: "viewer", Namespace: "shop", Hash: "h2",
		ExpiresAt: expires, Now: b.now})
	b.tick(time.Second)
	op := create(store.TokenCreateParams{ID: "tok-3", Name: "oncall", Role: "operator", Hash: "h3", Now: b.now})
	want := &store.Token{ID: "tok-2", Name: "dashboard", Role: "viewer", Namespace: "shop", Hash: "h2",
		CreatedAt: b.now.Add(-time.Second), ExpiresAt: expires}
	if diff := cmpDiff(want, viewer); diff != "" {
		t.Fatalf("created token (-want +got):\n%s", diff)
	}
	if !admin.ExpiresAt.IsZero() || !admin.RevokedAt.IsZero() || admin.Namespace != "" {
		t.Fatalf("token without expiry or namespace = %+v", admin)
	}
	got, err := b.s.TokenGetByHash(b.ctx, "h2")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmpDiff(want, got); diff != "" {
		t.Fatalf("TokenGetByHash (-want +got):\n%s", diff)
	}
	if _, err := b.s.TokenGetByHash(b.ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TokenGetByHash(unknown) err = %v, want ErrNotFound", err)
	}
	list, err := b.s.TokenList(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmpDiff([]*store.Token{op, viewer, admin}, list); diff != "" {
		t.Fatalf("TokenList, newest first (-want +got):\n%s", diff)
	}
	// Ids and hashes are unique.
	for _, p := range []store.TokenCreateParams{
		{ID: "tok-1", Name: "again", Role: "admin", Hash: "h9", Now: b.now},
		{ID: "tok-9", Name: "again", Role: "admin", Hash: "h1", Now: b.now},
	} {
		if _, err := b.s.TokenCreate(b.ctx, &p); !errors.Is(err, store.ErrConflict) {
			t.Errorf("TokenCreate(%s, %s) err = %v, want ErrConflict", p.ID, p.Hash, err)
		}
	}
	for _, p := range []store.TokenCreateParams{
		{Name: "x", Role: "admin", Hash: "h8", Now: b.now},
		{ID: "tok-8", Role: "admin", Hash: "h8", Now: b.now},
		{ID: "tok-8", Name: "x", Hash: "h8", Now: b.now},
		{ID: "tok-8", Name: "x", Role: "admin", Now: b.now},
		{ID: "tok-8", Name: "x", Role: "admin", Hash: "h8"},
	} {
		if _, err := b.s.TokenCreate(b.ctx, &p); err == nil {
			t.Errorf("TokenCreate(%+v) accepted", p)
		}
	}
	if list, err := b.s.TokenList(b.ctx); err != nil || len(list) != 3 {
		t.Fatalf("tokens after rejected creates = %d, %v; want 3", len(list), err)
	}
}

func testTokenRevoke(t *testing.T, b *bundle) {
	if list, err := b.s.TokenList(b.ctx); err != nil || len(list) != 0 {
		t.Fatalf("TokenList of an empty store = %v, %v", list, err)
	}
	if _, err := b.s.TokenCreate(b.ctx, &store.TokenCreateParams{ID: "tok-1", Name: "ci", Role: "admin", Hash: "h1", Now: b.now}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.s.TokenCreate(b.ctx, &store.TokenCreateParams{ID: "tok-2", Name: "other", Role: "admin", Hash: "h2", Now: b.now}); err != nil {
		t.Fatal(err)
	}
	first := b.tick(time.Hour)
	tok, err := b.s.TokenRevoke(b.ctx, "tok-1", first)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.RevokedAt.Equal(first) || tok.ID != "tok-1" || tok.Hash != "h1" {
		t.Fatalf("revoked token = %+v", tok)
	}
	// Revoking again keeps the first revocation time.
	tok, err = b.s.TokenRevoke(b.ctx, "tok-1", b.tick(time.Hour))
	if err != nil || !tok.RevokedAt.Equal(first) {
		t.Fatalf("second revoke = %+v, %v; want revoked at %v", tok, err, first)
	}
	stored, err := b.s.TokenGetByHash(b.ctx, "h1")
	if err != nil || !stored.RevokedAt.Equal(first) {
		t.Fatalf("stored revoked token = %+v, %v", stored, err)
	}
	if other, err := b.s.TokenGetByHash(b.ctx, "h2"); err != nil || !other.RevokedAt.IsZero() {
		t.Fatalf("revoking one token touched another: %+v, %v", other, err)
	}
	if _, err := b.s.TokenRevoke(b.ctx, "nope", b.now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TokenRevoke(unknown) err = %v, want ErrNotFound", err)
	}
}

func testPing(t *testing.T, b *bundle) {
	if err := b.s.Ping(b.ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testEventCursorAt(t *testing.T, b *bundle) {
	if c, err := b.s.EventCursorAt(b.ctx, b.now); err != nil || c != 0 {
		t.Fatalf("empty log: cursor %d, %v; want 0", c, err)
	}
	first := b.create(t, single("x"), createOpts{})
	start := b.tick(time.Hour)
	second := b.create(t, single("y"), createOpts{})
	c, err := b.s.EventCursorAt(b.ctx, start)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := b.s.EventList(b.ctx, &store.EventListParams{After: c, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 || evs[0].TaskID != second.Task.ID {
		t.Fatalf("reading after the cursor for %v starts at %+v; want the second task's first event", start, evs)
	}
	for _, e := range evs {
		if e.TaskID == first.Task.ID {
			t.Fatal("an event from before the time was read")
		}
	}
	last := second.Events[len(second.Events)-1].Cursor
	if c, err := b.s.EventCursorAt(b.ctx, start.Add(time.Hour)); err != nil || c != last {
		t.Fatalf("cursor after every event = %d, %v; want the last cursor %d", c, err, last)
	}
}

// testStateCounts counts tasks and steps by state, per namespace.
func testStateCounts(t *testing.T, b *bundle) {
	b.templateKey(t, "other", "other", "flow", "1.0.0")
	b.create(t, diamond(), createOpts{})
	b.create(t, single("a"), createOpts{})
	b.create(t, single("x"), createOpts{template: "other"})
	c := b.claim(t, store.StepClaimParams{Limit: 1})
	b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
	all, err := b.s.StateCounts(b.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if all.Tasks[lifecycle.TaskInProgress]+all.Tasks[lifecycle.TaskComplete] != 3 {
		t.Fatalf("task counts = %v", all.Tasks)
	}
	steps := 0
	for _, n := range all.Steps {
		steps += n
	}
	if steps != 6 || all.Steps[lifecycle.StepComplete] != 1 {
		t.Fatalf("step counts = %v", all.Steps)
	}
	other, err := b.s.StateCounts(b.ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	otherSteps := 0
	for _, n := range other.Steps {
		otherSteps += n
	}
	otherTasks := 0
	for _, n := range other.Tasks {
		otherTasks += n
	}
	if otherTasks != 1 || otherSteps != 1 {
		t.Fatalf("counts of namespace other = %v, %v", other.Tasks, other.Steps)
	}
	none, _ := b.s.StateCounts(b.ctx, "nobody")
	if len(none.Tasks) != 0 || len(none.Steps) != 0 {
		t.Fatalf("counts of an empty namespace = %v", none)
	}
}

// testEventCursorAtSearch checks EventCursorAt over a log with gaps (the
// tasks that retention deleted) and with times out of cursor order by less
// than store.EventCursorSlack: for every time, no entry of that time or
// later comes at or before the cursor, and every entry after it is at
// most the slack older than the time.
func testEventCursorAtSearch(t *testing.T, b *bundle) {
	base := b.now
	const n = 40
	for i := range n {
		at := base.Add(time.Duration(i) * 10 * time.Minute)
		if i%5 == 4 {
			// Out of order: taken 40 s before the previous task's time.
			at = base.Add(time.Duration(i-1)*10*time.Minute - 40*time.Second)
		}
		b.tick(at.Sub(b.now))
		res := b.create(t, single("x"), createOpts{})
		if i%3 == 0 {
			c := b.claim(t, store.StepClaimParams{TaskIDs: []string{res.Task.ID}})
			if len(c.Steps) != 1 {
				t.Fatalf("task %d: claimed %d steps", i, len(c.Steps))
			}
			b.complete(t, outcome(c.Steps[0], store.OutcomeComplete))
		}
	}
	// Delete the finished tasks of the first half: gaps in the cursors.
	b.tick(base.Add(n * 10 * time.Minute).Sub(b.now))
	if _, err := b.s.TaskDeleteFinished(b.ctx, &store.TaskDeleteFinishedParams{Before: base.Add(n / 2 * 10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	all := b.events(t, store.EventListParams{Limit: 10000})
	if len(all) < n {
		t.Fatalf("%d log entries, want at least %d", len(all), n)
	}
	check := func(at time.Time) {
		t.Helper()
		c, err := b.s.EventCursorAt(b.ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		first := -1
		for i, e := range all {
			if e.Cursor <= c && !e.OccurredAt.Before(at) {
				t.Fatalf("cursor at %v is %d, but entry %d (%s) occurred at %v", at.Sub(base), c, e.Cursor, e.Name, e.OccurredAt.Sub(base))
			}
			if e.Cursor > c && first < 0 {
				first = i
			}
		}
		if first < 0 {
			if last := all[len(all)-1].Cursor; c != last {
				t.Fatalf("cursor at %v is %d; want the last cursor %d", at.Sub(base), c, last)
			}
			return
		}
		for _, e := range all[first:] {
			if e.OccurredAt.Before(at.Add(-store.EventCursorSlack)) {
				t.Fatalf("cursor at %v is %d, before entry %d, which occurred at %v: more than the slack early", at.Sub(base), c, e.Cursor, e.OccurredAt.Sub(base))
			}
		}
	}
	check(base.Add(-time.Hour))
	for _, e := range all {
		check(e.OccurredAt)
		check(e.OccurredAt.Add(time.Microsecond))
		check(e.OccurredAt.Add(-5 * time.Minute))
	}
	check(base.Add(100 * time.Hour))
}
