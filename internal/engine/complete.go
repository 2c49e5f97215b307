package engine

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tasker-go/tasker/internal/event"
	"github.com/tasker-go/tasker/internal/store"
)

// maxCompleteBatch caps the outcomes recorded in one transaction.
const maxCompleteBatch = 256

// completeLoop records attempt outcomes in batches: whatever has arrived
// while the previous batch was being written goes into the next one.
func (e *Engine) completeLoop() {
	defer e.completer.Done()
	ctx := context.Background()
	for a := range e.outcomes {
		batch := []*attempt{a}
	drain:
		for len(batch) < maxCompleteBatch {
			select {
			case more, ok := <-e.outcomes:
				if !ok {
					break drain
				}
				batch = append(batch, more)
			default:
				break drain
			}
		}
		e.record(ctx, batch)
	}
}

// record writes one batch of outcomes, retrying until the store accepts
// it: an outcome a handler produced is never dropped.
func (e *Engine) record(ctx context.Context, batch []*attempt) {
	var done, released []*attempt
	for _, a := range batch {
		if a.release {
			released = append(released, a)
		} else {
			done = append(done, a)
		}
	}
	byReason := map[string][]store.Lease{}
	var reasons []string
	for _, a := range released {
		reason := a.releaseReason
		if reason == "" {
			reason = "worker stopping"
		}
		if byReason[reason] == nil {
			reasons = append(reasons, reason)
		}
		byReason[reason] = append(byReason[reason], store.Lease{StepID: a.cs.Step.ID, LeaseToken: a.cs.Step.LeaseToken,
			Attempt: a.cs.Step.Attempts})
	}
	for _, reason := range reasons {
		e.retryStore(ctx, "release", func() error {
			res, err := e.store.StepRelease(ctx, &store.StepReleaseParams{Worker: e.cfg.WorkerID, Reason: reason,
				Leases: byReason[reason], Now: e.clock.Now()})
			if err != nil {
				return err
			}
			e.stats.released.Add(int64(res.Count))
			return nil
		})
	}
	if len(done) == 0 {
		return
	}
	began := e.clock.Now()
	for _, a := range done {
		if !a.ended.IsZero() {
			e.stats.outcomeWait.observe(began.Sub(a.ended))
		}
	}
	outs := make([]store.StepOutcome, len(done))
	for i, a := range done {
		outs[i] = a.outcome
	}
	// The slots these attempts freed are filled in the same transaction:
	// the children they release start without a claim of their own. The
	// claim reserves a slot per outcome, or per child a completed step may
	// release if it has more; other free slots stay with the dispatcher and
	// with task creations meanwhile. On a store whose writes are serial it
	// reserves every free slot (serialWriter).
	want := 0
	if e.fillOnCompletion {
		want = e.cfg.ClaimBatch
	}
	for _, a := range done {
		n := 1
		if a.outcome.Kind == store.OutcomeComplete && a.tmpl != nil {
			if i := a.cs.Step.Index; i >= 0 && i < len(a.tmpl.Steps) {
				n = max(n, len(a.tmpl.Steps[i].Children))
			}
		}
		want += n
	}
	claim := e.reserveClaim(want)
	var claimed []*store.ClaimedStep
	defer func() {
		e.stats.claimedOnCompletion.Add(int64(len(claimed)))
		e.endClaim(claim, claimed)
	}()
	tried := false
	e.retryStore(ctx, "complete", func() error {
		e.stats.completeCalls.Add(1)
		now := e.clock.Now()
		p := &store.StepCompleteManyParams{Worker: e.cfg.WorkerID, Now: now, Outcomes: outs}
		// A write that is tried again claims nothing: if the failed one
		// committed after all (its answer lost, and the store could not
		// find out that it committed), what it claimed is not known here,
		// and a second claim would strand more steps until their leases
		// expire. The dispatcher fills the slots instead.
		if claim != nil && !tried {
			claim.Now = now
			p.Claim = claim
		}
		tried = true
		res, err := e.store.StepCompleteMany(ctx, p)
		e.stats.completionWrite.observe(e.clock.Now().Sub(now))
		if err != nil {
			return err
		}
		claimed = res.Claimed
		stale := map[int]bool{}
		for _, i := range res.Stale {
			stale[i] = true
		}
		e.stats.stale.Add(int64(len(res.Stale)))
		e.stats.completed.Add(int64(len(done) - len(res.Stale)))
		var observed []event.Event
		for i, a := range done {
			if stale[i] {
				e.log.Warn("engine: discarded the outcome of a lost lease", slog.String("task_id", a.cs.Step.TaskID),
					slog.String("step", a.cs.Step.Name), slog.Int("attempt", a.cs.Step.Attempts))
				observed = append(observed, e.observation(a, event.StepResultDiscarded, 0, nil,
					map[string]any{"worker": e.cfg.WorkerID, "lease_token": a.cs.Step.LeaseToken}))
				continue
			}
			observed = append(observed, a.observed...)
			if a.outcome.Kind == store.OutcomeRetry {
				e.noteDue(a.outcome.NextAttemptAt)
			}
		}
		e.observe(observed)
		return nil
	})
}

// retryStore retries a store write with capped exponential backoff until it
// succeeds.
func (e *Engine) retryStore(ctx context.Context, what string, fn func() error) {
	delay := 50 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		if errors.Is(err, store.ErrClosed) {
			e.log.ErrorContext(ctx, "engine: store closed; outcomes not recorded (their leases will expire and be rescued)", slog.String("op", what))
			return
		}
		e.log.ErrorContext(ctx, "engine: recording outcomes failed; retrying", slog.String("op", what), slog.Any("error", err), slog.Duration("in", delay))
		t := e.clock.NewTimer(delay)
		<-t.C()
		delay = min(delay*2, 5*time.Second)
	}
}
