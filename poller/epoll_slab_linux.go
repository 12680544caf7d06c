package poller

import (
	"net"
	"sync"
	"sync/atomic"
)

// Per-connection state of the epoll backend, and what it costs.
//
// A connection is identified by its file descriptor and a 32-bit generation
// assigned when the connection is installed. State lives in slabs indexed by
// fd, allocated lazily in pages of slabPage descriptors:
//
//	slot     40 B  pointer-free (noscan): lock, flags, generation, deferred
//	               close reason, peer address, tick of the last direct write
//	refs     24 B  Session interface (16 B) + *outQueue (8 B, nil while idle)
//	handle    8 B  the poller.Conn given to the handler is an econn (a uint64
//	               boxed in an interface: one 8-byte noscan allocation, held by
//	               the session)
//
// So an idle connection costs 72 bytes in the poller, of which only the
// 24-byte refs entry is scanned by the GC. Nothing else is held per
// connection: no read buffer (each loop reads into one shared buffer), no
// goroutine, no timer, no map entry. An outQueue (pooled) exists only while
// bytes are unsent.
const (
	slabShift = 10
	slabPage  = 1 << slabShift
	// maxFD bounds the slab's page table (and the fd bits of a handle).
	maxFD = 1 << 24
)

// Slot flags.
const (
	fOpen     uint32 = 1 << iota // installed, not yet closed
	fDirty                       // on its loop's dirty list: bytes queued, a write attempt pending
	fArmed                       // EPOLLOUT is registered (the last write would have blocked)
	fShutdown                    // Shutdown called: no more Sends, close when drained
	fCloseReq                    // close requested; the loop closes it
)

// slot is the pointer-free part of a connection's state.
//
// Lock order: slot.mu, then loop.mu (post, markDirty). Only the owning loop
// reads, writes or closes the socket, so a write can never reach a reused
// fd; other goroutines only queue frame references and set flags under
// slot.mu. The loop releases slot.mu during read and writev; the only
// system calls made under it are epoll_ctl(MOD) and the eventfd wake-up.
type slot struct {
	mu sync.Mutex
	// flags is modified only with mu held; it is read without the lock by
	// the owning loop (atomic load).
	flags atomic.Uint32
	// gen is written only by the owning loop, with mu held.
	gen uint32
	// cerr is the reason of a requested close (reasonNone, an errno, ...).
	cerr uint32
	port uint16
	// wtick is the writeTick of the last write Send made itself (guarded
	// by mu): one such write per connection per tick, so that a burst of
	// Sends to one connection is coalesced by its loop (epoll_conn_linux.go).
	wtick uint16
	ip    [16]byte
}

// refs is the pointer-holding part of a connection's state.
type refs struct {
	sess Session   // written and read only by the owning loop
	q    *outQueue // guarded by the slot's mu
}

type slabPageSlots [slabPage]slot
type slabPageRefs [slabPage]refs

// slab holds the per-fd state of one poller. Pages are allocated on first
// use and never freed before the poller is.
type slab struct {
	mu    sync.Mutex // serialises page allocation
	slots []atomic.Pointer[slabPageSlots]
	refs  []atomic.Pointer[slabPageRefs]
}

func newSlab(maxFDs int) *slab {
	if maxFDs <= 0 || maxFDs > maxFD {
		maxFDs = maxFD
	}
	n := (maxFDs + slabPage - 1) >> slabShift
	return &slab{
		slots: make([]atomic.Pointer[slabPageSlots], n),
		refs:  make([]atomic.Pointer[slabPageRefs], n),
	}
}

// get returns fd's slot and refs, or nil if fd was never used.
func (s *slab) get(fd int) (*slot, *refs) {
	pg := fd >> slabShift
	if fd < 0 || pg >= len(s.slots) {
		return nil, nil
	}
	sp := s.slots[pg].Load()
	if sp == nil {
		return nil, nil
	}
	rp := s.refs[pg].Load()
	i := fd & (slabPage - 1)
	return &sp[i], &rp[i]
}

// ensure allocates fd's page if needed; false if fd is out of range.
func (s *slab) ensure(fd int) bool {
	pg := fd >> slabShift
	if fd < 0 || pg >= len(s.slots) {
		return false
	}
	if s.slots[pg].Load() != nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots[pg].Load() == nil {
		// refs first: get() sees a slots page only when refs exists.
		s.refs[pg].Store(new(slabPageRefs))
		s.slots[pg].Store(new(slabPageSlots))
	}
	return true
}

// pages is the number of page-table entries (fds below pages*slabPage).
func (s *slab) pages() int { return len(s.slots) }

func (sl *slot) addr() *net.TCPAddr {
	ip := net.IP(append([]byte(nil), sl.ip[:]...))
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	return &net.TCPAddr{IP: ip, Port: int(sl.port)}
}
