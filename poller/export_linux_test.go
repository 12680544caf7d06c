package poller

import "time"

// Internals the external tests (package poller_test) look at.

// EpollFD is the descriptor of a connection of the epoll backend.
func EpollFD(c Conn) int { return c.(econn).fd() }

// EpollIdle reports whether connection c of epoll poller p has settled
// after its queue drained: open, not dirty, EPOLLOUT unregistered, no
// queue held.
func EpollIdle(p Poller, c Conn) bool {
	sl, rf := p.(*epollPoller).slab.get(EpollFD(c))
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.flags.Load() == fOpen && rf.q == nil
}

// SetFDs makes a's descriptor figures limit (RLIMIT_NOFILE) and open (open
// descriptors now, with a's current connections among them), and stops it
// refreshing them from the process for an hour, so that a test sees
// admission against exact numbers.
func (a *Admission) SetFDs(limit, open int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fdLimit, a.fdBase, a.connsBase = limit, open, a.conns.Load()
	a.refreshed = time.Now().Add(time.Hour)
}
