package builtin

import "syscall"

// setParentDeathSignal has the kernel send SIGKILL to the program when the
// worker dies, even by kill -9. It reaches the program only, not processes
// it starts. Strictly, it fires when the OS thread that started the program
// exits; Go ends a thread only when a goroutine exits while locked to it,
// which this package never does.
func setParentDeathSignal(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}
