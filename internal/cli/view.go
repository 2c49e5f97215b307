package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/tasker-go/tasker"
)

// reporter shows the progress of a running task.
type reporter interface {
	start(ctx context.Context)
	stop()
}

type quietReporter struct{}

func (quietReporter) start(context.Context) {}
func (quietReporter) stop()                 {}

// liveView redraws a table of the task's steps on a terminal.
type liveView struct {
	w      io.Writer
	c      *tasker.Client
	taskID string
	lines  int
	cancel context.CancelFunc
	done   chan struct{}
}

func newLiveView(w io.Writer, c *tasker.Client, taskID string) *liveView {
	return &liveView{w: w, c: c, taskID: taskID}
}

func (v *liveView) start(ctx context.Context) {
	ctx, v.cancel = context.WithCancel(ctx)
	v.done = make(chan struct{})
	go func() {
		defer close(v.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			v.draw(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

func (v *liveView) draw(ctx context.Context) {
	task, err := v.c.Task(context.WithoutCancel(ctx), v.taskID)
	if err != nil {
		return
	}
	var b strings.Builder
	renderTask(&b, task, time.Now(), true)
	frame := b.String()
	if v.lines > 0 {
		fmt.Fprintf(v.w, "\x1b[%dA\x1b[J", v.lines)
	}
	io.WriteString(v.w, frame)
	v.lines = strings.Count(frame, "\n")
}

// stop ends the live view and erases it; the final summary replaces it.
func (v *liveView) stop() {
	if v.cancel == nil {
		return
	}
	v.cancel()
	<-v.done
	if v.lines > 0 {
		fmt.Fprintf(v.w, "\x1b[%dA\x1b[J", v.lines)
		v.lines = 0
	}
}

// lineLog prints one line per step event, for logs and pipes.
type lineLog struct {
	w      io.Writer
	c      *tasker.Client
	taskID string
	sub    *tasker.Subscription
	done   chan struct{}
	mu     sync.Mutex
}

func newLineLog(w io.Writer, c *tasker.Client, taskID string) *lineLog {
	return &lineLog{w: w, c: c, taskID: taskID}
}

func (l *lineLog) start(ctx context.Context) {
	if task, err := l.c.Task(ctx, l.taskID); err == nil {
		fmt.Fprintf(l.w, "%s  task %s/%s@%s: %d/%d steps done, %s\n", time.Now().Format("15:04:05.000"),
			task.Namespace, task.Name, task.Version, task.StepsDone, task.StepsTotal, task.State)
	}
	l.sub = l.c.Subscribe(&tasker.SubscribeOpts{TaskID: l.taskID, Buffer: 4096,
		Names: []string{"task.*", "step.execution_requested", "step.completed", "step.attempt_failed", "step.failed",
			"step.rescued", "step.cancelled", "step.retry_requested", "workflow.viable_steps_discovered"}})
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		for ev := range l.sub.Events() {
			if line := describeEvent(ev); line != "" {
				l.mu.Lock()
				fmt.Fprintf(l.w, "%s  %s\n", ev.OccurredAt.Local().Format("15:04:05.000"), line)
				l.mu.Unlock()
			}
		}
	}()
}

func (l *lineLog) stop() {
	if l.sub == nil {
		return
	}
	// The engine has stopped, so every event of the run is queued; Close
	// delivers queued events before the channel closes.
	l.sub.Close()
	<-l.done
}

func describeEvent(ev tasker.Event) string {
	switch ev.Name {
	case tasker.EventTaskStartRequested:
		return fmt.Sprintf("task %s/%s@%s started", ev.Namespace, ev.TaskName, ev.Version)
	case tasker.EventTaskCompleted:
		return "task complete"
	case tasker.EventTaskFailed:
		return "task failed: " + ev.ErrorMessage
	case tasker.EventTaskCancelled:
		return "task cancelled"
	case tasker.EventTaskRetryRequested:
		return "task retry requested"
	case tasker.EventWorkflowViableStepsDiscovered:
		if steps, ok := ev.Data["steps"].([]string); ok {
			return "ready: " + strings.Join(steps, ", ")
		}
	case tasker.EventStepExecutionRequested:
		return fmt.Sprintf("%s: attempt %d/%d started", ev.StepName, ev.Attempt, ev.RetryLimit)
	case tasker.EventStepCompleted:
		return fmt.Sprintf("%s: complete (%s)", ev.StepName, time.Duration(ev.ExecutionDurationMS)*time.Millisecond)
	case tasker.EventStepAttemptFailed:
		next := ""
		if at, ok := ev.Data["next_attempt_at"].(time.Time); ok {
			next = fmt.Sprintf("; retry in %s", at.Sub(ev.OccurredAt).Round(time.Millisecond))
		}
		return fmt.Sprintf("%s: attempt %d failed (%s): %s%s", ev.StepName, ev.Attempt, ev.ErrorClass, firstLine(ev.ErrorMessage), next)
	case tasker.EventStepFailed:
		return fmt.Sprintf("%s: failed after %d attempt(s) (%s): %s", ev.StepName, ev.Attempt, ev.ErrorClass, firstLine(ev.ErrorMessage))
	case tasker.EventStepRescued:
		reason, _ := ev.Data["reason"].(string)
		return fmt.Sprintf("%s: back to pending (%s)", ev.StepName, reason)
	case tasker.EventStepCancelled:
		return ev.StepName + ": cancelled"
	case tasker.EventStepRetryRequested:
		return ev.StepName + ": reset for retry"
	}
	return ""
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// printSummary prints the final state of a task.
func printSummary(w io.Writer, task *tasker.Task, now time.Time) {
	var b strings.Builder
	renderTask(&b, task, now, false)
	io.WriteString(w, b.String())
}

var stateMarks = map[tasker.StepState]string{
	tasker.StepPending:          "·",
	tasker.StepInProgress:       "▶",
	tasker.StepWaitingForRetry:  "↻",
	tasker.StepComplete:         "✓",
	tasker.StepError:            "✗",
	tasker.StepCancelled:        "⊘",
	tasker.StepResolvedManually: "✓",
}

// renderTask writes a table of the task's steps. live adds ANSI colours.
func renderTask(b *strings.Builder, task *tasker.Task, now time.Time, live bool) {
	elapsed := ""
	if !task.StartedAt.IsZero() {
		end := now
		if !task.FinishedAt.IsZero() {
			end = task.FinishedAt
		}
		elapsed = end.Sub(task.StartedAt).Round(time.Millisecond).String()
	}
	fmt.Fprintf(b, "task %s  %s/%s@%s  %s  %d/%d steps done  %s\n",
		task.ID, task.Namespace, task.Name, task.Version, paint(string(task.State), taskColour(task.State), live),
		task.StepsDone, task.StepsTotal, elapsed)
	width := 4
	for _, st := range task.Steps {
		width = max(width, len(st.Name))
	}
	for _, s := range task.Steps {
		mark := stateMarks[s.State]
		attempts := ""
		if s.Attempts > 0 {
			attempts = fmt.Sprintf("%d/%d", s.Attempts, s.RetryLimit)
		}
		took := ""
		if !s.StartedAt.IsZero() {
			end := now
			if !s.FinishedAt.IsZero() {
				end = s.FinishedAt
			}
			took = end.Sub(s.StartedAt).Round(time.Millisecond).String()
		}
		note := ""
		switch s.State {
		case tasker.StepWaitingForRetry:
			note = fmt.Sprintf("retry in %s: %s", max(s.NextAttemptAt.Sub(now), 0).Round(100*time.Millisecond), firstLine(s.LastError))
		case tasker.StepError:
			note = firstLine(s.LastError)
		}
		if len(note) > 100 {
			note = note[:100] + "…"
		}
		state := fmt.Sprintf("%-17s", s.State)
		line := fmt.Sprintf("  %s %-*s  %s  %-7s %-9s %s", mark, width, s.Name, paint(state, stepColour(s.State), live), attempts, took, note)
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
}

func paint(s, colour string, on bool) string {
	if !on || colour == "" {
		return s
	}
	return colour + s + "\x1b[0m"
}

func taskColour(s tasker.TaskState) string {
	switch s {
	case tasker.TaskComplete:
		return "\x1b[32m"
	case tasker.TaskError, tasker.TaskCancelled:
		return "\x1b[31m"
	case tasker.TaskInProgress:
		return "\x1b[36m"
	}
	return ""
}

func stepColour(s tasker.StepState) string {
	switch s {
	case tasker.StepComplete, tasker.StepResolvedManually:
		return "\x1b[32m"
	case tasker.StepError, tasker.StepCancelled:
		return "\x1b[31m"
	case tasker.StepInProgress:
		return "\x1b[36m"
	case tasker.StepWaitingForRetry:
		return "\x1b[33m"
	}
	return ""
}
