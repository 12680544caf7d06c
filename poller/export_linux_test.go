package poller

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
