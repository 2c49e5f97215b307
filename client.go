package tasker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/semver"

	"github.com/tasker-go/tasker/internal/builtin"
	"github.com/tasker-go/tasker/internal/clock"
	"github.com/tasker-go/tasker/internal/engine"
	"github.com/tasker-go/tasker/internal/eventbus"
	"github.com/tasker-go/tasker/internal/netguard"
	"github.com/tasker-go/tasker/internal/secret"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/store/postgres"
	"github.com/tasker-go/tasker/internal/store/sqlite"
	"github.com/tasker-go/tasker/internal/template"
	"github.com/tasker-go/tasker/internal/webhook"
)

// Config configures a Client. Zero fields take the documented defaults.
type Config struct {
	// Database is where tasks are stored: the path of an SQLite database
	// file, created if missing, or a PostgreSQL URL (postgres://...).
	// Default "tasker.db" in the working directory.
	Database string
	// Schema is the PostgreSQL schema holding Tasker's tables, created if
	// missing. Default "tasker". Ignored for SQLite.
	Schema string
	// DisableListen turns PostgreSQL LISTEN/NOTIFY wake-ups off (for
	// connection poolers in transaction mode); workers then poll. Ignored
	// for SQLite.
	DisableListen bool
	// MaxConns caps the PostgreSQL connection pool. Default: the greater of
	// 4 and the number of CPUs, or pool_max_conns in the URL.
	MaxConns int
	// Handlers are the Go step handlers by name. They are added to the
	// built-in handlers ("command", "noop", "sleep"); a name may not be
	// used twice.
	Handlers map[string]Handler
	// DisableCommandHandler leaves out the built-in "command" handler, which
	// runs programs with this process's privileges.
	DisableCommandHandler bool
	// Environment selects the per-environment overrides of templates loaded
	// with LoadTemplateFile. Default: none.
	Environment string
	// Concurrency bounds the handlers running at once. Default 16.
	Concurrency int
	// Prefetch is the most claimed steps that may wait for a handler slot
	// beyond Concurrency, while the handlers are short (a recent mean
	// under 100 ms), so that a slot a handler frees starts its next step
	// without waiting for a claim. Within it the engine prefetches as many
	// steps as its handlers get through in the time of a claim, so that a
	// step waits no longer, on average, than another worker would take to
	// claim it. The steps waiting hold their leases (renewed like running
	// ones); Stop releases them. Default twice Concurrency, eight times on
	// SQLite, where every claim rides on a commit of the only writer;
	// negative: none.
	Prefetch int
	// PollInterval is the fallback interval of the dispatcher. Default 1s.
	PollInterval time.Duration
	// SweepInterval is how often expired leases are rescued. Default 5s.
	SweepInterval time.Duration
	// LeaseTTL is how long a claim holds a step without renewal; running
	// steps renew it every LeaseTTL/3. A worker that dies loses its steps
	// to others at most LeaseTTL + SweepInterval later. Default 30s.
	LeaseTTL time.Duration
	// Retention deletes tasks finished longer ago than this (complete,
	// cancelled, resolved manually; not error) with their history. Default
	// 0: keep everything.
	Retention time.Duration
	// StopGrace is how long Stop lets running handlers finish. Default 10s.
	StopGrace time.Duration
	// MaxContextBytes caps the size of a task context. Default 1 MiB.
	MaxContextBytes int
	// MaxResultBytes caps the size of a step result. Default 1 MiB.
	MaxResultBytes int
	// SQLiteSynchronous is "FULL" (default: every commit is on disk) or
	// "NORMAL" (faster; a power loss may drop the last commits).
	SQLiteSynchronous string
	// SQLiteDriver is the SQLite build an SQLite database runs on: "c"
	// (SQLite's C library, in programs built with cgo, the go command's
	// default where a C compiler is installed) or "go" (SQLite translated
	// to Go, in every program). Default: "c" when the program has it (it is
	// the faster), else "go". Both read and write the same files.
	SQLiteDriver string
	// WorkerID names this process in leases. Default "HOST/PID/RANDOM".
	WorkerID string
	// SecretEnv lists the environment variables that ${env:NAME} references
	// in step configs may read, as patterns ("*" for all, "PAYMENTS_*" for
	// a prefix). Default: none. Templates can come from anyone who may
	// register them, so allow only what their steps need.
	SecretEnv []string
	// SecretDirs lists the directories whose files ${file:PATH} references
	// may read, such as /run/secrets. Default: none.
	SecretDirs []string
	// HTTPAllow opens destinations the "http" handler and webhooks refuse
	// by default (loopback, private, link-local and other special
	// addresses): host names ("payments.internal"), addresses
	// ("127.0.0.1") and CIDR ranges ("10.20.0.0/16"). Default: none.
	HTTPAllow []string
	// Logger receives logs. Default: discard.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Database == "" {
		c.Database = "tasker.db"
	}
	if c.MaxContextBytes <= 0 {
		c.MaxContextBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Client creates and runs tasks on a store. Open one per process; it is
// safe for concurrent use.
type Client struct {
	cfg      Config
	store    store.Store
	bus      *eventbus.Bus
	engine   *engine.Engine
	clock    clock.Clock
	handlers map[string]Handler
	log      *slog.Logger

	deliverer *webhook.Deliverer

	mu          sync.Mutex
	started     bool
	stopWebhook func()

	// current caches, by namespace/name@version, the definition last read
	// as current, for CreateTask: a creation checks in its own transaction
	// that the definition is still current, and reads it again if not.
	currentMu sync.Mutex
	current   map[[3]string]*store.Template
}

// Open opens the database (applying migrations) and returns a client. Call
// Start to run tasks in this process, and Close when done.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	guard, err := netguard.ParsePolicy(cfg.HTTPAllow)
	if err != nil {
		return nil, fmt.Errorf("tasker: HTTPAllow: %w", err)
	}
	handlers := map[string]Handler{}
	for name, h := range builtin.Handlers(builtin.Options{DisableCommand: cfg.DisableCommandHandler,
		Command: builtin.CommandOptions{Logger: cfg.Logger}, HTTP: builtin.HTTPOptions{Guard: guard}}) {
		handlers[name] = h
	}
	for name, h := range cfg.Handlers {
		if _, dup := handlers[name]; dup {
			return nil, fmt.Errorf("tasker: handler %q is a built-in handler; choose another name", name)
		}
		if h == nil {
			return nil, fmt.Errorf("tasker: handler %q is nil", name)
		}
		handlers[name] = h
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	bus := eventbus.New(eventbus.Config{Logger: cfg.Logger})
	clk := clock.Real{}
	eng := engine.New(st, bus, engine.Config{
		WorkerID: cfg.WorkerID, Handlers: handlers, Concurrency: cfg.Concurrency, Prefetch: cfg.Prefetch, PollInterval: cfg.PollInterval,
		SweepInterval: cfg.SweepInterval, LeaseTTL: cfg.LeaseTTL, Retention: cfg.Retention, StopGrace: cfg.StopGrace,
		MaxResultBytes: cfg.MaxResultBytes, Logger: cfg.Logger, Clock: clk,
		Secrets: &secret.Policy{EnvPatterns: cfg.SecretEnv, Dirs: cfg.SecretDirs},
	})
	del := webhook.New(webhook.Config{Store: st, Secrets: &secret.Policy{EnvPatterns: cfg.SecretEnv, Dirs: cfg.SecretDirs}, Guard: guard,
		PollInterval: cfg.PollInterval, Retention: cfg.Retention, Logger: cfg.Logger, Clock: clk})
	return &Client{cfg: cfg, store: st, bus: bus, engine: eng, clock: clk, handlers: handlers, log: cfg.Logger, deliverer: del}, nil
}

// IsPostgresURL reports whether a Config.Database value names a PostgreSQL
// database rather than an SQLite file.
func IsPostgresURL(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	if IsPostgresURL(cfg.Database) {
		return postgres.Open(ctx, cfg.Database, postgres.Options{Schema: cfg.Schema, Logger: cfg.Logger,
			DisableListen: cfg.DisableListen, MaxConns: int32(cfg.MaxConns)})
	}
	return sqlite.Open(ctx, cfg.Database, sqlite.Options{Logger: cfg.Logger, Synchronous: cfg.SQLiteSynchronous,
		Driver: cfg.SQLiteDriver})
}

// SQLiteDrivers returns the SQLite builds this program has, for
// Config.SQLiteDriver, the default first: "c" and "go" in a program built
// with cgo, "go" alone in one built without.
func SQLiteDrivers() []string { return sqlite.Drivers() }

// HandlerNames returns the names of the handlers this client runs, sorted.
func (c *Client) HandlerNames() []string {
	names := make([]string, 0, len(c.handlers))
	for n := range c.handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LoadTemplateFile parses a template file with the client's environment,
// checks that every handler it names is registered, and registers it.
func (c *Client) LoadTemplateFile(ctx context.Context, path string) (*Template, error) {
	t, err := ParseTemplateFile(path, &TemplateOpts{Environment: c.cfg.Environment, KnownHandlers: c.HandlerNames()})
	if err != nil {
		return nil, err
	}
	if err := c.RegisterTemplate(ctx, t); err != nil {
		return nil, err
	}
	return t, nil
}

// RegisterTemplate stores a template so tasks can be created from it. A
// different definition of the same namespace/name@version replaces the
// current one; tasks already created keep the definition they started with.
func (c *Client) RegisterTemplate(ctx context.Context, t *Template) error {
	var missing []string
	for _, s := range t.Steps {
		if _, ok := c.handlers[s.Handler]; !ok && !slices.Contains(missing, s.Handler) {
			missing = append(missing, s.Handler)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("tasker: template %s uses handlers this client does not have: %v", t.Key(), missing)
	}
	def, err := t.MarshalJSON()
	if err != nil {
		return fmt.Errorf("tasker: encode template %s: %w", t.Key(), err)
	}
	if _, err := c.store.TemplateRegister(ctx, &store.TemplateRegisterParams{ID: t.Digest(), Namespace: t.Namespace,
		Name: t.Name, Version: t.Version, Definition: def, Now: c.clock.Now()}); err != nil {
		return fmt.Errorf("tasker: %w", err)
	}
	c.forgetTemplate(t.Namespace, t.Name, t.Version)
	if err := webhook.SyncTemplate(ctx, c.store, t, c.clock.Now()); err != nil {
		return fmt.Errorf("tasker: record the subscriptions of %s: %w", t.Key(), err)
	}
	c.engine.RegisterTemplate(t)
	return nil
}

// Template returns the current definition of namespace/name@version. An
// empty version selects the highest registered version.
func (c *Client) Template(ctx context.Context, namespace, name, version string) (*Template, error) {
	rec, err := c.currentTemplate(ctx, namespace, name, version)
	if err != nil {
		return nil, err
	}
	return template.FromJSON(rec.Definition)
}

// Templates returns the current definition of every registered template.
func (c *Client) Templates(ctx context.Context) ([]*Template, error) {
	recs, err := c.store.TemplateList(ctx)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	var out []*Template
	for _, r := range recs {
		if !r.Current {
			continue
		}
		t, err := template.FromJSON(r.Definition)
		if err != nil {
			return nil, fmt.Errorf("tasker: template %s: %w", r.ID, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// creationTemplate is currentTemplate for CreateTask: a definition asked
// for by version is read once and kept (the creation checks that it is
// still current); the highest version is looked up every time.
// It reports whether the definition is the kept one.
func (c *Client) creationTemplate(ctx context.Context, namespace, name, version string) (*store.Template, bool, error) {
	if version == "" {
		rec, err := c.currentTemplate(ctx, namespace, name, version)
		return rec, false, err
	}
	key := [3]string{namespace, name, version}
	c.currentMu.Lock()
	rec := c.current[key]
	c.currentMu.Unlock()
	if rec != nil {
		return rec, true, nil
	}
	rec, err := c.currentTemplate(ctx, namespace, name, version)
	if err != nil {
		return nil, false, err
	}
	c.currentMu.Lock()
	if c.current == nil {
		c.current = map[[3]string]*store.Template{}
	}
	c.current[key] = rec
	c.currentMu.Unlock()
	return rec, false, nil
}

// forgetTemplate drops the cached definition of namespace/name@version.
func (c *Client) forgetTemplate(namespace, name, version string) {
	c.currentMu.Lock()
	delete(c.current, [3]string{namespace, name, version})
	c.currentMu.Unlock()
}

func (c *Client) currentTemplate(ctx context.Context, namespace, name, version string) (*store.Template, error) {
	if version != "" {
		rec, err := c.store.TemplateGetCurrent(ctx, namespace, name, version)
		if err != nil {
			return nil, fmt.Errorf("tasker: %w", err)
		}
		return rec, nil
	}
	recs, err := c.store.TemplateVersions(ctx, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	var best *store.Template
	for _, r := range recs {
		if best == nil || semver.Compare("v"+r.Version, "v"+best.Version) > 0 {
			best = r
		}
	}
	if best == nil {
		return nil, fmt.Errorf("tasker: template %s/%s: %w", namespace, name, ErrNotFound)
	}
	return best, nil
}

// TaskRequest asks for a task.
type TaskRequest struct {
	// Namespace and Name select the template.
	Namespace string
	Name      string
	// Version selects the template version; empty selects the highest.
	Version string
	// Context is the task's input, validated against the template's JSON
	// Schema before anything is stored. Empty means {}.
	Context json.RawMessage
	// IdempotencyKey makes the request idempotent: a second request with
	// the same key for the same namespace and name returns the first task.
	// It overrides the template's identity strategy.
	IdempotencyKey string
}

// TaskCreated is the outcome of CreateTask.
type TaskCreated struct {
	Task *Task
	// Created is false when the request duplicated an earlier one and the
	// existing task was returned.
	Created bool
}

// CreateTask validates a request, stores the task and starts it. Invalid
// requests store nothing and return an error wrapping ErrInvalidRequest.
func (c *Client) CreateTask(ctx context.Context, req TaskRequest) (*TaskCreated, error) {
	if req.Namespace == "" || req.Name == "" {
		return nil, fmt.Errorf("tasker: create task: namespace and name are required: %w", ErrInvalidRequest)
	}
	for what, v := range map[string]string{"namespace": req.Namespace, "name": req.Name, "version": req.Version, "idempotency key": req.IdempotencyKey} {
		if err := checkText(what, v, 255); err != nil {
			return nil, err
		}
	}
	// The template read for the request may be replaced before the task is
	// stored: the creation then stores nothing, and is made again with the
	// new definition (validated against its own schema).
	for try := 1; ; try++ {
		created, cached, err := c.createTask(ctx, req)
		// A kept definition that rejects the request or finds an existing
		// task decides by its schema and identity strategy, which a newer
		// definition may have changed: the request is decided again on the
		// current one.
		var ce *ContextError
		if cached && try < 3 && (errors.Is(err, ErrInvalidRequest) || errors.As(err, &ce) || (err == nil && !created.Created)) {
			c.forgetTemplate(req.Namespace, req.Name, req.Version)
			continue
		}
		if !errors.Is(err, store.ErrTemplateReplaced) {
			return created, err
		}
		c.forgetTemplate(req.Namespace, req.Name, req.Version)
		if try == 3 {
			return nil, fmt.Errorf("tasker: create task: template %s/%s@%s was replaced while the task was being created: %w",
				req.Namespace, req.Name, orLatest(req.Version), ErrConflict)
		}
	}
}

// createTask creates the task from the definition of the template that is
// current as far as this client knows, and reports whether that
// definition was the one kept from an earlier request; it fails with
// store.ErrTemplateReplaced, storing nothing, if that definition was
// replaced meanwhile.
func (c *Client) createTask(ctx context.Context, req TaskRequest) (created *TaskCreated, cached bool, err error) {
	rec, cached, err := c.creationTemplate(ctx, req.Namespace, req.Name, req.Version)
	if errors.Is(err, ErrNotFound) {
		return nil, false, fmt.Errorf("tasker: create task: no template %s/%s@%s is registered: %w", req.Namespace, req.Name, orLatest(req.Version), ErrInvalidRequest)
	}
	if err != nil {
		return nil, false, err
	}
	created, err = c.createFrom(ctx, req, rec)
	return created, cached, err
}

// createFrom creates the task of req from the stored template rec.
func (c *Client) createFrom(ctx context.Context, req TaskRequest, rec *store.Template) (*TaskCreated, error) {
	t, err := c.engine.Template(ctx, rec.ID)
	if err != nil {
		return nil, fmt.Errorf("tasker: template %s/%s@%s: %w", rec.Namespace, rec.Name, rec.Version, err)
	}
	taskCtx := req.Context
	if len(taskCtx) == 0 {
		taskCtx = json.RawMessage("{}")
	}
	if len(taskCtx) > c.cfg.MaxContextBytes {
		return nil, fmt.Errorf("tasker: create task: context is %d bytes, over the limit of %d: %w", len(taskCtx), c.cfg.MaxContextBytes, ErrInvalidRequest)
	}
	canonical, err := canonicalJSON(taskCtx)
	if err != nil {
		return nil, fmt.Errorf("tasker: create task: context is not valid JSON: %v: %w", err, ErrInvalidRequest)
	}
	if err := t.ValidateContext(canonical); err != nil {
		var ce *template.ContextError
		if errors.As(err, &ce) {
			return nil, &ContextError{Template: t.Key(), Problems: ce.Problems}
		}
		return nil, fmt.Errorf("tasker: create task: %v: %w", err, ErrInvalidRequest)
	}
	identity, err := identityKey(t, canonical, req.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	specs := make([]store.StepSpec, len(t.Steps))
	for i, s := range t.Steps {
		specs[i] = store.StepSpec{Name: s.Name, Handler: s.Handler, MaxAttempts: s.Retry.Limit, Timeout: s.Timeout, Parents: s.Parents}
		if !s.Retryable {
			specs[i].MaxAttempts = 1
		}
	}
	// A running engine with free slots claims the task's first steps in the
	// creation's transaction: they start without a claim of their own.
	// Templates with a concurrency limit are left to the dispatcher, which
	// counts their slots.
	var claim *store.StepClaimParams
	if t.Concurrency == 0 {
		roots := 0
		for _, s := range t.Steps {
			if len(s.Parents) == 0 {
				roots++
			}
		}
		claim = c.engine.ReserveClaim(roots)
	}
	// With a claim, the creation is not abandoned half-way: a commit that
	// succeeded while its caller gave up would leave the claimed steps
	// running under a lease nobody renews, charged an attempt when rescued.
	createCtx := ctx
	if claim != nil {
		createCtx = context.WithoutCancel(ctx)
	}
	res, err := c.store.TaskCreate(createCtx, &store.TaskCreateParams{TemplateID: rec.ID, Namespace: t.Namespace, Name: t.Name,
		Version: t.Version, Context: canonical, IdentityKey: identity, IdempotencyKey: req.IdempotencyKey, Steps: specs,
		RequireCurrent: true, Claim: claim, Actor: actorOf(ctx), Now: c.clock.Now()})
	var claimed []*store.ClaimedStep
	if err == nil {
		claimed = res.Claimed
	}
	c.engine.EndClaim(claim, claimed)
	if errors.Is(err, store.ErrTemplateReplaced) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	if !res.Created && req.IdempotencyKey != "" &&
		(res.Task.Version != t.Version || !bytes.Equal(res.Task.Context, canonical)) {
		return nil, fmt.Errorf("tasker: idempotency key %q was first used for a different request (task %s, %s/%s@%s): %w",
			req.IdempotencyKey, res.Task.ID, res.Task.Namespace, res.Task.Name, res.Task.Version, ErrConflict)
	}
	return &TaskCreated{Task: taskFromStore(res.Task), Created: res.Created}, nil
}

func orLatest(v string) string {
	if v == "" {
		return "(latest)"
	}
	return v
}

// identityKey computes the deduplication key of a request.
func identityKey(t *Template, canonicalContext json.RawMessage, idempotencyKey string) (string, error) {
	sum := func(parts ...string) string {
		h := sha256.New()
		for _, p := range parts {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	switch {
	case idempotencyKey != "":
		if len(idempotencyKey) > 255 {
			return "", fmt.Errorf("tasker: create task: idempotency key is longer than 255 bytes: %w", ErrInvalidRequest)
		}
		return "key:" + sum(t.Namespace, t.Name, idempotencyKey), nil
	case t.IdentityStrategy == template.IdentityIdempotencyKey:
		return "", fmt.Errorf("tasker: create task: template %s requires an idempotency key: %w", t.Key(), ErrInvalidRequest)
	case t.IdentityStrategy == template.IdentityHash:
		return "hash:" + sum(t.Key(), string(canonicalContext)), nil
	}
	return "", nil
}

// canonicalJSON re-encodes JSON with sorted object keys and no
// insignificant whitespace; numbers keep their text.
func canonicalJSON(raw json.RawMessage) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return json.Marshal(v)
}

// Task returns a task with its steps.
func (c *Client) Task(ctx context.Context, id string) (*Task, error) {
	st, err := c.store.TaskGet(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	t := taskFromStore(st)
	steps, err := c.store.StepListByTask(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	for _, s := range steps {
		t.Steps = append(t.Steps, stepFromStore(s))
	}
	return t, nil
}

// TaskListOpts filter a task listing.
type TaskListOpts struct {
	// State keeps only tasks in this state.
	State TaskState
	// Namespace, Name and Version keep tasks of matching templates.
	Namespace string
	Name      string
	Version   string
	// CreatedAfter and CreatedBefore keep tasks created in
	// [CreatedAfter, CreatedBefore); zero is unbounded.
	CreatedAfter  time.Time
	CreatedBefore time.Time
	// FinishedAfter keeps tasks that finished at or after this time.
	FinishedAfter time.Time
	// Search keeps tasks whose id, namespace, name or idempotency key
	// contains it, ignoring case.
	Search string
	// Cursor continues a listing (TaskPage.NextCursor).
	Cursor string
	// Limit caps the page. Default 100.
	Limit int
}

// Tasks lists tasks, newest first, without their steps: the first page of
// ListTasks.
func (c *Client) Tasks(ctx context.Context, opts *TaskListOpts) ([]*Task, error) {
	page, err := c.ListTasks(ctx, opts)
	if err != nil {
		return nil, err
	}
	return page.Tasks, nil
}

// Transitions returns the audit trail of a task: every transition of the
// task and its steps, in order.
func (c *Client) Transitions(ctx context.Context, taskID string) ([]*Transition, error) {
	if _, err := c.store.TaskGet(ctx, taskID); err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	var out []*Transition
	var after int64
	for {
		evs, err := c.store.EventList(ctx, &store.EventListParams{After: after, TaskID: taskID, TransitionsOnly: true, Limit: 5000})
		if err != nil {
			return nil, fmt.Errorf("tasker: %w", err)
		}
		for _, e := range evs {
			out = append(out, transitionFromStore(e))
			after = e.Cursor
		}
		if len(evs) < 5000 {
			return out, nil
		}
	}
}

// EventListOpts select entries of the durable event log.
type EventListOpts struct {
	// After is the cursor to read after; 0 reads from the start.
	After int64
	// TaskID keeps only one task's events.
	TaskID string
	// Namespace and TaskName keep the events of tasks of matching templates.
	Namespace string
	TaskName  string
	// Names keeps events matching these patterns: exact names, or
	// prefixes ending in ".*" such as "step.*".
	Names []string
	// Since keeps events that occurred at or after this time.
	Since time.Time
	// Limit caps the result. Default 1000.
	Limit int
}

// Events reads the durable event log: every lifecycle transition and custom
// event, in commit order, with its cursor. Read again after the last
// cursor to resume.
func (c *Client) Events(ctx context.Context, opts *EventListOpts) ([]Event, error) {
	p := &store.EventListParams{}
	if opts != nil {
		p.After, p.TaskID, p.Limit = opts.After, opts.TaskID, opts.Limit
		p.Namespace, p.TaskName, p.Names, p.Since = opts.Namespace, opts.TaskName, opts.Names, opts.Since
	}
	evs, err := c.store.EventList(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[i] = engine.EventFromLog(e)
	}
	return out, nil
}

// EventCursorAt returns a cursor to read after (EventListOpts.After) to get
// the events that occurred at or after t, at most a minute's worth of
// entries early; combine it with EventListOpts.Since, as occurrence times
// follow cursors only roughly (see docs/events.md).
func (c *Client) EventCursorAt(ctx context.Context, t time.Time) (int64, error) {
	cur, err := c.store.EventCursorAt(ctx, t)
	if err != nil {
		return 0, fmt.Errorf("tasker: %w", err)
	}
	return cur, nil
}

// checkText rejects text no store can keep: longer than max bytes, not
// UTF-8, or holding a NUL byte (PostgreSQL text cannot).
func checkText(what, s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("tasker: %s is longer than %d bytes: %w", what, max, ErrInvalidRequest)
	case !utf8.ValidString(s):
		return fmt.Errorf("tasker: %s is not valid UTF-8: %w", what, ErrInvalidRequest)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("tasker: %s holds a NUL byte: %w", what, ErrInvalidRequest)
	}
	return nil
}

// CancelTask cancels a pending or in-progress task and its unfinished
// steps. Cancelling a cancelled task does nothing.
func (c *Client) CancelTask(ctx context.Context, id, reason string) (*Task, error) {
	if err := checkText("reason", reason, 1000); err != nil {
		return nil, err
	}
	if _, err := c.store.TaskCancel(ctx, &store.TaskCancelParams{TaskID: id, Reason: reason, Actor: actorOf(ctx), Now: c.clock.Now()}); err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	return c.Task(ctx, id)
}

// RetryTask resets the failed steps of a task in error, each with a fresh
// retry budget, and resumes the task. It returns the task as read after
// the retry: a running engine may have moved it on already.
func (c *Client) RetryTask(ctx context.Context, id, reason string) (*Task, error) {
	if err := checkText("reason", reason, 1000); err != nil {
		return nil, err
	}
	if _, err := c.store.TaskRetry(ctx, &store.TaskRetryParams{TaskID: id, Reason: reason, Actor: actorOf(ctx), Now: c.clock.Now()}); err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	return c.Task(ctx, id)
}

// ResolveTask closes a task in error by hand (resolved_manually), for
// example after the failed work was done another way. A reason is required.
func (c *Client) ResolveTask(ctx context.Context, id, reason string) (*Task, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("tasker: resolving a task by hand needs a reason: %w", ErrInvalidRequest)
	}
	if err := checkText("reason", reason, 1000); err != nil {
		return nil, err
	}
	if _, err := c.store.TaskResolve(ctx, &store.TaskRetryParams{TaskID: id, Reason: reason, Actor: actorOf(ctx), Now: c.clock.Now()}); err != nil {
		return nil, fmt.Errorf("tasker: %w", err)
	}
	return c.Task(ctx, id)
}

// Subscribe receives events published by this client's engine and
// operations, after the changes they describe are committed. Close the
// subscription when done.
func (c *Client) Subscribe(opts *SubscribeOpts) *Subscription { return subscribe(c.bus, opts) }

// WaitTask blocks until the task is finished (complete, error, cancelled or
// resolved manually) or ctx is done, and returns it with its steps. It
// notices changes made by other processes too.
func (c *Client) WaitTask(ctx context.Context, id string) (*Task, error) {
	sub := c.Subscribe(&SubscribeOpts{TaskID: id, Names: []string{"task.*"}, Buffer: 16})
	defer sub.Close()
	poll := time.NewTicker(500 * time.Millisecond)
	defer poll.Stop()
	for {
		t, err := c.store.TaskGet(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("tasker: %w", err)
		}
		if t.State.Finished() {
			return c.Task(ctx, id)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-sub.Events():
		case <-poll.C:
		}
	}
}

// StartOpts are options for Start.
type StartOpts struct {
	// TaskIDs, when set, restricts this process to running these tasks.
	TaskIDs []string
}

// Start runs tasks in this process: it claims ready steps, runs their
// handlers and records the outcomes until Stop. Leases left by a dead
// process on this host are rescued at once.
func (c *Client) Start(ctx context.Context, opts *StartOpts) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return errors.New("tasker: already started")
	}
	if opts != nil {
		c.engine.SetTaskScope(opts.TaskIDs)
	}
	if err := c.engine.Start(ctx); err != nil {
		return fmt.Errorf("tasker: %w", err)
	}
	c.started = true
	c.stopWebhook = c.startDeliverer()
	return nil
}

// startDeliverer runs webhook deliveries until the returned function is
// called; committed events wake it. While the deliverer is idle (no active
// webhook subscription) it ignores wake-ups, so its subscription asks the
// engine for no event then (eventbus.SubscribeOpts.Interest).
func (c *Client) startDeliverer() func() {
	ctx, cancel := context.WithCancel(context.Background())
	sub := &Subscription{sub: eventbus.Subscribe(c.bus, eventbus.SubscribeOpts[Event]{Buffer: 256,
		Interest: func(string) bool { return !c.deliverer.Idle() }})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.deliverer.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-sub.Events():
				if !ok {
					return
				}
				c.deliverer.Wake()
			}
		}
	}()
	return func() {
		cancel()
		sub.Close()
		wg.Wait()
	}
}

// Stop stops claiming steps, lets running handlers finish within the stop
// grace (or until ctx is done), releases the steps of the others so they
// run again later, records every outcome already produced, and waits until
// the events of every change committed by then are published to the
// subscriptions (unless ctx is done first).
func (c *Client) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		return nil
	}
	c.started = false
	err := c.engine.Stop(ctx)
	c.stopWebhook()
	return err
}

// Stats are counters of this process's engine.
type Stats = engine.Stats

// Latency is a histogram of durations in Stats: Quantile estimates its
// percentiles, Sub takes an earlier snapshot from it.
type Latency = engine.Latency

// Stats returns the engine's counters.
func (c *Client) Stats() Stats { return c.engine.Stats() }

// Close stops the engine if it runs and closes the database.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.Stop(ctx)
	drain, cancelDrain := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelDrain()
	err = errors.Join(err, c.engine.Close(drain))
	c.bus.Close()
	return errors.Join(err, c.store.Close())
}

// SchemaVersion returns the database's schema (migration) version.
func (c *Client) SchemaVersion(ctx context.Context) (int64, error) {
	v, ok := c.store.(interface {
		MigrationVersion(ctx context.Context) (current, latest int64, err error)
	})
	if !ok {
		return 0, errors.New("tasker: this store has no schema version")
	}
	cur, _, err := v.MigrationVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("tasker: schema version: %w", err)
	}
	return cur, nil
}

// Database returns the database the client uses (a file path or a URL).
func (c *Client) Database() string { return c.cfg.Database }
