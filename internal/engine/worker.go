package engine

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// NewWorkerID returns "HOST/PID/RANDOM", or "HOST/PID/RANDOM/PIDNS" where
// the process's PID namespace is known (Linux): unique per process, and
// telling which host and process hold a lease.
func NewWorkerID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := fmt.Sprintf("%s/%d/%s", hostname(), os.Getpid(), hex.EncodeToString(b[:]))
	if ns := pidNamespace(); ns != "" {
		id += "/" + ns
	}
	return id
}

func hostname() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return strings.ReplaceAll(host, "/", "_")
}

// ownerIsDead reports whether a lease owner is a process that no longer
// exists on this host, in this PID namespace. Owners elsewhere, or in a
// format this build does not know, are never declared dead: their leases
// simply expire.
func ownerIsDead(owner string) bool {
	parts := strings.Split(owner, "/")
	if len(parts) != 3 && len(parts) != 4 {
		return false
	}
	if parts[0] != hostname() {
		return false
	}
	ns := ""
	if len(parts) == 4 {
		ns = parts[3]
	}
	if ns != pidNamespace() {
		return false
	}
	pid, err := strconv.Atoi(parts[1])
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return !processExists(pid)
}
