//go:build unix

package engine

import (
	"errors"
	"os"
	"strings"
	"syscall"
)

// processExists reports whether a process with this pid exists (it may
// belong to another user).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// pidNamespace identifies this process's PID namespace ("4026531836"), or
// returns "" where /proc does not tell. Two containers may share a host
// name; only a process in the same namespace can judge a pid.
func pidNamespace() string {
	link, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimPrefix(link, "pid:["), "]")
}
