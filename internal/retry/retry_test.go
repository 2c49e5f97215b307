package retry

import (
	"testing"
	"time"
)

func TestDelayExponentialCappedWithJitter(t *testing.T) {
	t.Parallel()
	p := Policy{Limit: 10, Initial: 100 * time.Millisecond, Multiplier: 2, Max: time.Second, Jitter: 0.5}
	tests := []struct {
		attempt int
		u       float64
		want    time.Duration
	}{
		{1, 0.5, 100 * time.Millisecond}, // middle of the band: no jitter
		{2, 0.5, 200 * time.Millisecond},
		{3, 0.5, 400 * time.Millisecond},
		{4, 0.5, 800 * time.Millisecond},
		{5, 0.5, time.Second}, // capped
		{50, 0.5, time.Second},
		{1, 0, 50 * time.Millisecond},    // lowest edge: -50%
		{2, 0.999999, 299999800},         // highest edge: +50% of 200ms (just below)
		{5, 0.999999, time.Second},       // jitter never exceeds the cap
		{0, 0.5, 100 * time.Millisecond}, // attempt < 1 is treated as 1
	}
	for _, tc := range tests {
		if got := p.Delay(tc.attempt, tc.u); got != tc.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", tc.attempt, tc.u, got, tc.want)
		}
	}
}

func TestDelayWithoutJitterIsExact(t *testing.T) {
	t.Parallel()
	p := Policy{Limit: 3, Initial: time.Second, Multiplier: 3, Max: time.Hour}
	for i, want := range []time.Duration{time.Second, 3 * time.Second, 9 * time.Second, 27 * time.Second} {
		if got := p.Delay(i+1, 0.123); got != want {
			t.Errorf("Delay(%d) = %v, want %v", i+1, got, want)
		}
	}
}

func TestRequestedAndExhausted(t *testing.T) {
	t.Parallel()
	p := Default()
	if got := p.Requested(10 * time.Minute); got != 5*time.Minute {
		t.Errorf("Requested(10m) = %v, want capped 5m", got)
	}
	if got := p.Requested(-time.Second); got != 0 {
		t.Errorf("Requested(-1s) = %v, want 0", got)
	}
	if got := p.Requested(2 * time.Second); got != 2*time.Second {
		t.Errorf("Requested(2s) = %v", got)
	}
	if p.Exhausted(2) || !p.Exhausted(3) {
		t.Errorf("Exhausted with limit 3: 2→%v 3→%v", p.Exhausted(2), p.Exhausted(3))
	}
}
