//go:build !(linux || darwin || freebsd)

package main

import "time"

// processCPU is not reported on this system.
func processCPU() (time.Duration, bool) { return 0, false }
