package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/semver"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/internal/analytics"
	"github.com/tasker-go/tasker/internal/auth"
)

// domainError maps the client's errors to API errors.
func domainError(err error) error {
	var ce *tasker.ContextError
	var te *tasker.TemplateError
	detail := cleanDetail(err)
	switch {
	case errors.Is(err, tasker.ErrUnavailable):
		return &Error{Code: "unavailable", Detail: "the database cannot be reached; try again", Cause: err}
	case errors.As(err, &ce):
		problems := make([]any, len(ce.Problems))
		for i, p := range ce.Problems {
			problems[i] = p
		}
		return &Error{Code: "invalid_context", Detail: "the context does not match the schema of " + ce.Template, Problems: problems, Cause: err}
	case errors.As(err, &te):
		problems := make([]any, len(te.Problems))
		for i, p := range te.Problems {
			problems[i] = p
		}
		return &Error{Code: "invalid_template", Detail: "the template has " + plural(len(te.Problems), "problem"), Problems: problems, Cause: err}
	case errors.Is(err, tasker.ErrNotFound):
		return &Error{Code: "not_found", Detail: detail, Cause: err}
	case errors.Is(err, tasker.ErrInvalidTransition):
		return &Error{Code: "invalid_transition", Detail: detail, Cause: err}
	case errors.Is(err, tasker.ErrConflict):
		return &Error{Code: "conflict", Detail: detail, Cause: err}
	case errors.Is(err, tasker.ErrInvalidCursor):
		return &Error{Code: "invalid_cursor", Detail: "the cursor was not made by this server", Cause: err}
	case errors.Is(err, tasker.ErrInvalidRequest):
		return &Error{Code: "invalid_request", Detail: detail, Cause: err}
	}
	return err
}

// cleanDetail turns an error into a client-facing sentence, without the
// package prefix and the sentinel that only classifies it.
func cleanDetail(err error) string {
	d := strings.TrimPrefix(err.Error(), "tasker: ")
	for _, sentinel := range []error{tasker.ErrInvalidRequest, tasker.ErrNotFound, tasker.ErrConflict, tasker.ErrInvalidTransition} {
		d = strings.TrimSuffix(d, ": "+sentinel.Error())
	}
	return d
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// notVisible is the answer for anything outside a principal's namespace:
// the same as for something that does not exist.
func notVisible(what string) error { return errorf("not_found", "%s not found", what) }

// --- health, metrics, OpenAPI ---

func (s *Server) live(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if err := s.client.Ping(r.Context()); err != nil {
		return &Error{Code: "unavailable", Detail: "the database does not answer", Cause: err}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if s.cfg.Metrics == nil {
		return errorf("not_found", "metrics are not enabled on this server")
	}
	s.cfg.Metrics.ServeHTTP(w, r)
	return nil
}

// --- templates ---

// templateSummary is a template in a listing.
type templateSummary struct {
	Namespace        string `json:"namespace"`
	Name             string `json:"name"`
	Version          string `json:"version"`
	Description      string `json:"description,omitempty"`
	IdentityStrategy string `json:"identity_strategy"`
	Concurrency      int    `json:"concurrency"`
	Steps            int    `json:"steps"`
}

type templateStep struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Handler     string          `json:"handler"`
	DependsOn   []string        `json:"depends_on"`
	Level       int             `json:"level"`
	Retryable   bool            `json:"retryable"`
	Retry       templateRetry   `json:"retry"`
	Timeout     string          `json:"timeout"`
	Config      json.RawMessage `json:"config,omitempty"`
}

type templateRetry struct {
	Limit      int     `json:"limit"`
	Initial    string  `json:"initial"`
	Multiplier float64 `json:"multiplier"`
	Max        string  `json:"max"`
	Jitter     float64 `json:"jitter"`
}

type templateEvent struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
}

// templateDetail is one template with its DAG.
type templateDetail struct {
	templateSummary
	ContextSchema json.RawMessage `json:"context_schema,omitempty"`
	Events        []templateEvent `json:"events"`
	StepList      []templateStep  `json:"step_list"`
	// Levels groups step names by dependency level: steps of one level can
	// run in parallel.
	Levels  [][]string `json:"levels"`
	Mermaid string     `json:"mermaid"`
}

func summarize(t *tasker.Template) templateSummary {
	return templateSummary{Namespace: t.Namespace, Name: t.Name, Version: t.Version, Description: t.Description,
		IdentityStrategy: string(t.IdentityStrategy), Concurrency: t.Concurrency, Steps: len(t.Steps)}
}

func detail(t *tasker.Template) templateDetail {
	d := templateDetail{templateSummary: summarize(t), ContextSchema: t.ContextSchema, Events: []templateEvent{},
		StepList: []templateStep{}, Levels: [][]string{}, Mermaid: t.Mermaid()}
	for _, e := range t.Events {
		d.Events = append(d.Events, templateEvent{Name: e.Name, Description: e.Description, Schema: e.Schema})
	}
	for _, st := range t.Steps {
		deps := st.DependsOn
		if deps == nil {
			deps = []string{}
		}
		d.StepList = append(d.StepList, templateStep{Name: st.Name, Description: st.Description, Handler: st.Handler,
			DependsOn: deps, Level: st.Level, Retryable: st.Retryable, Timeout: st.Timeout.String(), Config: st.Config,
			Retry: templateRetry{Limit: st.Retry.Limit, Initial: st.Retry.Initial.String(), Multiplier: st.Retry.Multiplier,
				Max: st.Retry.Max.String(), Jitter: st.Retry.Jitter}})
		for len(d.Levels) <= st.Level {
			d.Levels = append(d.Levels, []string{})
		}
		d.Levels[st.Level] = append(d.Levels[st.Level], st.Name)
	}
	return d
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q, err := newQuery(r, "namespace")
	if err != nil {
		return err
	}
	ns := q.str("namespace", 64)
	if err := q.err(); err != nil {
		return err
	}
	list, err := s.client.Templates(r.Context())
	if err != nil {
		return err
	}
	out := []templateSummary{}
	for _, t := range list {
		if p.Sees(t.Namespace) && (ns == "" || t.Namespace == ns) {
			out = append(out, summarize(t))
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return semver.Compare("v"+a.Version, "v"+b.Version) < 0
	})
	writeJSON(w, http.StatusOK, map[string]any{"templates": out})
	return nil
}

func (s *Server) getTemplate(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	ns, name, version := r.PathValue("namespace"), r.PathValue("name"), r.PathValue("version")
	if !p.Sees(ns) {
		return notVisible("template")
	}
	t, err := s.client.Template(r.Context(), ns, name, version)
	if err != nil {
		return domainError(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"template": detail(t)})
	return nil
}

type templateSource struct {
	// Source is the template's YAML.
	Source string `json:"source"`
	// Environment selects the template's overrides.
	Environment string `json:"environment,omitempty"`
}

func (s *Server) parseTemplate(r *http.Request) (*tasker.Template, error) {
	var body templateSource
	if err := decodeJSON(r, &body); err != nil {
		return nil, err
	}
	if strings.TrimSpace(body.Source) == "" {
		return nil, errorf("invalid_json", "source is required: the template's YAML")
	}
	t, err := tasker.ParseTemplate("template.yaml", []byte(body.Source),
		&tasker.TemplateOpts{Environment: body.Environment, KnownHandlers: s.client.HandlerNames()})
	if err != nil {
		return nil, domainError(err)
	}
	return t, nil
}

func (s *Server) validateTemplate(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	t, err := s.parseTemplate(r)
	var e *Error
	if errors.As(err, &e) && e.Code == "invalid_template" {
		writeJSON(w, http.StatusOK, map[string]any{"valid": false, "problems": e.Problems})
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"valid": true, "template": detail(t)})
	return nil
}

func (s *Server) registerTemplate(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	t, err := s.parseTemplate(r)
	if err != nil {
		return err
	}
	if !p.Sees(t.Namespace) {
		return notVisible("namespace " + t.Namespace)
	}
	if err := s.client.RegisterTemplate(r.Context(), t); err != nil {
		return domainError(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"template": detail(t)})
	return nil
}

// --- tasks ---

type createTaskBody struct {
	Namespace string          `json:"namespace"`
	Name      string          `json:"name"`
	Version   string          `json:"version,omitempty"`
	Context   json.RawMessage `json:"context,omitempty"`
}

func (s *Server) createTask(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body createTaskBody
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.Namespace == "" || body.Name == "" {
		return errorf("invalid_json", "namespace and name are required")
	}
	if len(body.Namespace) > 64 || len(body.Name) > 64 || len(body.Version) > 64 {
		return errorf("invalid_json", "namespace, name and version are at most 64 characters")
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 255 {
		return errorf("invalid_parameter", "Idempotency-Key is longer than 255 characters")
	}
	if !p.Sees(body.Namespace) {
		return notVisible("template " + body.Namespace + "/" + body.Name)
	}
	res, err := s.client.CreateTask(r.Context(), tasker.TaskRequest{Namespace: body.Namespace, Name: body.Name,
		Version: body.Version, Context: body.Context, IdempotencyKey: key})
	if err != nil {
		return domainError(err)
	}
	status := http.StatusCreated
	if !res.Created {
		status = http.StatusOK
	}
	task, err := s.client.Task(r.Context(), res.Task.ID)
	if err != nil {
		return domainError(err)
	}
	writeJSON(w, status, map[string]any{"task": task, "created": res.Created})
	return nil
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q, err := newQuery(r, "namespace", "name", "version", "state", "created_after", "created_before", "q", "cursor", "limit")
	if err != nil {
		return err
	}
	opts := &tasker.TaskListOpts{
		Namespace: q.str("namespace", 64), Name: q.str("name", 64), Version: q.str("version", 64),
		State: tasker.TaskState(q.str("state", 32)), CreatedAfter: q.time("created_after"), CreatedBefore: q.time("created_before"),
		Search: q.str("q", 200), Cursor: q.str("cursor", 512), Limit: q.integer("limit", 50, 1, 500),
	}
	if opts.State != "" && !opts.State.Valid() {
		q.errs = append(q.errs, "state must be one of pending, in_progress, complete, error, cancelled, resolved_manually")
	}
	if err := q.err(); err != nil {
		return err
	}
	if p.Namespace != "" {
		if opts.Namespace != "" && opts.Namespace != p.Namespace {
			writeJSON(w, http.StatusOK, tasker.TaskPage{Tasks: []*tasker.Task{}})
			return nil
		}
		opts.Namespace = p.Namespace
	}
	page, err := s.client.ListTasks(r.Context(), opts)
	if err != nil {
		return domainError(err)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// visibleTask loads a task with its steps, as not found when it is outside
// the principal's namespace.
func (s *Server) visibleTask(r *http.Request, p *auth.Principal) (*tasker.Task, error) {
	return visible(r, p, "task", s.client.Task, func(t *tasker.Task) string { return t.Namespace })
}

// visible loads the resource named by the path's id, as not found when it
// is outside the principal's namespace.
func visible[T any](r *http.Request, p *auth.Principal, what string, load func(context.Context, string) (T, error),
	namespace func(T) string) (T, error) {
	var zero T
	id, err := pathID(r, "id")
	if err != nil {
		return zero, err
	}
	v, err := load(r.Context(), id)
	if err != nil {
		return zero, domainError(err)
	}
	if !p.Sees(namespace(v)) {
		return zero, notVisible(what + " " + id)
	}
	return v, nil
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	t, err := s.visibleTask(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"task": t, "summary": t.Summary()})
	return nil
}

type reasonBody struct {
	Reason string `json:"reason,omitempty"`
}

// optionalReason reads an optional {"reason": ...} body.
func optionalReason(r *http.Request) (string, error) {
	if r.ContentLength == 0 {
		return "", nil
	}
	var b reasonBody
	if err := decodeJSON(r, &b); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == "invalid_json" && r.ContentLength < 0 && strings.Contains(e.Detail, "the body is empty") {
			return "", nil // an empty chunked body
		}
		return "", err
	}
	if len(b.Reason) > 1000 {
		return "", errorf("invalid_json", "reason is longer than 1000 characters")
	}
	return b.Reason, nil
}

// taskAction runs an operator action on a visible task with the request's
// reason and answers the task.
func (s *Server) taskAction(w http.ResponseWriter, r *http.Request, p *auth.Principal, reasonRequired bool,
	act func(ctx context.Context, id, reason string) (*tasker.Task, error)) error {
	t, err := s.visibleTask(r, p)
	if err != nil {
		return err
	}
	return answerAction(w, r, "task", t.ID, reasonRequired, act)
}

// answerAction reads the request's optional reason (required when
// reasonRequired), runs act on id and answers its result under key.
func answerAction[T any](w http.ResponseWriter, r *http.Request, key, id string, reasonRequired bool,
	act func(ctx context.Context, id, reason string) (T, error)) error {
	reason, err := optionalReason(r)
	if err != nil {
		return err
	}
	if reasonRequired && strings.TrimSpace(reason) == "" {
		return errorf("invalid_json", "reason is required")
	}
	out, err := act(r.Context(), id, reason)
	if err != nil {
		return domainError(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{key: out})
	return nil
}

func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	return s.taskAction(w, r, p, false, s.client.CancelTask)
}

func (s *Server) retryTask(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	return s.taskAction(w, r, p, false, s.client.RetryTask)
}

func (s *Server) resolveTask(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	return s.taskAction(w, r, p, true, s.client.ResolveTask)
}

func (s *Server) taskDiagram(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	t, err := s.visibleTask(r, p)
	if err != nil {
		return err
	}
	m, err := s.client.TaskDiagram(r.Context(), t.ID)
	if err != nil {
		return domainError(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"task_id": t.ID, "mermaid": m})
	return nil
}

func (s *Server) taskTransitions(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	t, err := s.visibleTask(r, p)
	if err != nil {
		return err
	}
	list, err := s.client.Transitions(r.Context(), t.ID)
	if err != nil {
		return domainError(err)
	}
	if list == nil {
		list = []*tasker.Transition{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"transitions": list})
	return nil
}

// --- steps ---

func (s *Server) visibleStep(r *http.Request, p *auth.Principal) (*tasker.StepDetail, error) {
	return visible(r, p, "step", s.client.Step, func(st *tasker.StepDetail) string { return st.Namespace })
}

func (s *Server) getStep(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	st, err := s.visibleStep(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"step": st})
	return nil
}

func (s *Server) stepAction(w http.ResponseWriter, r *http.Request, p *auth.Principal, reasonRequired bool,
	act func(ctx context.Context, id, reason string) (*tasker.StepDetail, error)) error {
	st, err := s.visibleStep(r, p)
	if err != nil {
		return err
	}
	return answerAction(w, r, "step", st.ID, reasonRequired, act)
}

func (s *Server) resetStep(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	return s.stepAction(w, r, p, false, s.client.ResetStep)
}

func (s *Server) resolveStep(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	return s.stepAction(w, r, p, true, s.client.ResolveStep)
}

func (s *Server) cancelStep(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	return s.stepAction(w, r, p, false, s.client.CancelStep)
}

func (s *Server) stepTransitions(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	st, err := s.visibleStep(r, p)
	if err != nil {
		return err
	}
	list, err := s.client.StepTransitions(r.Context(), st.ID)
	if err != nil {
		return domainError(err)
	}
	if list == nil {
		list = []*tasker.Transition{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"transitions": list})
	return nil
}

// --- analytics ---

func (s *Server) analytics(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q, err := newQuery(r, "window", "bucket", "namespace", "slowest")
	if err != nil {
		return err
	}
	window := q.duration("window", 24*time.Hour, time.Minute, 31*24*time.Hour)
	bucket := q.duration("bucket", 0, time.Minute, 31*24*time.Hour)
	ns := q.str("namespace", 64)
	slowest := q.integer("slowest", 10, 0, 100)
	if err := q.err(); err != nil {
		return err
	}
	if p.Namespace != "" {
		if ns != "" && ns != p.Namespace {
			ns = "\x00" // nothing matches
		} else {
			ns = p.Namespace
		}
	}
	until := s.cfg.Now().UTC()
	since := until.Add(-window)
	in := analytics.Input{Since: since, Until: until, Bucket: bucket}
	page, err := s.client.ListTasks(r.Context(), &tasker.TaskListOpts{Namespace: ns, FinishedAfter: since, Limit: 100000})
	if err != nil {
		return domainError(err)
	}
	in.Tasks = page.Tasks
	after, err := s.client.EventCursorAt(r.Context(), since)
	if err != nil {
		return domainError(err)
	}
	for {
		evs, err := s.client.Events(r.Context(), &tasker.EventListOpts{After: after, Namespace: ns, Since: since, Limit: 5000,
			Names: []string{"step.completed", "step.attempt_failed", "step.failed"}})
		if err != nil {
			return domainError(err)
		}
		in.Attempts = append(in.Attempts, evs...)
		if len(evs) < 5000 || len(in.Attempts) >= 200000 {
			break
		}
		after = evs[len(evs)-1].Cursor
	}
	writeJSON(w, http.StatusOK, analytics.Compute(in, slowest))
	return nil
}
