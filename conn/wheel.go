package conn

import (
	"sync"
	"sync/atomic"
	"time"
)

// wheelLinks is an item's place on the wheel, embedded in the item: the
// wheel is an intrusive list, so scheduling allocates nothing and an item
// leaves the wheel the moment it is removed (a closed connection is not
// kept alive until its slot comes round).
type wheelLinks[T any] struct {
	prev, next *T
}

// slotTicking marks an item taken off its slot by a sweep and being ticked.
const slotTicking = wheelSlots + 1

// wheelItem is something the wheel checks when its deadline comes.
type wheelItem[T any] interface {
	*T
	// tick is called at or after the item's deadline with the wheel's
	// current second. It returns the next deadline (an absolute second,
	// > now) or 0 to leave the wheel.
	tick(now int64) int64
	// links returns the item's embedded wheelLinks.
	links() *wheelLinks[T]
	// slot returns where the item keeps its slot number (a separate byte,
	// so an item can put it in padding): 0 when not on the wheel,
	// 1..wheelSlots for slot+1, slotTicking while a sweep ticks it.
	slot() *uint8
}

const (
	wheelSlots = 64
	// sweepBatch is how many items a sweep takes off a slot per lock hold.
	sweepBatch = 256
)

// wheel is a timing wheel with one-second slots: every connection sits in
// at most one slot, a doubly linked list threaded through the items, and
// each second one slot is swept in batches. There is no timer per
// connection and no allocation per scheduling. An item is only moved when
// its slot is swept (or it is removed), so reads and writes just store a
// timestamp.
type wheel[T any, P wheelItem[T]] struct {
	start time.Time
	now   atomic.Int64 // seconds since start: the coarse clock

	mu    sync.Mutex
	heads [wheelSlots]*T
	n     int   // items on the slot lists
	swept int64 // last second swept

	stop chan struct{}
	done chan struct{}
}

func newWheel[T any, P wheelItem[T]]() *wheel[T, P] {
	w := &wheel[T, P]{start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	w.now.Store(1)
	w.swept = 1
	return w
}

// Now is the coarse clock in whole seconds (starts at 1).
func (w *wheel[T, P]) Now() int64 { return w.now.Load() }

// add schedules it for second at (clamped to the wheel's horizon). An item
// is on the wheel at most once: adding a scheduled item moves it, and an
// add during the item's own tick overrides what the tick returns.
func (w *wheel[T, P]) add(it P, at int64) {
	w.mu.Lock()
	w.addLocked(it, at)
	w.mu.Unlock()
}

// remove takes it off the wheel (a no-op if it is not on it); during its
// tick, the tick's result is then ignored.
func (w *wheel[T, P]) remove(it P) {
	w.mu.Lock()
	switch sl := it.slot(); *sl {
	case 0:
	case slotTicking:
		*sl = 0
	default:
		w.unlinkLocked(it)
	}
	w.mu.Unlock()
}

// Lock must be held.
func (w *wheel[T, P]) addLocked(it P, at int64) {
	if at <= w.swept {
		at = w.swept + 1
	}
	if at > w.swept+wheelSlots-1 {
		at = w.swept + wheelSlots - 1
	}
	if sl := *it.slot(); sl != 0 && sl != slotTicking {
		w.unlinkLocked(it)
	}
	i := at % wheelSlots
	l := it.links()
	l.prev, l.next = nil, w.heads[i]
	if h := w.heads[i]; h != nil {
		P(h).links().prev = (*T)(it)
	}
	w.heads[i] = (*T)(it)
	*it.slot() = uint8(i + 1)
	w.n++
}

// unlinkLocked takes it off its slot list. Lock must be held.
func (w *wheel[T, P]) unlinkLocked(it P) {
	l, sl := it.links(), it.slot()
	if l.prev != nil {
		P(l.prev).links().next = l.next
	} else {
		w.heads[*sl-1] = l.next
	}
	if l.next != nil {
		P(l.next).links().prev = l.prev
	}
	l.prev, l.next, *sl = nil, nil, 0
	w.n--
}

// run advances the clock every second and sweeps the due slots.
func (w *wheel[T, P]) run() {
	defer close(w.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var (
		batch [sweepBatch]P
		next  [sweepBatch]int64
	)
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			sec := int64(now.Sub(w.start)/time.Second) + 1
			w.now.Store(sec)
			for {
				w.mu.Lock()
				if w.swept >= sec {
					w.mu.Unlock()
					break
				}
				w.swept++
				i := w.swept % wheelSlots
				w.mu.Unlock()
				// Reschedules land in later slots (addLocked clamps to
				// swept+1), so taking batches until the slot is empty ends.
				for {
					w.mu.Lock()
					k := 0
					for ; k < sweepBatch && w.heads[i] != nil; k++ {
						it := P(w.heads[i])
						w.unlinkLocked(it)
						*it.slot() = slotTicking
						batch[k] = it
					}
					w.mu.Unlock()
					if k == 0 {
						break
					}
					for j := range k {
						next[j] = batch[j].tick(sec)
					}
					w.mu.Lock()
					for j := range k {
						it := batch[j]
						if sl := it.slot(); *sl == slotTicking {
							*sl = 0
							if next[j] > 0 {
								w.addLocked(it, next[j])
							}
						}
						batch[j] = nil
					}
					w.mu.Unlock()
				}
			}
		}
	}
}

func (w *wheel[T, P]) close() {
	close(w.stop)
	<-w.done
}

// len is the number of scheduled items (for tests and metrics); an item
// being ticked is not counted.
func (w *wheel[T, P]) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// slotLen is the number of items in slot i (for tests).
func (w *wheel[T, P]) slotLen(i int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for it := w.heads[i%wheelSlots]; it != nil; it = P(it).links().next {
		n++
	}
	return n
}
