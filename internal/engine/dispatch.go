package engine

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/tasker-go/tasker/internal/store"
)

// dispatchLoop claims ready steps whenever it is woken: a step became ready,
// a retry fell due, a slot freed up, or the poll interval passed.
func (e *Engine) dispatchLoop(ctx context.Context) {
	defer e.loops.Done()
	timer := e.clock.NewTimer(e.cfg.PollInterval)
	defer timer.Stop()
	for {
		e.stats.dispatchCycles.Add(1)
		e.claimRound(ctx)
		timer.Reset(e.nextWait(ctx))
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-timer.C():
		}
	}
}

// nextWait is how long the dispatcher sleeps when nothing signals it: until
// the earliest retry this process scheduled, at most PollInterval.
func (e *Engine) nextWait(ctx context.Context) time.Duration {
	wait := e.cfg.PollInterval
	e.mu.Lock()
	due, ok := e.due.peek()
	e.mu.Unlock()
	if ok {
		if d := due.Sub(e.clock.Now()); d < wait {
			wait = max(d, time.Millisecond)
		}
	}
	return wait
}

// noteDue records that a step becomes claimable at t, and wakes the
// dispatcher if that is earlier than anything it was waiting for.
func (e *Engine) noteDue(t time.Time) {
	e.mu.Lock()
	first, ok := e.due.peek()
	earlier := !ok || t.Before(first)
	e.due.push(t)
	e.mu.Unlock()
	if earlier {
		e.Wake()
	}
}

// dueTimes is a min-heap of the times retries scheduled by this process
// become due.
type dueTimes []time.Time

func (h *dueTimes) push(t time.Time) {
	*h = append(*h, t)
	for i := len(*h) - 1; i > 0; {
		p := (i - 1) / 2
		if !(*h)[i].Before((*h)[p]) {
			break
		}
		(*h)[i], (*h)[p] = (*h)[p], (*h)[i]
		i = p
	}
}

func (h dueTimes) peek() (time.Time, bool) {
	if len(h) == 0 {
		return time.Time{}, false
	}
	return h[0], true
}

// popUntil removes every time not after now.
func (h *dueTimes) popUntil(now time.Time) {
	for len(*h) > 0 && !(*h)[0].After(now) {
		last := len(*h) - 1
		(*h)[0] = (*h)[last]
		*h = (*h)[:last]
		for i := 0; ; {
			l, r, m := 2*i+1, 2*i+2, i
			if l < len(*h) && (*h)[l].Before((*h)[m]) {
				m = l
			}
			if r < len(*h) && (*h)[r].Before((*h)[m]) {
				m = r
			}
			if m == i {
				break
			}
			(*h)[i], (*h)[m] = (*h)[m], (*h)[i]
			i = m
		}
	}
}

// claimRound claims steps until capacity or ready steps run out.
func (e *Engine) claimRound(ctx context.Context) {
	now := e.clock.Now()
	e.mu.Lock()
	e.due.popUntil(now)
	e.mu.Unlock()
	for ctx.Err() == nil {
		n := e.reserveSlots()
		if n == 0 {
			return
		}
		got, more := e.claimOnce(ctx, n)
		e.mu.Lock()
		e.reserved -= n
		e.mu.Unlock()
		if got == 0 || !more {
			return
		}
	}
}

// reserveSlots reserves up to ClaimBatch free global slots for a claim,
// in the same critical section that counts them, so that a claim made
// with completions meanwhile does not take them too; the caller gives
// them back when the claim's steps have started. With no free slot it
// marks the dispatcher blocked, so the next freed slot wakes it.
func (e *Engine) reserveSlots() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	free := e.capacity() - e.held - e.reserved
	e.blocked = free <= 0
	n := min(max(free, 0), e.cfg.ClaimBatch)
	e.reserved += n
	return n
}

// claimOnce claims up to n steps: first for templates with a concurrency
// limit (up to their free slots), then for all other templates. It reports
// how many it claimed and whether a full batch suggests more are ready.
func (e *Engine) claimOnce(ctx context.Context, n int) (int, bool) {
	limits := e.tmpl.limited()
	claimed, full := 0, false
	var excluded []string
	for id, limit := range limits {
		excluded = append(excluded, id)
		e.mu.Lock()
		free := limit - e.perTemplate[id]
		e.mu.Unlock()
		want := min(free, n-claimed)
		if want <= 0 {
			continue
		}
		got := e.claim(ctx, &store.StepClaimParams{Limit: want, TemplateIDs: []string{id}})
		claimed += got
		full = full || got == want
	}
	if want := n - claimed; want > 0 {
		got := e.claim(ctx, &store.StepClaimParams{Limit: want, ExcludeTemplateIDs: excluded})
		claimed += got
		full = full || got == want
	}
	return claimed, full
}

// claimParams fills in what every claim of this engine sets.
func (e *Engine) claimParams(p *store.StepClaimParams) {
	p.Worker = e.cfg.WorkerID
	// Below 2^53, so that JSON consumers using doubles read it exactly.
	p.LeaseToken = rand.Int64N(1<<53-1) + 1
	p.Now = e.clock.Now()
	p.LeaseTTL = e.cfg.LeaseTTL
	p.Handlers = e.handlerNames
	p.TaskIDs = e.cfg.TaskIDs
}

// reserveClaim reserves up to want free slots for a claim made in a
// completion or creation transaction, counted in e.handlers already so
// that Stop waits for what it claims; it returns nil when no slot is free
// or the engine is not running or stopping. Templates with a concurrency
// limit are left to the dispatcher, which counts their slots. The caller
// gives the reservation back with endClaim.
func (e *Engine) reserveClaim(want int) *store.StepClaimParams {
	limits := e.tmpl.limited()
	e.mu.Lock()
	defer e.mu.Unlock()
	free := e.capacity() - e.held - e.reserved
	if !e.live || e.stopping || free <= 0 {
		return nil
	}
	n := min(free, e.cfg.ClaimBatch, want)
	if n <= 0 {
		return nil
	}
	e.reserved += n
	e.handlers.Add(n)
	p := &store.StepClaimParams{Limit: n}
	for id := range limits {
		p.ExcludeTemplateIDs = append(p.ExcludeTemplateIDs, id)
	}
	e.claimParams(p)
	return p
}

// ReserveClaim reserves up to want of this engine's free slots for a claim
// made by the transaction that creates a task (store.TaskCreateParams.Claim;
// want is its number of roots), so that the task's first steps start
// without a claim of their own. It returns nil
// when the engine is not running, is stopping, or has no free slot. Give
// the reservation back with EndClaim, with the steps the creation claimed
// (none if it failed).
func (e *Engine) ReserveClaim(want int) *store.StepClaimParams {
	return e.reserveClaim(want)
}

// EndClaim starts the steps a creation claimed with a ReserveClaim
// reservation and gives back the rest of it. A nil reservation is a no-op.
func (e *Engine) EndClaim(p *store.StepClaimParams, claimed []*store.ClaimedStep) {
	if p != nil {
		e.stats.claimedOnCreation.Add(int64(len(claimed)))
	}
	e.endClaim(p, claimed)
}

// endClaim starts the steps claimed with a reservation and gives back the
// rest of it.
func (e *Engine) endClaim(p *store.StepClaimParams, claimed []*store.ClaimedStep) {
	if p == nil {
		return
	}
	for _, cs := range claimed {
		e.launch(cs)
	}
	e.mu.Lock()
	e.reserved -= p.Limit
	wake := e.blocked && len(claimed) < p.Limit
	e.mu.Unlock()
	for range p.Limit - len(claimed) {
		e.handlers.Done()
	}
	if wake {
		e.Wake()
	}
}

// claim runs one claim query and starts a handler for every claimed step.
func (e *Engine) claim(ctx context.Context, p *store.StepClaimParams) int {
	e.claimParams(p)
	e.stats.claimCalls.Add(1)
	began := e.clock.Now()
	res, err := e.store.StepClaim(ctx, p)
	if d := e.clock.Now().Sub(began); d > 0 {
		foldMean(&e.claimTime, d)
	}
	if err != nil {
		if ctx.Err() == nil {
			e.log.WarnContext(ctx, "engine: claim failed; will retry", slog.Any("error", err))
		}
		return 0
	}
	if len(res.Steps) == 0 {
		return 0
	}
	e.stats.claimed.Add(int64(len(res.Steps)))
	for _, cs := range res.Steps {
		e.startAttempt(cs)
	}
	return len(res.Steps)
}
