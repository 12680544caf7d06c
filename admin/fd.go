package admin

import "golang.org/x/sys/unix"

func fdLimit() int64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return -1
	}
	return int64(rl.Cur)
}
