package conn

import (
	"sync"
	"sync/atomic"
	"time"
)

// wheelItem is something the wheel checks when its deadline comes.
type wheelItem interface {
	// tick is called at or after the item's deadline with the wheel's
	// current second. It returns the next deadline (an absolute second,
	// > now) or 0 to leave the wheel.
	tick(now int64) int64
}

const wheelSlots = 64

// wheel is a timing wheel with one-second slots: every connection sits in
// exactly one slot (8 bytes), and each second one slot is swept in a batch.
// There is no timer per connection. An item is only moved when its slot is
// swept, so reads and writes just store a timestamp.
type wheel struct {
	start time.Time
	now   atomic.Int64 // seconds since start: the coarse clock

	mu    sync.Mutex
	slots [wheelSlots][]wheelItem
	swept int64 // last second swept

	stop chan struct{}
	done chan struct{}
}

func newWheel() *wheel {
	w := &wheel{start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	w.now.Store(1)
	w.swept = 1
	return w
}

// Now is the coarse clock in whole seconds (starts at 1).
func (w *wheel) Now() int64 { return w.now.Load() }

// add schedules it for second at (clamped to the wheel's horizon).
func (w *wheel) add(it wheelItem, at int64) {
	w.mu.Lock()
	w.addLocked(it, at)
	w.mu.Unlock()
}

// Lock should be held.
func (w *wheel) addLocked(it wheelItem, at int64) {
	if at <= w.swept {
		at = w.swept + 1
	}
	if at > w.swept+wheelSlots-1 {
		at = w.swept + wheelSlots - 1
	}
	i := at % wheelSlots
	w.slots[i] = append(w.slots[i], it)
}

// run advances the clock every second and sweeps the due slots.
func (w *wheel) run() {
	defer close(w.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var spare []wheelItem
	type resched struct {
		it wheelItem
		at int64
	}
	var again []resched
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
				due := w.slots[i]
				w.slots[i] = spare[:0]
				w.mu.Unlock()

				again = again[:0]
				for _, it := range due {
					if next := it.tick(sec); next > 0 {
						again = append(again, resched{it, next})
					}
				}
				w.mu.Lock()
				for _, r := range again {
					w.addLocked(r.it, r.at)
				}
				w.mu.Unlock()
				clear(due)
				spare = due[:0]
			}
		}
	}
}

func (w *wheel) close() {
	close(w.stop)
	<-w.done
}

// len is the number of scheduled items (for tests and metrics).
func (w *wheel) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.slots {
		n += len(s)
	}
	return n
}
