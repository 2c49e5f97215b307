package engine

import (
	"context"
	"log/slog"

	"github.com/tasker-go/tasker/internal/store"
)

// sweepLoop periodically rescues expired leases and finalizes tasks that a
// crash left with nothing open. It is the durable-state path to every
// reaction: correctness never depends on an in-process signal.
func (e *Engine) sweepLoop(ctx context.Context) {
	defer e.loops.Done()
	timer := e.clock.NewTimer(e.cfg.SweepInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		}
		if err := e.sweep(ctx); err != nil && ctx.Err() == nil {
			e.log.WarnContext(ctx, "engine: sweep failed; will retry", slog.Any("error", err))
		}
		timer.Reset(e.cfg.SweepInterval)
	}
}

// sweep runs one rescue pass.
func (e *Engine) sweep(ctx context.Context) error {
	if err := e.tmpl.load(ctx); err != nil {
		return err
	}
	owners, err := e.store.StepLeaseOwners(ctx)
	if err != nil {
		return err
	}
	var dead []string
	for _, o := range owners {
		if o != e.cfg.WorkerID && ownerIsDead(o) {
			dead = append(dead, o)
		}
	}
	res, err := e.store.StepRescue(ctx, &store.StepRescueParams{Now: e.clock.Now(), DeadOwners: dead})
	if err != nil {
		return err
	}
	if res.Count > 0 {
		e.stats.rescued.Add(int64(res.Count))
		e.log.InfoContext(ctx, "engine: rescued steps", slog.Int("count", res.Count), slog.Int("dead_workers", len(dead)))
	}
	return nil
}
