// Package store is the storage seam of Tasker: the Store interface the
// engine, the client and the server use, the records it reads and writes,
// and the sentinel errors it returns. Implementations live in
// internal/store/sqlite and internal/store/postgres, and every one of them
// must pass the conformance suite in internal/store/storetest.
//
// Rules every implementation keeps:
//   - Every state change writes the new state on its row and one transition
//     record in the durable event log, in the same transaction, guarded in
//     SQL by the state machine of internal/lifecycle.
//   - Readiness is incremental: completing a step touches only its children.
//   - The finalizer runs inside the transaction that closes a task's last
//     open step, so a task is finalized exactly once.
//   - Driver types and errors never leave the store: a missing row is
//     ErrNotFound, whatever the driver says.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/lifecycle"
)

// EventCursorSlack is how far before a time EventCursorAt may start. The
// log's times follow its cursors only roughly: an operation takes its time
// before its transaction reaches the log, so entries of operations
// committed together, or one after the other on several workers, can be
// out of time order by that wait (plus the skew between the workers'
// clocks). A store finds a time's cursor by a binary search over the
// cursors, which is exact when no entry is more than the slack older than
// one before it; starting early only costs its readers the slack's worth
// of entries, which they filter out by time.
const EventCursorSlack = time.Minute

// Sentinel errors.
var (
	// ErrNotFound reports that a task, step or template does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict reports that an operation does not apply to the current
	// state, such as retrying a task that has no failed step.
	ErrConflict = errors.New("conflict")
	// ErrClosed reports use of a closed store.
	ErrClosed = errors.New("store closed")
	// ErrUnavailable reports a database that cannot be reached now (down,
	// restarting, network trouble): retrying later may succeed, unlike a
	// wrong password or a missing database.
	ErrUnavailable = errors.New("database unavailable")
	// ErrTemplateReplaced reports a task creation that asked for a template
	// which is no longer the current definition of its key (a newer one was
	// registered since it was read).
	ErrTemplateReplaced = errors.New("template replaced")
)

// Store is the storage seam. Methods are noun-first and take one params
// struct; every method that writes takes the current time in its params so
// that stores never read a clock.
type Store interface {
	// TemplateRegister stores a template definition (idempotent by digest)
	// and makes it the current definition of its namespace/name@version.
	TemplateRegister(ctx context.Context, p *TemplateRegisterParams) (*Template, error)
	// TemplateGet returns a template definition by its digest.
	TemplateGet(ctx context.Context, id string) (*Template, error)
	// TemplateGetCurrent returns the current definition of namespace/name@version.
	TemplateGetCurrent(ctx context.Context, namespace, name, version string) (*Template, error)
	// TemplateList returns every stored definition, current ones and replaced ones.
	TemplateList(ctx context.Context) ([]*Template, error)
	// TemplateVersions returns the current definition of every version of
	// namespace/name, in no particular order; none is an empty list.
	TemplateVersions(ctx context.Context, namespace, name string) ([]*Template, error)

	// TaskCreate creates a task with its steps and edges and starts it, in
	// one transaction. A task with the same identity key is returned instead
	// of creating a second one (Created false), even under concurrent calls.
	TaskCreate(ctx context.Context, p *TaskCreateParams) (*TaskCreateResult, error)
	// TaskGet returns one task.
	TaskGet(ctx context.Context, id string) (*Task, error)
	// TaskList lists tasks, newest first.
	TaskList(ctx context.Context, p *TaskListParams) ([]*Task, error)
	// TaskCancel cancels a pending or in-progress task and its unfinished steps.
	TaskCancel(ctx context.Context, p *TaskCancelParams) (*ChangeResult, error)
	// TaskRetry moves a task in error back to in_progress and resets its
	// failed steps with a fresh retry budget.
	TaskRetry(ctx context.Context, p *TaskRetryParams) (*ChangeResult, error)

	// TaskResolve closes a task in error by hand (error →
	// resolved_manually); its steps stay as they are. A resolved task
	// counts as finished and is subject to retention.
	TaskResolve(ctx context.Context, p *TaskRetryParams) (*ChangeResult, error)
	// StepReset moves a step in error back to pending with a fresh retry
	// budget; a task in error resumes (error → pending → in_progress).
	StepReset(ctx context.Context, p *StepActionParams) (*ChangeResult, error)
	// StepResolve marks a pending, waiting or failed step resolved_manually:
	// it counts as done and satisfies its dependents. A task in error
	// resumes when that lets it make progress, and completes when every step
	// is done.
	StepResolve(ctx context.Context, p *StepActionParams) (*ChangeResult, error)
	// StepCancel cancels an unfinished step; its dependents can then never
	// run, and an in-progress task with nothing left to run ends in error.
	StepCancel(ctx context.Context, p *StepActionParams) (*ChangeResult, error)
	// StateCounts counts tasks and steps by state, of one namespace when
	// namespace is set.
	StateCounts(ctx context.Context, namespace string) (*StateCounts, error)
	// StepCountReady counts steps claimable at now: the ready-queue depth.
	StepCountReady(ctx context.Context, now time.Time) (int, error)

	// StepListByTask returns the steps of a task in template order.
	StepListByTask(ctx context.Context, taskID string) ([]*Step, error)
	// StepGet returns one step.
	StepGet(ctx context.Context, id string) (*Step, error)
	// StepClaim claims up to Limit ready steps under a lease.
	StepClaim(ctx context.Context, p *StepClaimParams) (*StepClaimResult, error)
	// StepCompleteMany records the outcomes of attempts. An outcome is
	// applied only if its lease is still held; otherwise it is discarded and
	// reported as stale.
	StepCompleteMany(ctx context.Context, p *StepCompleteManyParams) (*StepCompleteManyResult, error)
	// StepRescue returns steps whose lease expired, or whose owner is known
	// to be dead, to the ready set, and finalizes tasks left with nothing open.
	StepRescue(ctx context.Context, p *StepRescueParams) (*ChangeResult, error)
	// StepRelease returns steps a stopping worker still holds to pending,
	// without charging the interrupted attempt against the retry limit.
	StepRelease(ctx context.Context, p *StepReleaseParams) (*ChangeResult, error)
	// StepLeaseRenew extends the leases a worker still holds to Now + TTL.
	// Leases it no longer holds (rescued, cancelled, completed) are
	// reported as lost, so the worker can stop their handlers.
	StepLeaseRenew(ctx context.Context, p *StepLeaseRenewParams) (*StepLeaseRenewResult, error)
	// StepNextRunAt returns the earliest time a not-yet-due step becomes
	// claimable, and false when no step is waiting.
	StepNextRunAt(ctx context.Context, p *StepNextRunAtParams) (time.Time, bool, error)
	// StepLeaseOwners returns the distinct owners of current leases.
	StepLeaseOwners(ctx context.Context) ([]string, error)

	// LeaderAcquire makes Holder the leader of Name until Now + TTL if
	// nobody else holds an unexpired leadership, or extends its own. It
	// reports whether Holder leads. Maintenance (rescue, retention) runs on
	// the leader only.
	LeaderAcquire(ctx context.Context, p *LeaderParams) (bool, error)
	// LeaderRelease gives up a leadership Holder has, so another worker can
	// take over at once.
	LeaderRelease(ctx context.Context, p *LeaderParams) error
	// TaskDeleteFinished deletes up to Limit tasks that finished before
	// Before (complete, cancelled or resolved manually; not error), with
	// their steps, edges and log entries. It returns how many it deleted.
	TaskDeleteFinished(ctx context.Context, p *TaskDeleteFinishedParams) (int, error)

	// EventList reads the durable event log after a cursor, oldest first.
	EventList(ctx context.Context, p *EventListParams) ([]*Event, error)
	// EventCursorAt returns a cursor to read after to get the events that
	// occurred at or after t: at most EventCursorSlack's worth of entries
	// before the first of them, or the last cursor when none occurred at
	// or after t less the slack. Occurrence times follow cursors only
	// roughly, so readers still filter with EventListParams.Since.
	EventCursorAt(ctx context.Context, t time.Time) (int64, error)

	// TokenCreate stores a new API token.
	TokenCreate(ctx context.Context, p *TokenCreateParams) (*Token, error)
	// TokenGetByHash returns the token whose secret hashes to hash.
	TokenGetByHash(ctx context.Context, hash string) (*Token, error)
	// TokenList returns every token, newest first.
	TokenList(ctx context.Context) ([]*Token, error)
	// TokenRevoke revokes a token by id (idempotent).
	TokenRevoke(ctx context.Context, id string, now time.Time) (*Token, error)

	// SubscriptionSync replaces the subscriptions of a source: new ones
	// start at the end of the event log (they deliver events from now on),
	// existing ones keep their cursor, and those no longer listed are
	// deactivated. It returns the source's subscriptions.
	SubscriptionSync(ctx context.Context, p *SubscriptionSyncParams) ([]*Subscription, error)
	// SubscriptionList returns subscriptions with their delivery counts,
	// ordered by id.
	SubscriptionList(ctx context.Context, p *SubscriptionListParams) ([]*Subscription, error)
	// SubscriptionAdvance moves a subscription's cursor from From to To
	// and creates its deliveries, atomically. A cursor that is no longer
	// From (another process advanced it) is an ErrConflict and changes
	// nothing. A delivery for an event that already has one is skipped.
	SubscriptionAdvance(ctx context.Context, p *SubscriptionAdvanceParams) error
	// DeliveryClaim claims pending deliveries that are due, oldest due
	// first: it counts an attempt and pushes their next attempt Lease
	// ahead. Concurrent claims never return the same delivery.
	DeliveryClaim(ctx context.Context, p *DeliveryClaimParams) ([]*Delivery, error)
	// DeliveryFinish records an attempt's outcome. A delivery whose
	// attempt count moved on, or that is no longer pending, is an
	// ErrConflict.
	DeliveryFinish(ctx context.Context, p *DeliveryFinishParams) error
	// DeliveryList lists deliveries, newest first.
	DeliveryList(ctx context.Context, p *DeliveryListParams) ([]*Delivery, error)
	// DeliveryGet returns one delivery.
	DeliveryGet(ctx context.Context, id string) (*Delivery, error)
	// DeliveryRetry sends a failed or delivered delivery again: pending,
	// due now, with a fresh attempt budget. A pending one is an
	// ErrConflict.
	DeliveryRetry(ctx context.Context, id string, now time.Time) (*Delivery, error)
	// DeliveryDeleteDelivered deletes deliveries delivered before a time
	// and returns how many.
	DeliveryDeleteDelivered(ctx context.Context, before time.Time) (int, error)

	// Ping checks that the store can serve requests.
	Ping(ctx context.Context) error

	// OnCommit registers fn, called after every committed change that
	// produced events, in commit order, before the writing method returns
	// (unless the method's context ends while it waits for the commits
	// before its own to be announced: fn then runs later, still in order).
	// StepClaim is the exception: it may return before fn ran for its
	// change (fn runs later, still in commit order, before fn of any change
	// committed after it), so that the steps it claimed start without
	// waiting for the announcement of other transactions in flight.
	// fn runs on the store's commit path, possibly on the goroutine of
	// another write: it must be quick and never block.
	// Registering again replaces fn; nil unregisters it.
	OnCommit(fn func(*ChangeResult))

	// Close releases the store's resources.
	Close() error
}

// StateCounts are numbers of tasks and steps by state.
type StateCounts struct {
	Tasks map[lifecycle.TaskState]int
	Steps map[lifecycle.StepState]int
}

// Template is a stored template definition.
type Template struct {
	// ID is the digest of the definition.
	ID        string
	Namespace string
	Name      string
	Version   string
	// Definition is the template's canonical JSON.
	Definition json.RawMessage
	// Current reports whether this is the current definition of its key.
	Current      bool
	RegisteredAt time.Time
}

// TemplateRegisterParams are the inputs of TemplateRegister.
type TemplateRegisterParams struct {
	ID         string
	Namespace  string
	Name       string
	Version    string
	Definition json.RawMessage
	Now        time.Time
}

// Task is a stored task.
type Task struct {
	ID         string
	TemplateID string
	Namespace  string
	Name       string
	Version    string
	State      lifecycle.TaskState
	Context    json.RawMessage
	// IdentityKey deduplicates requests; empty when the task is not deduplicated.
	IdentityKey string
	// IdempotencyKey is the key the request carried, if any.
	IdempotencyKey string
	StepsTotal     int
	// StepsDone counts steps complete or resolved manually.
	StepsDone int
	// StepsOpen counts steps ready, running or waiting for retry.
	StepsOpen int
	// Seq is the number of transitions of the task.
	Seq        int
	CreatedAt  time.Time
	UpdatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
}

// Step is a stored step.
type Step struct {
	ID         string
	TaskID     string
	Index      int
	Name       string
	TemplateID string
	Handler    string
	State      lifecycle.StepState
	// Attempts counts every attempt ever claimed.
	Attempts int
	// MaxAttempts is the template's limit; RetryLimit is the effective limit
	// on Attempts (raised by an operator reset).
	MaxAttempts   int
	RetryLimit    int
	Timeout       time.Duration
	DepsRemaining int
	Results       json.RawMessage
	LastError     string
	ErrorClass    string
	// RunAt is when the step becomes claimable; zero when it is not ready.
	RunAt          time.Time
	LeaseOwner     string
	LeaseToken     int64
	LeaseExpiresAt time.Time
	// Seq is the number of transitions of the step.
	Seq        int
	CreatedAt  time.Time
	UpdatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
}

// Event is one row of the durable event log: a transition of a task or a
// step (To is set) or a custom event published by a handler (To is empty).
type Event struct {
	// Cursor is the global, increasing position in the log.
	Cursor     int64
	TaskID     string
	StepID     string
	StepName   string
	Namespace  string
	TaskName   string
	Version    string
	Name       event.Name
	Seq        int
	From       string
	To         string
	Metadata   Metadata
	Payload    json.RawMessage
	OccurredAt time.Time
}

// IsTransition reports whether the entry records a state change.
func (e *Event) IsTransition() bool { return e.To != "" }

// Metadata is what a transition records besides its states.
type Metadata struct {
	Reason         string    `json:"reason,omitempty"`
	Actor          string    `json:"actor,omitempty"`
	Attempt        int       `json:"attempt,omitempty"`
	RetryLimit     int       `json:"retry_limit,omitempty"`
	Error          string    `json:"error,omitempty"`
	ErrorClass     string    `json:"error_class,omitempty"`
	Worker         string    `json:"worker,omitempty"`
	LeaseToken     int64     `json:"lease_token,omitempty"`
	LeaseExpiresAt time.Time `json:"lease_expires_at,omitzero"`
	DurationMS     int64     `json:"duration_ms,omitempty"`
	NextAttemptAt  time.Time `json:"next_attempt_at,omitzero"`
	Permanent      bool      `json:"permanent,omitempty"`
	StepCount      int       `json:"step_count,omitempty"`
	FailedSteps    []string  `json:"failed_steps,omitempty"`
}

// StepSpec describes one step of a task to create.
type StepSpec struct {
	Name        string
	Handler     string
	MaxAttempts int
	Timeout     time.Duration
	// Parents are indices of the steps this one depends on.
	Parents []int
}

// TaskCreateParams are the inputs of TaskCreate.
type TaskCreateParams struct {
	TemplateID     string
	Namespace      string
	Name           string
	Version        string
	Context        json.RawMessage
	IdentityKey    string
	IdempotencyKey string
	Steps          []StepSpec
	// RequireCurrent makes the creation fail with ErrTemplateReplaced,
	// storing nothing, unless TemplateID is still the current definition
	// of its key when the task is stored; the check is part of the
	// creation's transaction, so a caller may read the template from a
	// cache. An existing task with the same identity is returned either way.
	RequireCurrent bool
	// Claim, when set, claims up to Claim.Limit of the new task's ready
	// steps (its roots, in step order) in the creation's transaction, for
	// the worker and lease it names: they are stored already running, and
	// their claim follows the creation in the log. Its Handlers and
	// template filters apply; a claim restricted to TaskIDs claims nothing
	// (the new task cannot be among them). Claim.Now is ignored (Now is used).
	Claim *StepClaimParams
	// Actor is who asked; recorded on the task's creation.
	Actor string
	Now   time.Time
}

// TaskCreateResult is the outcome of TaskCreate.
type TaskCreateResult struct {
	Task *Task
	// Created is false when an existing task with the same identity was returned.
	Created bool
	// Events are the committed log entries, in order (none when not created).
	Events []*Event
	// Ready lists the steps that became ready.
	Ready []Ready
	// Claimed are the steps claimed with TaskCreateParams.Claim, in step
	// order.
	Claimed []*ClaimedStep
}

// Ready reports steps of one task that became ready to run.
type Ready struct {
	TaskID string
	Steps  []string
	// At is when they become claimable.
	At time.Time
}

// Finalized reports a task the finalizer moved to its end state.
type Finalized struct {
	TaskID     string
	State      lifecycle.TaskState
	StepsDone  int
	StepsTotal int
}

// ChangeResult is what an operation that changes states committed.
type ChangeResult struct {
	Events    []*Event
	Ready     []Ready
	Finalized []Finalized
	// Count is how many entities the operation changed.
	Count int
	// ClaimedReady is how many of the steps in Ready the change claimed
	// itself (a completion with a claim); the others wait for a worker.
	ClaimedReady int
}

// TaskListParams filter TaskList.
type TaskListParams struct {
	State lifecycle.TaskState
	// Namespace, Name and Version keep tasks of matching templates.
	Namespace string
	Name      string
	Version   string
	// CreatedAfter and CreatedBefore keep tasks created in
	// [CreatedAfter, CreatedBefore); zero means unbounded.
	CreatedAfter  time.Time
	CreatedBefore time.Time
	// FinishedAfter keeps tasks that finished at or after this time.
	FinishedAfter time.Time
	// Search keeps tasks whose id, namespace, name or idempotency key
	// contains it, ignoring case.
	Search string
	// After continues a listing: tasks strictly after this one in the
	// order of the listing (newest first).
	After *TaskCursor
	// Limit defaults to 100.
	Limit int
}

// TaskCursor is a position in a task listing (newest first).
type TaskCursor struct {
	CreatedAt time.Time
	ID        string
}

// TaskCancelParams are the inputs of TaskCancel.
type TaskCancelParams struct {
	TaskID string
	Reason string
	// Actor is who asked (a token name, a user); recorded in the audit trail.
	Actor string
	Now   time.Time
}

// TaskRetryParams are the inputs of TaskRetry.
type TaskRetryParams struct {
	TaskID string
	Reason string
	Actor  string
	Now    time.Time
}

// StepActionParams are the inputs of the operator actions on one step.
type StepActionParams struct {
	StepID string
	Reason string
	Actor  string
	Now    time.Time
}

// StepClaimParams are the inputs of StepClaim.
type StepClaimParams struct {
	Worker string
	// LeaseToken fences this claim: an outcome is applied only with it.
	LeaseToken int64
	Limit      int
	Now        time.Time
	// LeaseTTL sets the lease expiry to Now + LeaseTTL; the worker renews
	// it while the handler runs (StepLeaseRenew).
	LeaseTTL time.Duration
	// Handlers restricts the claim to steps run by these handlers.
	Handlers []string
	// TemplateIDs, when set, restricts the claim to these templates.
	TemplateIDs []string
	// ExcludeTemplateIDs skips steps of these templates.
	ExcludeTemplateIDs []string
	// TaskIDs, when set, restricts the claim to these tasks.
	TaskIDs []string
}

// CountClaimedReady counts the steps of ready that are among claimed.
func CountClaimedReady(ready []Ready, claimed []*ClaimedStep) int {
	if len(claimed) == 0 {
		return 0
	}
	got := make(map[[2]string]bool, len(claimed))
	for _, cs := range claimed {
		got[[2]string{cs.Step.TaskID, cs.Step.Name}] = true
	}
	n := 0
	for _, r := range ready {
		for _, name := range r.Steps {
			if got[[2]string{r.TaskID, name}] {
				n++
			}
		}
	}
	return n
}

// ValidateClaim checks the parameters a claim needs.
func ValidateClaim(p *StepClaimParams) error {
	if p.Worker == "" || p.LeaseTTL <= 0 {
		return errors.New("worker and lease TTL are required")
	}
	return nil
}

// ClaimedStep is a step claimed for execution with everything its handler needs.
type ClaimedStep struct {
	Step      *Step
	Namespace string
	TaskName  string
	Version   string
	Context   json.RawMessage
	// Dependencies are the results of the step's parents by step name.
	Dependencies map[string]json.RawMessage
}

// StepClaimResult is the outcome of StepClaim.
type StepClaimResult struct {
	Steps  []*ClaimedStep
	Events []*Event
}

// OutcomeKind says how an attempt ended.
type OutcomeKind int

// Outcome kinds.
const (
	// OutcomeComplete: the step is complete with its result.
	OutcomeComplete OutcomeKind = iota + 1
	// OutcomeRetry: the step waits for retry until NextAttemptAt.
	OutcomeRetry
	// OutcomeFail: the step is in error.
	OutcomeFail
)

// CustomEvent is a custom event published by a handler during an attempt.
type CustomEvent struct {
	Name    string
	Payload json.RawMessage
}

// StepOutcome is the outcome of one attempt.
type StepOutcome struct {
	StepID     string
	LeaseToken int64
	Attempt    int
	Kind       OutcomeKind
	Result     json.RawMessage
	Error      string
	ErrorClass string
	Permanent  bool
	// NextAttemptAt is when a retried step becomes claimable again.
	NextAttemptAt time.Time
	DurationMS    int64
	CustomEvents  []CustomEvent
}

// StepCompleteManyParams are the inputs of StepCompleteMany.
type StepCompleteManyParams struct {
	Worker   string
	Now      time.Time
	Outcomes []StepOutcome
	// Claim, when set, also claims up to Claim.Limit ready steps in the
	// same transaction, after the outcomes are applied: the children they
	// made ready can be claimed at once, without a transaction of their
	// own. Claim.Now is ignored; Now is used.
	Claim *StepClaimParams
}

// StepCompleteManyResult is the outcome of StepCompleteMany.
type StepCompleteManyResult struct {
	ChangeResult
	// Stale lists the outcomes discarded because their lease was lost, by
	// index into the params' Outcomes.
	Stale []int
	// Claimed are the steps claimed for the params' Claim, in claim order.
	Claimed []*ClaimedStep
}

// StepRescueParams are the inputs of StepRescue.
type StepRescueParams struct {
	Now time.Time
	// DeadOwners are lease owners known to be dead: their leases are
	// rescued without waiting for expiry.
	DeadOwners []string
	// Limit caps the steps rescued in one call; default 1000.
	Limit int
}

// Lease identifies a claim of a step.
type Lease struct {
	StepID     string
	LeaseToken int64
	Attempt    int
}

// StepReleaseParams are the inputs of StepRelease.
type StepReleaseParams struct {
	Worker string
	Reason string
	Leases []Lease
	Now    time.Time
}

// StepLeaseRenewParams are the inputs of StepLeaseRenew.
type StepLeaseRenewParams struct {
	Worker string
	Leases []Lease
	Now    time.Time
	TTL    time.Duration
}

// StepLeaseRenewResult is the outcome of StepLeaseRenew.
type StepLeaseRenewResult struct {
	// Renewed lists the leases that now expire at Now + TTL.
	Renewed []Lease
	// Lost lists the leases the worker no longer holds.
	Lost []Lease
}

// LeaderParams are the inputs of LeaderAcquire and LeaderRelease.
type LeaderParams struct {
	Name   string
	Holder string
	TTL    time.Duration
	Now    time.Time
}

// TaskDeleteFinishedParams are the inputs of TaskDeleteFinished.
type TaskDeleteFinishedParams struct {
	Before time.Time
	// Limit caps the tasks deleted in one call; default 1000.
	Limit int
}

// StepNextRunAtParams filter StepNextRunAt like a claim would.
type StepNextRunAtParams struct {
	Handlers []string
	TaskIDs  []string
}

// EventListParams filter EventList.
type EventListParams struct {
	// After is the cursor to read after; 0 reads from the start.
	After  int64
	TaskID string
	StepID string
	// Namespace, TaskName and Version keep the events of tasks of
	// matching templates.
	Namespace string
	TaskName  string
	Version   string
	// Names keeps events whose name matches a pattern: an exact name, or
	// a prefix ending in ".*" such as "step.*". Empty keeps all.
	Names []string
	// Since keeps events that occurred at or after this time.
	Since time.Time
	// TransitionsOnly skips custom events.
	TransitionsOnly bool
	// Limit defaults to 1000.
	Limit int
}

// Token is an API bearer token. Only the hash of its secret is stored.
type Token struct {
	ID   string
	Name string
	// Role is admin, operator or viewer.
	Role string
	// Namespace, when set, confines the token to one namespace.
	Namespace string
	// Hash is the hex SHA-256 of the secret.
	Hash      string
	CreatedAt time.Time
	// ExpiresAt is zero for a token that does not expire.
	ExpiresAt time.Time
	// RevokedAt is zero for a token that is not revoked.
	RevokedAt time.Time
}

// TokenCreateParams are the inputs of TokenCreate.
type TokenCreateParams struct {
	ID        string
	Name      string
	Role      string
	Namespace string
	Hash      string
	ExpiresAt time.Time
	Now       time.Time
}

// Edge is a dependency between two steps of a task.
type Edge struct {
	ParentID string
	ChildID  string
	TaskID   string
}

// Dump is a batch of a store's rows, for copying one store into another.
type Dump struct {
	Tokens []*Token
	// Subscriptions and Deliveries are the webhook state, cursors kept.
	Subscriptions []*Subscription
	Deliveries    []*Delivery
	Templates     []*Template
	Tasks         []*Task
	Steps         []*Step
	Edges         []Edge
	Events        []*Event
}

// Size is the number of rows in the batch.
func (d *Dump) Size() int {
	return len(d.Tokens) + len(d.Subscriptions) + len(d.Deliveries) + len(d.Templates) + len(d.Tasks) + len(d.Steps) + len(d.Edges) + len(d.Events)
}
