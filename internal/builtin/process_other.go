//go:build !unix

package builtin

import (
	"os/exec"
	"sync/atomic"
)

// processGroup does nothing on platforms without Unix process groups: only
// the program itself is killed on cancellation, not processes it started.
type processGroup struct{}

// setupProcess sets cmd's Cancel to kill the program, recording the
// cancellation.
func setupProcess(cmd *exec.Cmd, cancelled *atomic.Bool) processGroup {
	cmd.Cancel = func() error {
		cancelled.Store(true)
		return cmd.Process.Kill()
	}
	return processGroup{}
}

// kill does nothing: there is no group to clean up.
func (processGroup) kill() {}
