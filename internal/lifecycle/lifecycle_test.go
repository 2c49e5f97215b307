package lifecycle

import (
	"errors"
	"testing"

	"github.com/tasker-go/tasker/internal/event"
)

// The expected tables are written out by hand from DESIGN §3, not derived
// from the implementation: every pair not listed must be rejected.
func TestTaskTransitionsEveryPair(t *testing.T) {
	t.Parallel()
	allowed := map[[2]TaskState]event.Name{
		{"", TaskPending}:                 event.TaskInitializeRequested,
		{TaskPending, TaskInProgress}:     event.TaskStartRequested,
		{TaskPending, TaskCancelled}:      event.TaskCancelled,
		{TaskInProgress, TaskComplete}:    event.TaskCompleted,
		{TaskInProgress, TaskError}:       event.TaskFailed,
		{TaskInProgress, TaskCancelled}:   event.TaskCancelled,
		{TaskError, TaskPending}:          event.TaskRetryRequested,
		{TaskError, TaskResolvedManually}: event.TaskResolvedManually,
	}
	froms := append([]TaskState{""}, TaskStates()...)
	checked := 0
	for _, from := range froms {
		for _, to := range TaskStates() {
			d, err := Task(from, to)
			want, ok := allowed[[2]TaskState{from, to}]
			switch {
			case from == to:
				if err != nil || !d.NoOp || d.Event != "" {
					t.Errorf("Task(%q, %q) = %+v, %v; want no-op", from, to, d, err)
				}
			case ok:
				if err != nil || d.NoOp || d.Event != want {
					t.Errorf("Task(%q, %q) = %+v, %v; want event %s", from, to, d, err, want)
				}
			default:
				if !errors.Is(err, ErrInvalidTransition) {
					t.Errorf("Task(%q, %q) = %+v, %v; want ErrInvalidTransition", from, to, d, err)
				}
			}
			checked++
		}
	}
	if checked != 7*6 {
		t.Fatalf("checked %d pairs, want %d", checked, 7*6)
	}
}

func TestStepTransitionsEveryPair(t *testing.T) {
	t.Parallel()
	allowed := map[[2]StepState]event.Name{
		{"", StepPending}:                           event.StepInitializeRequested,
		{StepPending, StepInProgress}:               event.StepExecutionRequested,
		{StepPending, StepResolvedManually}:         event.StepResolvedManually,
		{StepPending, StepCancelled}:                event.StepCancelled,
		{StepInProgress, StepComplete}:              event.StepCompleted,
		{StepInProgress, StepWaitingForRetry}:       event.StepAttemptFailed,
		{StepInProgress, StepError}:                 event.StepFailed,
		{StepInProgress, StepPending}:               event.StepRescued,
		{StepInProgress, StepCancelled}:             event.StepCancelled,
		{StepWaitingForRetry, StepInProgress}:       event.StepExecutionRequested,
		{StepWaitingForRetry, StepResolvedManually}: event.StepResolvedManually,
		{StepWaitingForRetry, StepCancelled}:        event.StepCancelled,
		{StepError, StepPending}:                    event.StepRetryRequested,
		{StepError, StepResolvedManually}:           event.StepResolvedManually,
		{StepError, StepCancelled}:                  event.StepCancelled,
	}
	froms := append([]StepState{""}, StepStates()...)
	checked := 0
	for _, from := range froms {
		for _, to := range StepStates() {
			d, err := Step(from, to)
			want, ok := allowed[[2]StepState{from, to}]
			switch {
			case from == to:
				if err != nil || !d.NoOp || d.Event != "" {
					t.Errorf("Step(%q, %q) = %+v, %v; want no-op", from, to, d, err)
				}
			case ok:
				if err != nil || d.NoOp || d.Event != want {
					t.Errorf("Step(%q, %q) = %+v, %v; want event %s", from, to, d, err, want)
				}
			default:
				if !errors.Is(err, ErrInvalidTransition) {
					t.Errorf("Step(%q, %q) = %+v, %v; want ErrInvalidTransition", from, to, d, err)
				}
			}
			checked++
		}
	}
	if checked != 8*7 {
		t.Fatalf("checked %d pairs, want %d", checked, 8*7)
	}
}

func TestTerminalStatesHaveNoExits(t *testing.T) {
	t.Parallel()
	for _, from := range TaskStates() {
		if !from.Terminal() {
			continue
		}
		for _, to := range TaskStates() {
			if d, err := Task(from, to); err == nil && !d.NoOp {
				t.Errorf("terminal task state %s allows → %s", from, to)
			}
		}
	}
	for _, from := range StepStates() {
		if !from.Terminal() {
			continue
		}
		for _, to := range StepStates() {
			if d, err := Step(from, to); err == nil && !d.NoOp {
				t.Errorf("terminal step state %s allows → %s", from, to)
			}
		}
	}
}

func TestUnknownStatesRejected(t *testing.T) {
	t.Parallel()
	if _, err := Task("running", TaskComplete); !errors.Is(err, ErrInvalidTransition) {
		t.Errorf("unknown from: err = %v", err)
	}
	if _, err := Step(StepPending, "done"); !errors.Is(err, ErrInvalidTransition) {
		t.Errorf("unknown to: err = %v", err)
	}
}

func TestSources(t *testing.T) {
	t.Parallel()
	got := StepSources(StepCancelled)
	want := []StepState{StepPending, StepInProgress, StepWaitingForRetry, StepError}
	if len(got) != len(want) {
		t.Fatalf("StepSources(cancelled) = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("StepSources(cancelled) = %v, want %v", got, want)
		}
	}
	if got := TaskSources(TaskCancelled); len(got) != 2 || got[0] != TaskPending || got[1] != TaskInProgress {
		t.Fatalf("TaskSources(cancelled) = %v", got)
	}
}

func TestSatisfiesDependents(t *testing.T) {
	t.Parallel()
	for _, s := range StepStates() {
		want := s == StepComplete || s == StepResolvedManually
		if got := s.SatisfiesDependents(); got != want {
			t.Errorf("%s.SatisfiesDependents() = %v, want %v", s, got, want)
		}
	}
}

func TestFinalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		total, done, open int
		want              TaskState
		final             bool
	}{
		{3, 3, 0, TaskComplete, true},
		{3, 2, 0, TaskError, true},
		{3, 2, 1, "", false},
		{1, 0, 1, "", false},
		{1, 0, 0, TaskError, true},
	}
	for _, tc := range tests {
		got, final := Finalize(tc.total, tc.done, tc.open)
		if got != tc.want || final != tc.final {
			t.Errorf("Finalize(%d, %d, %d) = %s, %v; want %s, %v", tc.total, tc.done, tc.open, got, final, tc.want, tc.final)
		}
	}
}
