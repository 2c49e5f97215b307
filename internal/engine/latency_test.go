package engine

import (
	"testing"
	"time"
)

func TestLatencyHistogram(t *testing.T) {
	var h latencyHistogram
	if l := h.snapshot(); l.Count != 0 || l.Quantile(0.5) != 0 || l.Mean() != 0 {
		t.Fatalf("empty histogram: count %d, p50 %s, mean %s", l.Count, l.Quantile(0.5), l.Mean())
	}
	// 100 durations in (1 ms, 1.5 ms], then one in (5 ms, 7.5 ms], one
	// above every bound and one negative (a clock set back, counted as 0).
	for range 100 {
		h.observe(1200 * time.Microsecond)
	}
	h.observe(6 * time.Millisecond)
	h.observe(time.Minute)
	h.observe(-time.Second)
	l := h.snapshot()
	if l.Count != 103 {
		t.Fatalf("count %d, want 103", l.Count)
	}
	if want := 100*1200*time.Microsecond + 6*time.Millisecond + time.Minute; l.Sum != want {
		t.Errorf("sum %s, want %s", l.Sum, want)
	}
	if l.Counts[0] != 1 || l.Counts[len(l.Counts)-1] != 1 {
		t.Errorf("first bucket %d, overflow %d; want 1 and 1", l.Counts[0], l.Counts[len(l.Counts)-1])
	}
	// The median is interpolated inside (1 ms, 1.5 ms]: rank 51.5 of the
	// bucket's 100 after one below it.
	if got, want := l.Quantile(0.5), time.Millisecond+time.Duration(0.505*float64(500*time.Microsecond)); got != want {
		t.Errorf("p50 %s, want %s", got, want)
	}
	if got := l.Quantile(0.99); got <= 5*time.Millisecond || got > 7500*time.Microsecond {
		t.Errorf("p99 %s, want in (5 ms, 7.5 ms]", got)
	}
	if got, last := l.Quantile(1), latencyBounds[len(latencyBounds)-1]; got != last {
		t.Errorf("p100 %s, want the last bound %s for a duration above every bound", got, last)
	}
	if got := l.Quantile(0); got != 0 {
		t.Errorf("p0 %s, want 0", got)
	}

	// Sub leaves what was observed after the earlier snapshot.
	h.observe(300 * time.Microsecond)
	h.observe(300 * time.Microsecond)
	d := h.snapshot().Sub(l)
	if d.Count != 2 || d.Sum != 600*time.Microsecond || d.Quantile(0.5) <= 200*time.Microsecond || d.Quantile(0.99) > 300*time.Microsecond {
		t.Errorf("difference: count %d, sum %s, p50 %s, p99 %s; want 2 in (200 µs, 300 µs]", d.Count, d.Sum, d.Quantile(0.5), d.Quantile(0.99))
	}

	// A before of other buckets counts as empty.
	if e := l.Sub(Latency{}); e.Count != l.Count || e.Sum != l.Sum || e.Counts[1] != l.Counts[1] {
		t.Errorf("l minus the zero Latency: count %d, sum %s; want l's, %d and %s", e.Count, e.Sum, l.Count, l.Sum)
	}

	// A snapshot's bounds are its own: changing them changes no other.
	l.Bounds[0] = time.Hour
	if h.snapshot().Bounds[0] != 50*time.Microsecond {
		t.Error("a snapshot shares its bounds with the histogram")
	}
}
