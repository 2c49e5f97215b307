package store

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tasker-go/tasker/internal/lifecycle"
)

// The expected outcomes are written out by hand from the seam's contract
// (store.go): every (action, step state, task state) triple not listed as
// allowed or no-op must be rejected with ErrInvalidTransition.
func TestPlanStepActionEveryTriple(t *testing.T) {
	t.Parallel()
	type key struct {
		a    StepAction
		step lifecycle.StepState
		task lifecycle.TaskState
	}
	const (
		plain = iota + 1
		noop
		resume
		resumeIfProgress
	)
	want := map[key]int{}
	allow := func(a StepAction, steps []lifecycle.StepState, task lifecycle.TaskState, outcome int) {
		for _, s := range steps {
			want[key{a, s, task}] = outcome
		}
	}
	// Reset: only error → pending; the task resumes when it is in error.
	allow(ActionReset, []lifecycle.StepState{lifecycle.StepError}, lifecycle.TaskInProgress, plain)
	allow(ActionReset, []lifecycle.StepState{lifecycle.StepError}, lifecycle.TaskError, resume)
	// Resolve: pending, waiting_for_retry, error → resolved_manually.
	resolvable := []lifecycle.StepState{lifecycle.StepPending, lifecycle.StepWaitingForRetry, lifecycle.StepError}
	allow(ActionResolve, resolvable, lifecycle.TaskInProgress, plain)
	allow(ActionResolve, resolvable, lifecycle.TaskError, resumeIfProgress)
	// Cancel: any non-terminal state → cancelled; a task in error stays so.
	cancellable := []lifecycle.StepState{lifecycle.StepPending, lifecycle.StepInProgress, lifecycle.StepWaitingForRetry, lifecycle.StepError}
	allow(ActionCancel, cancellable, lifecycle.TaskInProgress, plain)
	allow(ActionCancel, cancellable, lifecycle.TaskError, plain)
	// Asking for the state the step is in is a no-op, whatever the task.
	for _, task := range lifecycle.TaskStates() {
		allow(ActionReset, []lifecycle.StepState{lifecycle.StepPending}, task, noop)
		allow(ActionResolve, []lifecycle.StepState{lifecycle.StepResolvedManually}, task, noop)
		allow(ActionCancel, []lifecycle.StepState{lifecycle.StepCancelled}, task, noop)
	}

	checked := 0
	for _, a := range []StepAction{ActionReset, ActionResolve, ActionCancel} {
		for _, step := range lifecycle.StepStates() {
			for _, task := range lifecycle.TaskStates() {
				checked++
				got, err := PlanStepAction(a, step, task)
				var wantPlan StepActionPlan
				switch want[key{a, step, task}] {
				case 0:
					if !errors.Is(err, lifecycle.ErrInvalidTransition) {
						t.Errorf("%s of a %s step in a %s task = %+v, %v; want ErrInvalidTransition", a, step, task, got, err)
					}
					continue
				case noop:
					wantPlan = StepActionPlan{NoOp: true}
				case resume:
					wantPlan = StepActionPlan{Resume: true}
				case resumeIfProgress:
					wantPlan = StepActionPlan{ResumeIfProgress: true}
				}
				if err != nil || got != wantPlan {
					t.Errorf("%s of a %s step in a %s task = %+v, %v; want %+v", a, step, task, got, err, wantPlan)
				}
			}
		}
	}
	if checked != 3*7*6 {
		t.Fatalf("checked %d triples, want %d", checked, 3*7*6)
	}
	if _, err := PlanStepAction(StepAction(0), lifecycle.StepError, lifecycle.TaskError); err == nil {
		t.Error("an unknown action was planned")
	}
}

func TestStepActionTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a    StepAction
		to   lifecycle.StepState
		name string
	}{
		{ActionReset, lifecycle.StepPending, "reset"},
		{ActionResolve, lifecycle.StepResolvedManually, "resolve"},
		{ActionCancel, lifecycle.StepCancelled, "cancel"},
		{StepAction(9), "", "StepAction(9)"},
	}
	for _, tc := range tests {
		if got := tc.a.Target(); got != tc.to {
			t.Errorf("%s.Target() = %q, want %q", tc.name, got, tc.to)
		}
		if got := tc.a.String(); got != tc.name {
			t.Errorf("String() = %q, want %q", got, tc.name)
		}
	}
}

func TestResolveResumes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name               string
		ready, done, total int
		want               bool
	}{
		{"children became ready", 2, 1, 4, true},
		{"one child became ready", 1, 3, 4, true},
		{"every step done", 0, 4, 4, true},
		{"single step task resolved", 0, 1, 1, true},
		{"nothing ready, steps left", 0, 3, 4, false},
		{"a sibling still failed", 0, 1, 3, false},
	}
	for _, tc := range tests {
		if got := ResolveResumes(tc.ready, tc.done, tc.total); got != tc.want {
			t.Errorf("%s: ResolveResumes(%d, %d, %d) = %v, want %v", tc.name, tc.ready, tc.done, tc.total, got, tc.want)
		}
	}
}

func TestNamePatterns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in              []string
		exact, prefixes []string
		err             bool
	}{
		{in: nil},
		{in: []string{"step.completed"}, exact: []string{"step.completed"}},
		{in: []string{"step.*"}, prefixes: []string{"step."}},
		{in: []string{"task.failed", "workflow.*", "order.placed", "order.item.*"},
			exact: []string{"task.failed", "order.placed"}, prefixes: []string{"workflow.", "order.item."}},
		{in: []string{""}, err: true},
		{in: []string{"*"}, err: true},
		{in: []string{".*"}, err: true},
		{in: []string{"step*"}, err: true},
		{in: []string{"*.completed"}, err: true},
		{in: []string{"a.*.*"}, err: true},
		{in: []string{"step.completed", "st*ep.*"}, err: true},
	}
	for _, tc := range tests {
		exact, prefixes, err := NamePatterns(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("NamePatterns(%q) err = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !slices.Equal(exact, tc.exact) || !slices.Equal(prefixes, tc.prefixes) {
			t.Errorf("NamePatterns(%q) = %q, %q; want %q, %q", tc.in, exact, prefixes, tc.exact, tc.prefixes)
		}
	}
}

func TestEscapeLike(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"order-42", "order-42"},
		{"100%", `100\%`},
		{"a_b", `a\_b`},
		{`c:\tmp`, `c:\\tmp`},
		{`%_\`, `\%\_\\`},
	}
	for _, tc := range tests {
		if got := EscapeLike(tc.in); got != tc.want {
			t.Errorf("EscapeLike(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValidateTokenCreate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	valid := TokenCreateParams{ID: "tok", Name: "ci", Role: "admin", Hash: "ab12", Now: now}
	tests := []struct {
		name string
		edit func(p *TokenCreateParams)
		ok   bool
	}{
		{"valid", func(*TokenCreateParams) {}, true},
		{"with namespace and expiry", func(p *TokenCreateParams) { p.Namespace, p.ExpiresAt = "shop", now.Add(time.Hour) }, true},
		{"no id", func(p *TokenCreateParams) { p.ID = "" }, false},
		{"no name", func(p *TokenCreateParams) { p.Name = "" }, false},
		{"no role", func(p *TokenCreateParams) { p.Role = "" }, false},
		{"no hash", func(p *TokenCreateParams) { p.Hash = "" }, false},
		{"no time", func(p *TokenCreateParams) { p.Now = time.Time{} }, false},
	}
	for _, tc := range tests {
		p := valid
		tc.edit(&p)
		if err := ValidateTokenCreate(&p); (err == nil) != tc.ok {
			t.Errorf("%s: ValidateTokenCreate = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
