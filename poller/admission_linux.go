package poller

import (
	"encoding/binary"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Admission decides, at accept time and before any byte is read, whether a
// new connection may stay. It is shared by every backend.
//
// Counting open descriptors by listing /proc/self/fd costs O(open fds), so
// the count is refreshed at most every fdRefresh and adjusted in between by
// the accepts and closes the poller reports.
type Admission struct {
	maxConns  int
	fdReserve int
	onReject  func(RejectReason)

	conns atomic.Int64 // open connections owned by the poller

	mu        sync.Mutex
	fdLimit   int64 // RLIMIT_NOFILE soft limit
	fdBase    int64 // open fds at the last refresh
	connsBase int64 // conns at the last refresh
	refreshed time.Time
}

const fdRefresh = time.Second

// NewAdmission builds the admission policy for cfg (defaults applied).
func NewAdmission(cfg Config) *Admission {
	a := &Admission{maxConns: cfg.MaxConns, fdReserve: cfg.FDReserve, onReject: cfg.OnReject}
	a.refresh(time.Now())
	return a
}

func (a *Admission) refresh(now time.Time) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil {
		a.fdLimit = int64(rl.Cur)
	}
	a.fdBase = int64(CountOpenFDs())
	a.connsBase = a.conns.Load()
	a.refreshed = now
}

// Admit is called for each accepted connection. It returns "" when the
// connection may stay (and counts it as open), or the reason to reject it.
// A rejected connection is not counted; the caller answers it with
// RejectResponse and closes it.
func (a *Admission) Admit() RejectReason {
	n := a.conns.Add(1)
	if a.maxConns > 0 && n > int64(a.maxConns) {
		a.conns.Add(-1)
		a.reject(RejectMaxConns)
		return RejectMaxConns
	}
	if a.fdReserve >= 0 && a.Headroom() < int64(a.fdReserve) {
		a.conns.Add(-1)
		a.reject(RejectFDReserve)
		return RejectFDReserve
	}
	return ""
}

func (a *Admission) reject(r RejectReason) {
	if a.onReject != nil {
		a.onReject(r)
	}
}

// Rejected reports a connection turned away before Admit (accept-rate
// limiting, accept errors).
func (a *Admission) Rejected(r RejectReason) { a.reject(r) }

// Closed is called once for each admitted connection when it closes.
func (a *Admission) Closed() { a.conns.Add(-1) }

// Conns is the number of admitted, open connections.
func (a *Admission) Conns() int { return int(a.conns.Load()) }

// Headroom estimates RLIMIT_NOFILE minus open file descriptors.
func (a *Admission) Headroom() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if now.Sub(a.refreshed) >= fdRefresh {
		a.refresh(now)
	}
	open := a.fdBase + a.conns.Load() - a.connsBase
	return a.fdLimit - open
}

// CountOpenFDs counts this process's open file descriptors (-1 if unknown).
// It reads /proc/self/fd with getdents into one pooled buffer and allocates
// nothing per descriptor: a metrics scrape of a node holding 19,000
// connections would otherwise make a megabyte of garbage (a string per
// descriptor) that an idle node keeps as RSS until the next GC.
func CountOpenFDs() int {
	fd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	defer unix.Close(fd)
	bp := direntPool.Get().(*[8192]byte)
	defer direntPool.Put(bp)
	n := 0
	for {
		k, err := unix.Getdents(fd, bp[:])
		if err != nil {
			return -1
		}
		if k <= 0 {
			break
		}
		// linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for off := 0; off+19 < k; {
			reclen := int(binary.NativeEndian.Uint16(bp[off+16:]))
			if reclen == 0 {
				return -1
			}
			if name := bp[off+19:]; !(name[0] == '.' && (name[1] == 0 || name[1] == '.' && name[2] == 0)) {
				n++
			}
			off += reclen
		}
	}
	return n - 1 // the directory's own descriptor
}

var direntPool = sync.Pool{New: func() any { return new([8192]byte) }}

// RejectResponse is the complete HTTP response written to a connection
// that admission turned away. Its body is empty, as ASP.NET Core's 503s
// are (SignalR clients show a body instead of the status text); the
// reason is in the X-Edgeplane-Error header, for operators.
func RejectResponse(retryAfter int, reason RejectReason) []byte {
	return []byte("HTTP/1.1 503 Service Unavailable\r\n" +
		"Retry-After: " + strconv.Itoa(retryAfter) + "\r\n" +
		"Content-Length: 0\r\n" +
		"Connection: close\r\n" +
		"X-Edgeplane-Error: over capacity (" + string(reason) + "), retry later\r\n\r\n")
}

// AcceptBackoff paces retries after accept errors such as EMFILE so that
// an exhausted process does not spin a core: 5ms doubling to 1s, reset on
// the next successful accept.
type AcceptBackoff struct{ d time.Duration }

// Failed returns how long to sleep before the next accept.
func (b *AcceptBackoff) Failed() time.Duration {
	if b.d == 0 {
		b.d = 5 * time.Millisecond
	} else {
		b.d = min(2*b.d, time.Second)
	}
	return b.d
}

// Succeeded resets the backoff.
func (b *AcceptBackoff) Succeeded() { b.d = 0 }
