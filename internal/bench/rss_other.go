//go:build !(linux || darwin || freebsd)

package bench

// peakRSS is not reported on this system.
func peakRSS() int64 { return 0 }
