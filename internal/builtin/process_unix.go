//go:build unix

package builtin

import (
	"errors"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
)

// processGroup is the process group of a running command: the program is
// started as the leader of a new group, so that cancellation reaches the
// processes it starts too (sh -c 'worker & wait').
type processGroup struct{ cmd *exec.Cmd }

// setupProcess makes cmd start in its own process group and sets its Cancel
// to send SIGTERM to the whole group, recording the cancellation. exec.Cmd
// then sends SIGKILL to the program once cmd.WaitDelay (the grace period)
// has passed, and the caller's kill after Wait reaches the rest of the group.
func setupProcess(cmd *exec.Cmd, cancelled *atomic.Bool) processGroup {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
	g := processGroup{cmd: cmd}
	cmd.Cancel = func() error {
		cancelled.Store(true)
		return g.signal(syscall.SIGTERM)
	}
	return g
}

// kill sends SIGKILL to what is left of the group once Wait has returned.
// The group's id is the reaped leader's pid; the kernel does not hand out a
// pid still in use as a group id, so while members are left the signal can
// only reach them, and when none are left it fails with ESRCH.
func (g processGroup) kill() {
	_ = g.signal(syscall.SIGKILL)
}

func (g processGroup) signal(sig syscall.Signal) error {
	if g.cmd.Process == nil {
		return os.ErrProcessDone
	}
	if err := syscall.Kill(-g.cmd.Process.Pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	return nil
}
