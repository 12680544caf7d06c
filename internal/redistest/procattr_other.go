//go:build !linux

package redistest

import "syscall"

// dieWithParent: only Linux can tie a child's life to its parent's; on
// other systems a crashed test may leave redis-server running.
func dieWithParent() *syscall.SysProcAttr { return nil }
