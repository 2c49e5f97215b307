package tasker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

type actorKey struct{}

// WithActor returns a context that names who acts, for the audit trail of
// the operations it is passed to (cancel, retry, step actions).
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func actorOf(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

// StepDetail is a step with the task it belongs to.
type StepDetail struct {
	*Step
	TaskID    string `json:"task_id"`
	Namespace string `json:"namespace"`
	TaskName  string `json:"task_name"`
	Version   string `json:"version"`
}

// Step returns one step with its task's identity.
func (c *Client) Step(ctx context.Context, id string) (*StepDetail, error) {
	st, err := c.store.StepGet(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	t, err := c.store.TaskGet(ctx, st.TaskID)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	return &StepDetail{Step: stepFromStore(st), TaskID: t.ID, Namespace: t.Namespace, TaskName: t.Name, Version: t.Version}, nil
}

// StepTransitions returns the audit trail of one step.
func (c *Client) StepTransitions(ctx context.Context, stepID string) ([]*Transition, error) {
	if _, err := c.store.StepGet(ctx, stepID); err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	evs, err := c.store.EventList(ctx, &store.EventListParams{StepID: stepID, TransitionsOnly: true, Limit: 100000})
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	out := make([]*Transition, len(evs))
	for i, e := range evs {
		out[i] = transitionFromStore(e)
	}
	return out, nil
}

// ResetStep moves a step in error back to pending with a fresh retry
// budget; a task in error resumes. The reason is recorded in the audit
// trail with the actor of ctx (see WithActor).
func (c *Client) ResetStep(ctx context.Context, stepID, reason string) (*StepDetail, error) {
	return c.stepAction(ctx, stepID, reason, c.store.StepReset)
}

// ResolveStep marks a pending, waiting or failed step resolved_manually:
// it counts as done and its dependents may run. A reason is required.
func (c *Client) ResolveStep(ctx context.Context, stepID, reason string) (*StepDetail, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("tasker: resolving a step by hand needs a reason: %w", ErrInvalidRequest)
	}
	return c.stepAction(ctx, stepID, reason, c.store.StepResolve)
}

// CancelStep cancels an unfinished step; its dependents can never run.
func (c *Client) CancelStep(ctx context.Context, stepID, reason string) (*StepDetail, error) {
	return c.stepAction(ctx, stepID, reason, c.store.StepCancel)
}

func (c *Client) stepAction(ctx context.Context, stepID, reason string,
	op func(context.Context, *store.StepActionParams) (*store.ChangeResult, error)) (*StepDetail, error) {
	if err := checkText("reason", reason, 1000); err != nil {
		return nil, err
	}
	if _, err := op(ctx, &store.StepActionParams{StepID: stepID, Reason: reason, Actor: actorOf(ctx), Now: c.clock.Now()}); err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	return c.Step(ctx, stepID)
}

// TaskPage is one page of a task listing.
type TaskPage struct {
	Tasks []*Task `json:"tasks"`
	// NextCursor continues the listing; empty on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// ListTasks lists tasks, newest first, a page at a time.
func (c *Client) ListTasks(ctx context.Context, opts *TaskListOpts) (*TaskPage, error) {
	p := &store.TaskListParams{}
	limit := 100
	if opts != nil {
		if opts.State != "" && !opts.State.Valid() {
			return nil, fmt.Errorf("tasker: unknown task state %q: %w", opts.State, ErrInvalidRequest)
		}
		if opts.Limit < 0 {
			return nil, fmt.Errorf("tasker: negative limit: %w", ErrInvalidRequest)
		}
		if opts.Limit > 0 {
			limit = opts.Limit
		}
		p.State, p.Namespace, p.Name, p.Version = opts.State, opts.Namespace, opts.Name, opts.Version
		p.CreatedAfter, p.CreatedBefore, p.FinishedAfter, p.Search = opts.CreatedAfter, opts.CreatedBefore, opts.FinishedAfter, opts.Search
		if opts.Cursor != "" {
			cur, err := decodeCursor(opts.Cursor)
			if err != nil {
				return nil, err
			}
			p.After = cur
		}
	}
	p.Limit = limit + 1
	list, err := c.store.TaskList(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	page := &TaskPage{Tasks: []*Task{}}
	for i, t := range list {
		if i == limit {
			last := list[limit-1]
			page.NextCursor = encodeCursor(&store.TaskCursor{CreatedAt: last.CreatedAt, ID: last.ID})
			break
		}
		page.Tasks = append(page.Tasks, taskFromStore(t))
	}
	return page, nil
}

type cursorJSON struct {
	CreatedAt time.Time `json:"c"`
	ID        string    `json:"i"`
}

func encodeCursor(c *store.TaskCursor) string {
	b, _ := json.Marshal(cursorJSON{CreatedAt: c.CreatedAt.UTC(), ID: c.ID})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (*store.TaskCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var c cursorJSON
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.ID == "" || c.CreatedAt.IsZero() {
		return nil, fmt.Errorf("tasker: %w", ErrInvalidCursor)
	}
	return &store.TaskCursor{CreatedAt: c.CreatedAt, ID: c.ID}, nil
}

// StepCounts summarises a task's steps by what they are doing.
type StepCounts struct {
	Total           int `json:"total"`
	Pending         int `json:"pending"`
	Ready           int `json:"ready"`
	Running         int `json:"running"`
	WaitingForRetry int `json:"waiting_for_retry"`
	Complete        int `json:"complete"`
	Failed          int `json:"failed"`
	Cancelled       int `json:"cancelled"`
	Resolved        int `json:"resolved_manually"`
	// CompletionPercent is the share of steps complete or resolved, 0-100.
	CompletionPercent float64 `json:"completion_percent"`
}

// Summary counts the steps of a task loaded with Client.Task. A pending
// step is ready when its dependencies are done, whether or not a worker has
// picked it up yet.
func (t *Task) Summary() StepCounts {
	var s StepCounts
	s.Total = len(t.Steps)
	for _, st := range t.Steps {
		switch st.State {
		case StepPending:
			if st.Ready {
				s.Ready++
			} else {
				s.Pending++
			}
		case StepInProgress:
			s.Running++
		case StepWaitingForRetry:
			s.WaitingForRetry++
		case StepComplete:
			s.Complete++
		case StepError:
			s.Failed++
		case StepCancelled:
			s.Cancelled++
		case StepResolvedManually:
			s.Resolved++
		}
	}
	if s.Total > 0 {
		s.CompletionPercent = float64(int(float64(s.Complete+s.Resolved)/float64(s.Total)*10000+0.5)) / 100
	}
	return s
}

// Ping checks that the database answers.
func (c *Client) Ping(ctx context.Context) error {
	if err := c.store.Ping(ctx); err != nil {
		return fmt.Errorf("tasker: %w", err)
	}
	return nil
}

// ReadyCount counts the steps ready to run now: the ready-queue depth.
func (c *Client) ReadyCount(ctx context.Context) (int, error) {
	n, err := c.store.StepCountReady(ctx, c.clock.Now())
	if err != nil {
		return 0, fmt.Errorf("tasker: %w", err)
	}
	return n, nil
}

// TaskDiagram returns a Mermaid flowchart of a task's DAG with each step
// labelled and coloured by its state.
func (c *Client) TaskDiagram(ctx context.Context, id string) (string, error) {
	st, err := c.store.TaskGet(ctx, id)
	if err != nil {
		return "", fmt.Errorf("tasker: %w", err)
	}
	tmpl, err := c.engine.Template(ctx, st.TemplateID)
	if err != nil {
		return "", fmt.Errorf("tasker: template of task %s: %w", id, err)
	}
	steps, err := c.store.StepListByTask(ctx, id)
	if err != nil {
		return "", fmt.Errorf("tasker: %w", err)
	}
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	nodeID := func(i int) string { return fmt.Sprintf("s%d", i) }
	for _, s := range steps {
		label := fmt.Sprintf("%s<br/>%s", s.Name, s.State)
		if s.Attempts > 0 {
			label += fmt.Sprintf(" (%d/%d)", s.Attempts, s.RetryLimit)
		}
		fmt.Fprintf(&b, "  %s[\"%s\"]:::%s\n", nodeID(s.Index), strings.ReplaceAll(label, `"`, "'"), s.State)
	}
	for _, def := range tmpl.Steps {
		for _, p := range def.Parents {
			fmt.Fprintf(&b, "  %s --> %s\n", nodeID(p), nodeID(def.Index))
		}
	}
	for _, cd := range []struct{ state, style string }{
		{"pending", "fill:#eceff1,stroke:#90a4ae"},
		{"in_progress", "fill:#e3f2fd,stroke:#1e88e5"},
		{"waiting_for_retry", "fill:#fff8e1,stroke:#f9a825"},
		{"complete", "fill:#e8f5e9,stroke:#43a047"},
		{"error", "fill:#ffebee,stroke:#e53935"},
		{"cancelled", "fill:#f5f5f5,stroke:#757575,stroke-dasharray:4"},
		{"resolved_manually", "fill:#f3e5f5,stroke:#8e24aa"},
	} {
		fmt.Fprintf(&b, "  classDef %s %s\n", cd.state, cd.style)
	}
	return b.String(), nil
}

// Overview is a snapshot of the work in the database, for dashboards.
type Overview struct {
	// Tasks and Steps count tasks and steps by state.
	Tasks map[TaskState]int `json:"tasks"`
	Steps map[StepState]int `json:"steps"`
	// ReadySteps is the ready-queue depth: steps that could run now. The
	// queue is not split by namespace: nil for a namespace's overview.
	ReadySteps *int `json:"ready_steps,omitempty"`
	// RescuedLastHour counts the steps whose lease expired or whose worker
	// died or stopped (step.rescued) in the last hour.
	RescuedLastHour int `json:"rescued_last_hour"`
	// EventCursor is the cursor of the latest event in the log: read or
	// stream after it to follow new events only.
	EventCursor int64 `json:"event_cursor"`
}

// Overview counts tasks and steps by state, ready steps and recent
// rescues, of one namespace when namespace is set. It reads whole tables:
// call it every few seconds, not per request of a busy service.
func (c *Client) Overview(ctx context.Context, namespace string) (*Overview, error) {
	counts, err := c.store.StateCounts(ctx, namespace)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	out := &Overview{Tasks: map[TaskState]int{}, Steps: map[StepState]int{}}
	for st, n := range counts.Tasks {
		out.Tasks[st] = n
	}
	for st, n := range counts.Steps {
		out.Steps[st] = n
	}
	if namespace == "" {
		ready, err := c.ReadyCount(ctx)
		if err != nil {
			return nil, err
		}
		out.ReadySteps = &ready
	}
	if out.EventCursor, err = c.store.EventCursorAt(ctx, c.clock.Now().AddDate(100, 0, 0)); err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	since := c.clock.Now().Add(-time.Hour)
	after, err := c.store.EventCursorAt(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	for {
		evs, err := c.store.EventList(ctx, &store.EventListParams{After: after, Namespace: namespace, Names: []string{string(EventStepRescued)},
			Since: since, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("tasker: %w", err)
		}
		out.RescuedLastHour += len(evs)
		if len(evs) < 1000 {
			return out, nil
		}
		after = evs[len(evs)-1].Cursor
	}
}
