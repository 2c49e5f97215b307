//go:build !(linux || darwin || freebsd)

package bench

import "time"

// peakRSS is not reported on this system.
func peakRSS() int64 { return 0 }

// processCPU is not reported on this system.
func processCPU() (user, system time.Duration, ok bool) { return 0, 0, false }
