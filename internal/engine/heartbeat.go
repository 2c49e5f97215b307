package engine

import (
	"context"
	"log/slog"

	"github.com/tasker-go/tasker/internal/store"
)

// heartbeatLoop renews the leases of running handlers. A handler whose
// lease is lost (rescued, cancelled) is cancelled; so is one whose lease
// expires because it could not be renewed (the store is unreachable): the
// worker can no longer prove it holds the step, and another worker may
// already run it.
func (e *Engine) heartbeatLoop(ctx context.Context) {
	defer e.heartbeats.Done()
	timer := e.clock.NewTimer(e.cfg.HeartbeatInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		}
		e.heartbeat(ctx)
		timer.Reset(e.cfg.HeartbeatInterval)
	}
}

func (e *Engine) heartbeat(ctx context.Context) {
	attempts, leases := e.leaseSnapshot()
	if len(leases) == 0 {
		return
	}
	e.renewLeases(ctx, attempts, leases)
}

// leaseSnapshot lists the attempts in flight and their leases.
func (e *Engine) leaseSnapshot() ([]*attempt, []store.Lease) {
	e.mu.Lock()
	defer e.mu.Unlock()
	attempts := make([]*attempt, 0, len(e.inflight))
	leases := make([]store.Lease, 0, len(e.inflight))
	for a := range e.inflight {
		attempts = append(attempts, a)
		leases = append(leases, store.Lease{StepID: a.cs.Step.ID, LeaseToken: a.cs.Step.LeaseToken, Attempt: a.cs.Step.Attempts})
	}
	return attempts, leases
}

// renewLeases renews the leases of a snapshot of the attempts in flight,
// and cancels those whose lease is lost. An attempt whose handler finished
// while the renewal ran has left e.inflight: its lease is gone because its
// outcome was recorded (or will be refused if it really was lost), so it
// is not counted as a lost lease and there is nothing left to cancel.
func (e *Engine) renewLeases(ctx context.Context, attempts []*attempt, leases []store.Lease) {
	now := e.clock.Now()
	// A renewal that cannot finish within one interval is as good as failed.
	rctx, cancel := context.WithTimeout(ctx, e.cfg.HeartbeatInterval)
	defer cancel()
	res, err := e.store.StepLeaseRenew(rctx, &store.StepLeaseRenewParams{Worker: e.cfg.WorkerID, Leases: leases, Now: now, TTL: e.cfg.LeaseTTL})
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		e.log.WarnContext(ctx, "engine: lease renewal failed; will retry", slog.Any("error", err))
		// Handlers whose lease has run out cannot go on.
		now = e.clock.Now()
		e.mu.Lock()
		var expired []*attempt
		for _, a := range attempts {
			if _, running := e.inflight[a]; running && !a.leaseUntil.After(now) {
				expired = append(expired, a)
			}
		}
		e.mu.Unlock()
		for _, a := range expired {
			e.loseLease(ctx, a, "lease expired while the store was unreachable")
		}
		return
	}
	renewed := make(map[store.Lease]bool, len(res.Renewed))
	for _, l := range res.Renewed {
		renewed[l] = true
	}
	lost := make(map[store.Lease]bool, len(res.Lost))
	for _, l := range res.Lost {
		lost[l] = true
	}
	until := now.Add(e.cfg.LeaseTTL)
	e.mu.Lock()
	var gone []*attempt
	for i, a := range attempts {
		switch {
		case renewed[leases[i]]:
			a.leaseUntil = until
		case lost[leases[i]]:
			if _, running := e.inflight[a]; running {
				gone = append(gone, a)
			}
		}
	}
	e.mu.Unlock()
	for _, a := range gone {
		e.loseLease(ctx, a, "lease lost")
	}
}

// loseLease cancels a handler that no longer holds its step.
func (e *Engine) loseLease(ctx context.Context, a *attempt, why string) {
	e.stats.leasesLost.Add(1)
	e.log.WarnContext(ctx, "engine: cancelling a handler: "+why, slog.String("task_id", a.cs.Step.TaskID),
		slog.String("step", a.cs.Step.Name), slog.Int("attempt", a.cs.Step.Attempts))
	if a.cancel != nil {
		a.cancel()
	}
}

// waker is implemented by stores that can tell this process about changes
// made by other processes (PostgreSQL LISTEN/NOTIFY). The channel delivers
// a hint that steps may be ready; correctness never depends on it.
type waker interface {
	WakeUps(ctx context.Context) <-chan struct{}
}

// listenLoop wakes the dispatcher on the store's cross-process hints.
func (e *Engine) listenLoop(ctx context.Context, w waker) {
	defer e.loops.Done()
	ch := w.WakeUps(ctx)
	if ch == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			e.Wake()
		}
	}
}
