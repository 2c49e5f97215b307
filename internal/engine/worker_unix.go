//go:build unix

package engine

import (
	"errors"
	"syscall"
)

// processExists reports whether a process with this pid exists (it may
// belong to another user).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
