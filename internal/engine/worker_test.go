package engine

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestOwnerIsDead(t *testing.T) {
	t.Parallel()
	self := NewWorkerID()
	if ownerIsDead(self) {
		t.Fatalf("own worker id %s declared dead", self)
	}
	// A process that has exited, in our namespace, is dead.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run a child process: %v", err)
	}
	parts := strings.Split(self, "/")
	parts[1] = fmt.Sprint(cmd.Process.Pid)
	gone := strings.Join(parts, "/")
	if !ownerIsDead(gone) {
		t.Errorf("exited process %s not declared dead", gone)
	}
	// The same pid on another host, or in another PID namespace, is not judged.
	other := append([]string(nil), parts...)
	other[0] = "elsewhere"
	if ownerIsDead(strings.Join(other, "/")) {
		t.Error("a worker on another host was declared dead")
	}
	if len(parts) == 4 {
		other = append([]string(nil), parts...)
		other[3] = "1"
		if ownerIsDead(strings.Join(other, "/")) {
			t.Error("a worker in another PID namespace was declared dead")
		}
	}
	// A live process (our parent) is alive; garbage is never dead.
	parts[1] = fmt.Sprint(os.Getppid())
	if ownerIsDead(strings.Join(parts, "/")) {
		t.Error("live parent process declared dead")
	}
	for _, junk := range []string{"", "w1", "a/b/c", "host/-1/x", "a/b/c/d/e"} {
		if ownerIsDead(junk) {
			t.Errorf("%q declared dead", junk)
		}
	}
}
