package redistest

import "syscall"

// dieWithParent makes the kernel kill redis-server if the test process
// dies first (Linux's PR_SET_PDEATHSIG), so no server outlives a crashed
// test.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
