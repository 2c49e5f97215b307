// Package retry holds a step's retry policy and the pure computation of
// backoff delays: exponential, capped, with jitter.
package retry

import (
	"math"
	"time"
)

// Policy is a step's retry policy.
type Policy struct {
	// Limit is the maximum number of attempts, the first one included. Default 3.
	Limit int `json:"limit"`
	// Initial is the delay after the first failed attempt. Default 1s.
	Initial time.Duration `json:"initial"`
	// Multiplier scales the delay after each further failure. Default 2.
	Multiplier float64 `json:"multiplier"`
	// Max caps every delay, requested ones included. Default 5m.
	Max time.Duration `json:"max"`
	// Jitter spreads each delay uniformly by ± this fraction of it. Default 0.1.
	Jitter float64 `json:"jitter"`
}

// Default returns the policy used when a template sets none.
func Default() Policy {
	return Policy{Limit: 3, Initial: time.Second, Multiplier: 2, Max: 5 * time.Minute, Jitter: 0.1}
}

// Delay returns how long to wait after attempt (1-based) failed. u is a
// uniform random number in [0, 1) that places the delay inside the jitter
// band; passing it in keeps the computation deterministic.
func (p Policy) Delay(attempt int, u float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	base := float64(p.Initial) * math.Pow(p.Multiplier, float64(attempt-1))
	if max := float64(p.Max); base > max || math.IsInf(base, 0) || math.IsNaN(base) {
		base = max
	}
	d := base * (1 + p.Jitter*(2*u-1))
	if d < 0 {
		d = 0
	}
	if d > float64(p.Max) {
		d = float64(p.Max)
	}
	return time.Duration(d)
}

// Requested caps a delay a handler asked for at Max.
func (p Policy) Requested(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	if d > p.Max {
		return p.Max
	}
	return d
}

// Exhausted reports whether no attempt is left after attempts were made.
func (p Policy) Exhausted(attempts int) bool { return attempts >= p.Limit }
