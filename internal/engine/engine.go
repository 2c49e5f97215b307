// Package engine runs tasks: the dispatcher claims ready steps in batches
// under a lease, the executor pool runs their handlers with timeouts and
// bounded concurrency, the completer records outcomes in batches (the store
// makes children ready and finalizes tasks in the same transaction), and the
// sweeper rescues expired leases and finalizes anything a crash left behind.
//
// Nothing here loops over tasks: work is driven by events (a task was
// created, a step became ready, a retry fell due, a slot freed up), with a
// slow poll as the fallback that keeps it correct when a signal is missed
// or another process made the change.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasker-go/tasker/internal/clock"
	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/eventbus"
	"github.com/tasker-go/tasker/internal/handler"
	"github.com/tasker-go/tasker/internal/secret"
	"github.com/tasker-go/tasker/internal/store"
	"github.com/tasker-go/tasker/internal/template"
)

// Config configures an Engine. Zero fields take the documented defaults.
type Config struct {
	// WorkerID names this worker in leases and the audit trail. Default:
	// "HOST/PID/RANDOM", which lets a restarted process on the same host
	// recognise the leases of a dead one.
	WorkerID string
	// Handlers are the step handlers this worker runs, by name. The worker
	// only claims steps whose handler it has.
	Handlers map[string]handler.Handler
	// Concurrency bounds the handlers running at once in this process. Default 16.
	Concurrency int
	// Prefetch is the most claimed steps that may wait in this process
	// for a handler slot, beyond Concurrency, so that a slot a handler
	// frees starts its next step at once instead of after a claim's round
	// trip. The engine prefetches only while its handlers are short (their
	// recent mean under PrefetchBelow), and only as many steps as its
	// handlers get through in one claim's time (Concurrency × the mean
	// claim time ÷ the mean handler time): a prefetched step waits, on
	// average, no longer than another worker would take to claim it. A long
	// handler gains nothing from prefetching, and a step waiting behind one
	// would be held from other workers. Default twice Concurrency, eight
	// times on SQLite (DefaultPrefetch); negative: none.
	Prefetch int
	// PrefetchBelow is the mean handler duration under which the engine
	// prefetches. Default 100ms.
	PrefetchBelow time.Duration
	// ClaimBatch caps the steps claimed per store call. Default
	// Concurrency; on a store whose writes commit one after another
	// (SQLite), Concurrency plus Prefetch, since there every commit costs
	// a sync of its own and a completion claims every free slot (see
	// fillOnCompletion).
	ClaimBatch int
	// PollInterval is the fallback interval for looking for ready steps when
	// no signal arrives. Default 1s.
	PollInterval time.Duration
	// SweepInterval is how often the maintenance leader rescues expired
	// leases and finalizes leftovers. A dead worker's steps are back in the
	// ready set at most LeaseTTL + SweepInterval after its last renewal.
	// Default 5s.
	SweepInterval time.Duration
	// LeaseTTL is how long a claim holds a step without renewal; the worker
	// renews the leases of running handlers every HeartbeatInterval. A
	// handler whose lease cannot be renewed before it expires is cancelled.
	// Default 30s.
	LeaseTTL time.Duration
	// HeartbeatInterval is how often leases are renewed. Default LeaseTTL/3.
	HeartbeatInterval time.Duration
	// Retention deletes tasks finished (complete, cancelled, resolved
	// manually) longer ago than this, with their history; 0 keeps them
	// forever. Default 0.
	Retention time.Duration
	// AbandonAfter is how long the executor waits for a handler that ignores
	// its cancelled context before recording the attempt as timed out.
	// Default 5s.
	AbandonAfter time.Duration
	// StopGrace is how long Stop lets running handlers finish before it
	// cancels them and releases their steps. Default 10s.
	StopGrace time.Duration
	// MaxResultBytes caps a step's JSON result; larger results fail the step
	// permanently. Default 1 MiB.
	MaxResultBytes int
	// TaskIDs, when set, restricts this engine to these tasks.
	TaskIDs []string
	// Secrets resolves the ${env:...} and ${file:...} references in step
	// configs when steps run. Default: no reference is allowed.
	Secrets *secret.Policy
	// Logger receives the engine's logs. Default: discard.
	Logger *slog.Logger
	// Clock is the time source. Default: the real clock.
	Clock clock.Clock
	// Rand returns uniform numbers in [0, 1) for backoff jitter. Default math/rand/v2.
	Rand func() float64
}

// DefaultPrefetch is Config.Prefetch when it is not set: twice the
// concurrency, or eight times on a store whose writes are serial
// (SQLite). There every claim rides on a commit of the only writer, which
// costs its sync and the pages it touches whether it carries one step or
// a hundred, so the engine holds enough steps to fill each commit; there
// is rarely a second worker they would be held from. Within it, the
// handlers' mean duration bounds the depth as everywhere (Prefetch).
func DefaultPrefetch(concurrency int, serialWrites bool) int {
	if serialWrites {
		return 8 * concurrency
	}
	return 2 * concurrency
}

func (c Config) withDefaults(serial bool) Config {
	if c.WorkerID == "" {
		c.WorkerID = NewWorkerID()
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	switch {
	case c.Prefetch == 0:
		c.Prefetch = DefaultPrefetch(c.Concurrency, serial)
	case c.Prefetch < 0:
		c.Prefetch = 0
	}
	if c.ClaimBatch <= 0 {
		c.ClaimBatch = c.Concurrency
		if serial {
			c.ClaimBatch += c.Prefetch
		}
	}
	if c.PrefetchBelow <= 0 {
		c.PrefetchBelow = 100 * time.Millisecond
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 5 * time.Second
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 30 * time.Second
	}
	if c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.LeaseTTL {
		c.HeartbeatInterval = c.LeaseTTL / 3
	}
	if c.AbandonAfter <= 0 {
		c.AbandonAfter = 5 * time.Second
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 10 * time.Second
	}
	if c.MaxResultBytes <= 0 {
		c.MaxResultBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	if c.Secrets == nil {
		c.Secrets = &secret.Policy{}
	}
	return c
}

// Stats are counters of the engine's work since it was created.
type Stats struct {
	// DispatchCycles counts wake-ups of the dispatcher.
	DispatchCycles int64
	// ClaimCalls counts claim queries; Claimed counts the steps they returned.
	ClaimCalls int64
	Claimed    int64
	// ClaimedOnCreation counts the steps claimed by the transactions that
	// created their tasks (ReserveClaim).
	ClaimedOnCreation int64
	// ClaimedOnCompletion counts the steps claimed by completion
	// transactions, for the slots their outcomes freed.
	ClaimedOnCompletion int64
	// HandlerRuns counts handler invocations (one per claimed attempt).
	HandlerRuns int64
	// Completed counts outcomes applied; Stale counts outcomes discarded
	// because the lease was lost.
	Completed int64
	Stale     int64
	// CompleteCalls counts completion transactions.
	CompleteCalls int64
	// Finalized counts tasks this engine finalized.
	Finalized int64
	// Rescued counts steps returned by the sweeper.
	Rescued int64
	// Released counts steps released on stop.
	Released int64
	// LeasesLost counts running handlers cancelled because their lease was
	// lost or could not be renewed in time.
	LeasesLost int64
	// Deleted counts finished tasks removed by retention.
	Deleted int64
	// Leader reports whether this engine runs maintenance now.
	Leader bool
	// Running is the number of handlers running now.
	Running int64
	// Prefetched is the number of claimed steps waiting for a handler slot
	// now (Config.Prefetch).
	Prefetched int64
	// StoreStatements counts the statements the store has sent to its
	// database since it was opened (BEGIN and COMMIT included), when the
	// store counts them (both built-in stores do).
	StoreStatements int64
	// OutcomeWait is how long finished attempts waited before the write
	// of their outcome began: from the end of the handler to the start of
	// the completion transaction that records it, which waits for the one
	// in flight (outcomes are written in batches, one batch at a time).
	OutcomeWait Latency
	// CompletionWrite is how long the completion transactions took: the
	// store's write of a batch of outcomes, with the claim of the steps
	// they released and the commit. A parent's hand-off to its child is
	// about its outcome's wait, plus this write, plus the child's launch.
	CompletionWrite Latency
}

// statementCounter is a store that counts the statements it sends.
type statementCounter interface {
	Statements() int64
}

// serialWriter is a store whose write transactions commit one after
// another, each with its own sync (SQLite's single writer). On such a
// store a transaction saved is a commit taken off the writer's path, so
// the engine leaves the slot a handler frees to the completion that
// records its outcome, which claims for it in the same transaction,
// instead of waking the dispatcher for a claim transaction of its own;
// and that completion claims for every free slot, not only those its
// outcomes free, so that each commit carries as many steps as the engine
// may hold (a commit's sync and the pages it writes cost the same for
// one step as for fifty). On a store whose transactions run side by side
// (PostgreSQL) the two overlap, and the dispatcher claims at once.
type serialWriter interface {
	SerialWrites() bool
}

// Engine orchestrates tasks stored in a Store.
type Engine struct {
	cfg   Config
	store store.Store
	bus   *eventbus.Bus
	log   *slog.Logger
	clock clock.Clock
	tmpl  *templateCache

	handlerNames []string
	// fillOnCompletion: a slot freed by a handler is filled by the claim
	// of the completion recording its outcome (see serialWriter).
	fillOnCompletion bool

	wake     chan struct{}
	outcomes chan *attempt
	pub      *publisher

	// runSlots holds a token per running handler: Concurrency of them.
	runSlots chan struct{}
	// handlerTime is a moving mean of recent handlers' durations in
	// nanoseconds, 0 before the first one ends; prefetching waits for it.
	handlerTime atomic.Int64
	// claimTime is a moving mean of the dispatcher's claims' durations in
	// nanoseconds, 0 before the first one; it bounds how many steps are
	// prefetched (capacity).
	claimTime atomic.Int64

	mu          sync.Mutex
	running     int            // handlers running, guarded by mu
	held        int            // claimed steps of this process (running or waiting for a slot), guarded by mu
	perTemplate map[string]int // claimed steps by template id, guarded by mu
	// limitRunning counts the attempts admitted to run by template id, for
	// templates with a concurrency limit; guarded by mu.
	limitRunning map[string]int
	stopWaiting  chan struct{}         // closed when Stop begins: waiting steps are released, guarded by mu
	due          dueTimes              // retry times this process scheduled, guarded by mu
	blocked      bool                  // dispatcher is waiting for a free slot, guarded by mu
	reserved     int                   // slots reserved for a claim made with completions, guarded by mu
	stopping     bool                  // Stop has begun: no claims with completions, guarded by mu
	live         bool                  // started and not stopping: creations may claim, guarded by mu
	inflight     map[*attempt]struct{} // claimed attempts, running or waiting for a slot, guarded by mu

	closeOnce sync.Once
	started   atomic.Bool
	leader    atomic.Bool
	runCtx    context.Context // cancelled to interrupt handlers on stop
	runCancel context.CancelFunc
	stopLoops context.CancelFunc
	// stopHeartbeats ends lease renewal, after the handlers are done.
	stopHeartbeats context.CancelFunc
	heartbeats     sync.WaitGroup
	loops          sync.WaitGroup
	handlers       sync.WaitGroup
	completer      sync.WaitGroup

	stats struct {
		dispatchCycles, claimCalls, claimed, claimedOnCompletion, claimedOnCreation, handlerRuns, completed, stale, completeCalls,
		finalized, rescued, released, leasesLost, deleted atomic.Int64
		outcomeWait, completionWrite latencyHistogram
	}
}

// New returns an engine over st that publishes on bus. Call Start to run it.
func New(st store.Store, bus *eventbus.Bus, cfg Config) *Engine {
	sw, ok := st.(serialWriter)
	serial := ok && sw.SerialWrites()
	cfg = cfg.withDefaults(serial)
	e := &Engine{
		cfg:          cfg,
		store:        st,
		bus:          bus,
		log:          cfg.Logger,
		clock:        cfg.Clock,
		tmpl:         newTemplateCache(st),
		wake:         make(chan struct{}, 1),
		perTemplate:  map[string]int{},
		limitRunning: map[string]int{},
		inflight:     map[*attempt]struct{}{},
		runSlots:     make(chan struct{}, cfg.Concurrency),
		pub:          newPublisher(),
	}
	for name := range cfg.Handlers {
		e.handlerNames = append(e.handlerNames, name)
	}
	e.fillOnCompletion = serial
	st.OnCommit(e.announce)
	go e.runPublisher()
	return e
}

// Close stops publishing events once those already committed are
// published, or when ctx is done, and detaches the engine from the store.
// Call it after Stop.
func (e *Engine) Close(ctx context.Context) error {
	e.closeOnce.Do(func() {
		e.store.OnCommit(nil)
		close(e.pub.stop)
	})
	select {
	case <-e.pub.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("engine: events still unpublished: %w", ctx.Err())
	}
}

// SetTaskScope restricts the engine to the given tasks (none: all tasks).
// Call it before Start.
func (e *Engine) SetTaskScope(taskIDs []string) { e.cfg.TaskIDs = append([]string(nil), taskIDs...) }

// WorkerID returns the name this engine uses in leases.
func (e *Engine) WorkerID() string { return e.cfg.WorkerID }

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	running, prefetched := e.running, e.held-e.running
	e.mu.Unlock()
	var statements int64
	if sc, ok := e.store.(statementCounter); ok {
		statements = sc.Statements()
	}
	return Stats{
		StoreStatements: statements,
		DispatchCycles:  e.stats.dispatchCycles.Load(), ClaimCalls: e.stats.claimCalls.Load(), Claimed: e.stats.claimed.Load(),
		ClaimedOnCompletion: e.stats.claimedOnCompletion.Load(), ClaimedOnCreation: e.stats.claimedOnCreation.Load(),
		HandlerRuns: e.stats.handlerRuns.Load(), Completed: e.stats.completed.Load(), Stale: e.stats.stale.Load(),
		CompleteCalls: e.stats.completeCalls.Load(), Finalized: e.stats.finalized.Load(), Rescued: e.stats.rescued.Load(),
		Released: e.stats.released.Load(), Running: int64(running), Prefetched: int64(prefetched), LeasesLost: e.stats.leasesLost.Load(),
		Deleted: e.stats.deleted.Load(), Leader: e.leader.Load(),
		OutcomeWait: e.stats.outcomeWait.snapshot(), CompletionWrite: e.stats.completionWrite.snapshot(),
	}
}

// Start starts the dispatcher, the completer and the sweeper; after Stop it
// may be started again. It first
// rescues the leases of dead workers on this host, so a restart after a
// crash resumes at once instead of waiting for the leases to expire.
func (e *Engine) Start(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("engine: already started")
	}
	if len(e.handlerNames) == 0 {
		e.started.Store(false)
		return errors.New("engine: no handlers registered")
	}
	e.warm(ctx)
	if err := e.sweep(ctx); err != nil {
		e.started.Store(false)
		return fmt.Errorf("engine: initial sweep: %w", err)
	}
	e.outcomes = make(chan *attempt, e.cfg.Concurrency*2)
	e.runCtx, e.runCancel = context.WithCancel(context.WithoutCancel(ctx))
	e.mu.Lock()
	e.stopping = false
	e.live = true
	e.stopWaiting = make(chan struct{})
	e.mu.Unlock()
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	e.stopLoops = stop
	e.completer.Add(1)
	go e.completeLoop()
	// Heartbeats outlive the other loops on Stop: running handlers keep
	// their leases until they finish or are released.
	hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	e.stopHeartbeats = stopHB
	e.loops.Add(2)
	go e.dispatchLoop(loopCtx)
	go e.sweepLoop(loopCtx)
	e.heartbeats.Add(1)
	go e.heartbeatLoop(hbCtx)
	if w, ok := e.store.(waker); ok {
		e.loops.Add(1)
		go e.listenLoop(loopCtx, w)
	}
	e.Wake()
	e.log.InfoContext(ctx, "engine: started", slog.String("worker", e.cfg.WorkerID), slog.Int("concurrency", e.cfg.Concurrency))
	return nil
}

// Stop stops claiming, lets running handlers finish for up to StopGrace
// (or until ctx is done), then cancels the rest and releases their steps
// so another worker (or the next start) runs them again. Every outcome
// already produced is recorded before Stop returns, and the events of
// every change committed by then are published (unless ctx is done
// first, or a subscriber blocks publication for 10 s): a subscriber closed
// after Stop has received them all.
func (e *Engine) Stop(ctx context.Context) error {
	if !e.started.Load() || e.stopLoops == nil {
		return nil
	}
	e.mu.Lock()
	e.stopping = true
	e.live = false
	select {
	case <-e.stopWaiting:
	default:
		close(e.stopWaiting)
	}
	e.mu.Unlock()
	e.stopLoops()
	e.loops.Wait()
	if e.leader.Load() {
		if err := e.store.LeaderRelease(context.WithoutCancel(ctx), &store.LeaderParams{Name: maintenanceLeadership,
			Holder: e.cfg.WorkerID}); err != nil {
			e.log.WarnContext(ctx, "engine: could not release the maintenance leadership", slog.Any("error", err))
		}
		e.leader.Store(false)
	}
	done := make(chan struct{})
	go func() { e.handlers.Wait(); close(done) }()
	grace := e.clock.NewTimer(e.cfg.StopGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C():
	case <-ctx.Done():
	}
	e.runCancel()
	<-done
	e.stopHeartbeats()
	e.heartbeats.Wait()
	close(e.outcomes)
	e.completer.Wait()
	flushCtx, cancel := context.WithTimeout(ctx, flushWait)
	if !e.pub.flush(flushCtx) {
		e.log.WarnContext(ctx, "engine: stopped before the events of every committed change were published (a subscriber not reading blocks them)",
			slog.Any("error", flushCtx.Err()))
	}
	cancel()
	e.stopLoops = nil
	e.started.Store(false)
	e.log.InfoContext(ctx, "engine: stopped", slog.String("worker", e.cfg.WorkerID))
	return nil
}

// Wake tells the dispatcher that steps may be ready.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Template returns the compiled template with this digest, from the
// engine's cache when it is there.
func (e *Engine) Template(ctx context.Context, id string) (*template.Template, error) {
	return e.tmpl.get(ctx, id)
}

// RegisterTemplate tells the engine about a template so that its
// concurrency limit applies from the first claim.
func (e *Engine) RegisterTemplate(t *template.Template) { e.tmpl.put(t) }

// publish sends one event to the bus.
func (e *Engine) publish(ctx context.Context, ev event.Event) {
	if e.bus == nil {
		return
	}
	if err := eventbus.PublishContext(ctx, e.bus, ev); err != nil {
		e.log.WarnContext(ctx, "engine: event not delivered to every subscriber", slog.String("event", string(ev.Name)), slog.Any("error", err))
	}
}
