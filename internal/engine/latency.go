package engine

import (
	"slices"
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of the buckets of the engine's
// latency histograms: fine from 50 µs to 10 ms, where a completion's
// write and an outcome's wait usually fall, coarser up to 10 s.
var latencyBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 200 * time.Microsecond, 300 * time.Microsecond,
	500 * time.Microsecond, 750 * time.Microsecond, time.Millisecond, 1500 * time.Microsecond,
	2 * time.Millisecond, 3 * time.Millisecond, 5 * time.Millisecond, 7500 * time.Microsecond,
	10 * time.Millisecond, 15 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Latency is a snapshot of one of the engine's latency histograms.
type Latency struct {
	// Bounds are the buckets' upper bounds, in ascending order.
	Bounds []time.Duration
	// Counts has one entry per bucket, the durations at most its bound and
	// above the one before, and a last entry for those above every bound.
	Counts []int64
	// Count is the number of durations observed, Sum their total.
	Count int64
	Sum   time.Duration
}

// Mean returns the mean duration observed, or 0 if none was.
func (l Latency) Mean() time.Duration {
	if l.Count == 0 {
		return 0
	}
	return l.Sum / time.Duration(l.Count)
}

// Quantile returns an estimate of the q-quantile (0 ≤ q ≤ 1) of the
// durations observed: the bound of the bucket it falls in, interpolated
// linearly within the bucket (as PostgreSQL's and Prometheus's histogram
// quantiles are). It is 0 if nothing was observed, and the last bound for
// a quantile among the durations above it.
func (l Latency) Quantile(q float64) time.Duration {
	if l.Count == 0 || len(l.Counts) != len(l.Bounds)+1 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := q * float64(l.Count)
	var seen int64
	for i, n := range l.Counts {
		if n == 0 || float64(seen+n) < rank {
			seen += n
			continue
		}
		if i == len(l.Bounds) {
			return l.Bounds[len(l.Bounds)-1]
		}
		var lower time.Duration
		if i > 0 {
			lower = l.Bounds[i-1]
		}
		frac := (rank - float64(seen)) / float64(n)
		return lower + time.Duration(frac*float64(l.Bounds[i]-lower))
	}
	return l.Bounds[len(l.Bounds)-1]
}

// Sub returns the durations observed in l and not in before, an earlier
// snapshot of the same histogram. A before of other buckets (or the zero
// Latency) counts as empty: the result is a copy of l.
func (l Latency) Sub(before Latency) Latency {
	out := Latency{Bounds: slices.Clone(l.Bounds), Counts: slices.Clone(l.Counts), Count: l.Count, Sum: l.Sum}
	if len(before.Counts) != len(l.Counts) || !slices.Equal(before.Bounds, l.Bounds) {
		return out
	}
	for i, n := range before.Counts {
		out.Counts[i] -= n
	}
	out.Count -= before.Count
	out.Sum -= before.Sum
	return out
}

// latencyHistogram counts durations in the buckets of latencyBounds. It is
// safe for concurrent use.
type latencyHistogram struct {
	counts [len(latencyBounds) + 1]atomic.Int64
	sum    atomic.Int64
}

// observe adds d; a negative duration (a clock set back) counts as 0.
func (h *latencyHistogram) observe(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// snapshot returns the histogram's counts now. Under concurrent
// observations its sum may miss the last few of those its counts hold.
func (h *latencyHistogram) snapshot() Latency {
	l := Latency{Bounds: slices.Clone(latencyBounds[:]), Counts: make([]int64, len(latencyBounds)+1), Sum: time.Duration(h.sum.Load())}
	for i := range l.Counts {
		l.Counts[i] = h.counts[i].Load()
		l.Count += l.Counts[i]
	}
	return l
}
