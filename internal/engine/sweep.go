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
		if err := e.maintain(ctx); err != nil && ctx.Err() == nil {
			e.log.WarnContext(ctx, "engine: maintenance failed; will retry", slog.Any("error", err))
		}
		timer.Reset(e.cfg.SweepInterval)
	}
}

// maintenanceLeadership names the leadership of maintenance work.
const maintenanceLeadership = "maintenance"

// maintain runs the maintenance work when this engine is the leader: a
// rescue pass and retention. Other engines only keep trying to become
// leader, so a dead leader is replaced within three sweep intervals.
func (e *Engine) maintain(ctx context.Context) error {
	if len(e.cfg.TaskIDs) > 0 {
		// An engine confined to some tasks (tasker run, resume) rescues
		// leases but leaves the leadership, and retention, to workers.
		return e.sweep(ctx)
	}
	leads, err := e.store.LeaderAcquire(ctx, &store.LeaderParams{Name: maintenanceLeadership, Holder: e.cfg.WorkerID,
		TTL: 3 * e.cfg.SweepInterval, Now: e.clock.Now()})
	if err != nil {
		e.leader.Store(false)
		return err
	}
	if was := e.leader.Swap(leads); was != leads {
		e.log.InfoContext(ctx, "engine: maintenance leadership changed", slog.Bool("leader", leads))
	}
	if !leads {
		return nil
	}
	if err := e.sweep(ctx); err != nil {
		return err
	}
	if e.cfg.Retention > 0 {
		n, err := e.store.TaskDeleteFinished(ctx, &store.TaskDeleteFinishedParams{Before: e.clock.Now().Add(-e.cfg.Retention)})
		if err != nil {
			return err
		}
		if n > 0 {
			e.stats.deleted.Add(int64(n))
			e.log.InfoContext(ctx, "engine: deleted finished tasks past retention", slog.Int("count", n))
		}
	}
	return nil
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
