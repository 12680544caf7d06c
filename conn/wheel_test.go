package conn

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// tickRec is one call of an item's tick: the wheel second it was given
// and its place among all ticks of the package's wheels (tickSeq).
type tickRec struct {
	now int64
	seq int64
}

// tickSeq orders the ticks of recItems.
var tickSeq atomic.Int64

// recItem records its ticks; next decides what tick returns (given the
// wheel second and how many ticks there were so far, this one included).
type recItem struct {
	next func(now int64, n int) int64

	mu    sync.Mutex
	ticks []tickRec
	fired chan tickRec // one send per tick (buffered)
	wl    wheelLinks[recItem]
	ws    uint8
}

func (it *recItem) links() *wheelLinks[recItem] { return &it.wl }
func (it *recItem) slot() *uint8                { return &it.ws }

func newRecItem(next func(now int64, n int) int64) *recItem {
	return &recItem{next: next, fired: make(chan tickRec, 64)}
}

func (it *recItem) tick(now int64) int64 {
	r := tickRec{now, tickSeq.Add(1)}
	it.mu.Lock()
	it.ticks = append(it.ticks, r)
	n := len(it.ticks)
	it.mu.Unlock()
	it.fired <- r
	return it.next(now, n)
}

func (it *recItem) count() int {
	it.mu.Lock()
	defer it.mu.Unlock()
	return len(it.ticks)
}

// wait returns the item's next tick, failing t after a generous timeout.
func (it *recItem) wait(t *testing.T) tickRec {
	t.Helper()
	select {
	case r := <-it.fired:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("item never ticked")
		return tickRec{}
	}
}

func once(int64, int) int64 { return 0 }

// runWheel starts a wheel and stops it when the test ends.
func runWheel[T any, P wheelItem[T]](t *testing.T) *wheel[T, P] {
	w := newWheel[T, P]()
	go w.run()
	t.Cleanup(w.close)
	return w
}

// checkDeadline: a tick for deadline at came in the wheel's second at or
// later (later on a busy machine: how late is not a test's business).
func checkDeadline(t *testing.T, r tickRec, at int64) {
	t.Helper()
	if r.now < at {
		t.Fatalf("ticked in second %d, before its deadline %d", r.now, at)
	}
}

func TestWheelStatic(t *testing.T) {
	t.Parallel()
	t.Run("clock starts at 1", func(t *testing.T) {
		if n := newWheel[recItem]().Now(); n != 1 {
			t.Fatalf("Now() = %d", n)
		}
	})
	t.Run("slots, len and horizon clamping", func(t *testing.T) {
		w := newWheel[recItem]()  // not running: swept stays 1
		items := map[int64]int64{ // deadline → slot second
			-5:   2, // past → next second
			0:    2,
			1:    2,
			2:    2,
			3:    3,
			63:   63,
			64:   64, // last second within the horizon (slot 0)
			65:   64, // clamped
			1000: 64, // clamped
			1e12: 64, // clamped
		}
		for at, sec := range items {
			before := w.slotLen(sec)
			w.add(newRecItem(once), at)
			if got := w.slotLen(sec); got != before+1 {
				t.Fatalf("deadline %d: slot of second %d has %d items, want %d", at, sec, got, before+1)
			}
		}
		if got := w.len(); got != len(items) {
			t.Fatalf("len() = %d, want %d", got, len(items))
		}
		if n := w.slotLen(1); n != 0 {
			t.Fatalf("the swept slot (second 1) holds %d items", n)
		}
	})
}

func TestWheelRunning(t *testing.T) {
	t.Parallel()

	t.Run("fires at deadline", func(t *testing.T) {
		t.Parallel()
		w := runWheel[recItem](t)
		base := w.Now()
		var its [3]*recItem
		for d := range its {
			its[d] = newRecItem(once)
			w.add(its[d], base+int64(d)+1)
		}
		if got := w.len(); got != 3 {
			t.Fatalf("len() = %d, want 3", got)
		}
		var prev tickRec
		for d, it := range its {
			r := it.wait(t)
			checkDeadline(t, r, base+int64(d)+1)
			if r.seq < prev.seq || r.now < prev.now {
				t.Fatalf("item %d (deadline %d) ticked before item %d (deadline %d)", d, base+int64(d)+1, d-1, base+int64(d))
			}
			prev = r
			if d == len(its)-1 {
				// Items 0 and 1 returned 0 in earlier sweeps, whose
				// reschedules are done by now, and item 2 is out of its
				// slot while it ticks: the wheel is empty.
				if got := w.len(); got != 0 {
					t.Fatalf("len() = %d after all items returned 0", got)
				}
			}
		}
		for d, it := range its[:2] {
			if n := it.count(); n != 1 {
				t.Fatalf("item %d ticked %d times", d, n)
			}
		}
	})

	t.Run("reschedule and add from tick", func(t *testing.T) {
		t.Parallel()
		w := runWheel[recItem](t)
		at := w.Now() + 1
		added := newRecItem(once)
		var addedAt atomic.Int64
		// Tick 1 asks for the next second and adds another item (the wheel
		// lock is not held during tick); tick 2 leaves.
		it := newRecItem(func(now int64, n int) int64 {
			if n == 1 {
				addedAt.Store(now + 1)
				w.add(added, now+1)
				return now + 1
			}
			return 0
		})
		w.add(it, at)
		r := it.wait(t)
		checkDeadline(t, r, at)
		checkDeadline(t, it.wait(t), r.now+1)
		checkDeadline(t, added.wait(t), addedAt.Load())
		if n := it.count(); n != 2 {
			t.Fatalf("ticked %d times, want 2", n)
		}
	})

	t.Run("past deadline fires next second", func(t *testing.T) {
		t.Parallel()
		w := runWheel[recItem](t)
		now := w.Now()
		a, b := newRecItem(once), newRecItem(once)
		w.add(a, 0)
		w.add(b, now)
		// Due at once: the next sweep takes them, no later than an item
		// due in the next second added after them.
		probe := newRecItem(once)
		w.add(probe, w.Now()+1)
		p := probe.wait(t)
		for _, it := range []*recItem{a, b} {
			if r := it.wait(t); r.now < now || r.now > p.now {
				t.Fatalf("past-due item ticked in second %d, added in second %d; an item due in the next second ticked in %d", r.now, now, p.now)
			}
		}
	})

	t.Run("concurrent adds", func(t *testing.T) {
		t.Parallel()
		w := runWheel[countItem](t)
		const goroutines, each = 8, 100
		var fired atomic.Int64
		var wg sync.WaitGroup
		all := make([]*countItem, 0, goroutines*each)
		var mu sync.Mutex
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					it := &countItem{fired: &fired}
					mu.Lock()
					all = append(all, it)
					mu.Unlock()
					w.add(it, w.Now()+int64(i%2)) // due now (past) or next second
				}
			}()
		}
		wg.Wait()
		testutil.WaitUntil(t, 10*time.Second, "every item to fire", func() bool { return fired.Load() == goroutines*each })
		if got := w.len(); got != 0 {
			t.Fatalf("len() = %d, want 0", got)
		}
		for i, it := range all {
			if n := it.n.Load(); n != 1 {
				t.Fatalf("item %d ticked %d times", i, n)
			}
		}
	})

	t.Run("horizon clamp live", func(t *testing.T) {
		t.Parallel()
		// Pretend the wheel started 62 s ago: its first tick is second 64
		// and sweeps seconds 2..64 at once.
		w := newWheel[recItem]()
		w.start = w.start.Add(-62 * time.Second)
		const far = 1000
		it := newRecItem(func(now int64, n int) int64 {
			if now < far {
				return far // not yet: ask again (clamped to the horizon)
			}
			return 0
		})
		early := newRecItem(once)
		w.add(it, far) // clamped to second 64
		w.add(early, 2)
		go w.run()
		t.Cleanup(w.close)

		r := it.wait(t)
		if r.now < 64 {
			t.Fatalf("clamped item ticked in second %d, before the horizon 64", r.now)
		}
		if e := early.wait(t); e.now != r.now {
			t.Fatalf("catch-up sweep: early item ticked in %d, clamped one in %d", e.now, r.now)
		}
		// Re-added at the new horizon, r.now+63.
		waitFor(t, func() bool { return w.len() == 1 })
		if slot := w.slotLen(r.now + wheelSlots - 1); slot != 1 {
			t.Fatalf("rescheduled item not in the horizon slot (second %d)", r.now+wheelSlots-1)
		}
	})
}

// countItem counts its ticks and leaves the wheel.
type countItem struct {
	n     atomic.Int32
	fired *atomic.Int64
	wl    wheelLinks[countItem]
	ws    uint8
}

func (c *countItem) links() *wheelLinks[countItem] { return &c.wl }
func (c *countItem) slot() *uint8                  { return &c.ws }

func (c *countItem) tick(int64) int64 {
	c.n.Add(1)
	c.fired.Add(1)
	return 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWheelRemoveAndMove(t *testing.T) {
	t.Parallel()
	t.Run("remove from head, middle and tail", func(t *testing.T) {
		w := newWheel[recItem]() // not running
		var its [5]*recItem
		for i := range its {
			its[i] = newRecItem(once)
			w.add(its[i], 10)
		}
		// The list is in reverse order of adding: 4 3 2 1 0.
		for _, i := range []int{4, 2, 0} {
			w.remove(its[i])
			if its[i].ws != 0 || its[i].wl.prev != nil || its[i].wl.next != nil {
				t.Fatalf("item %d still linked after remove: %+v", i, its[i].wl)
			}
		}
		if n := w.slotLen(10); n != 2 {
			t.Fatalf("slot holds %d items after 3 of 5 removed", n)
		}
		if n := w.len(); n != 2 {
			t.Fatalf("len() = %d, want 2", n)
		}
		w.remove(its[0]) // twice: a no-op
		if n := w.len(); n != 2 {
			t.Fatalf("len() = %d after a repeated remove", n)
		}
		// The survivors are 3 then 1, linked both ways.
		if w.heads[10] != its[3] || its[3].wl.next != its[1] || its[1].wl.prev != its[3] || its[1].wl.next != nil {
			t.Fatal("survivors not linked 3 <-> 1")
		}
	})
	t.Run("add moves a scheduled item", func(t *testing.T) {
		w := newWheel[recItem]()
		it := newRecItem(once)
		w.add(it, 10)
		w.add(it, 20)
		if w.slotLen(10) != 0 || w.slotLen(20) != 1 || w.len() != 1 {
			t.Fatalf("after a move: slot 10 has %d, slot 20 has %d, len %d", w.slotLen(10), w.slotLen(20), w.len())
		}
	})
	t.Run("remove during tick wins over the tick's result", func(t *testing.T) {
		t.Parallel()
		w := runWheel[recItem](t)
		var it *recItem
		it = newRecItem(func(now int64, n int) int64 {
			w.remove(it) // as OnClose does when a tick closes the connection
			return now + 1
		})
		w.add(it, w.Now()+1)
		r := it.wait(t)
		// The sweep's reschedule is done once the next item added after
		// it has ticked; it must not have put the removed item back.
		probe := newRecItem(once)
		w.add(probe, w.Now()+1)
		probe.wait(t)
		if n := w.len(); n != 0 {
			t.Fatalf("len() = %d: the removed item was rescheduled", n)
		}
		// Nor does it tick again: not in the second it asked for, the
		// next one's probe shows (and it is on no slot to tick later).
		probe = newRecItem(once)
		w.add(probe, r.now+2)
		probe.wait(t)
		if n := it.count(); n != 1 {
			t.Fatalf("removed item ticked %d times", n)
		}
	})
}

// BenchmarkWheelSchedule: adding and removing an item (the wheel is
// intrusive: scheduling allocates nothing, 0 allocs/op expected).
func BenchmarkWheelSchedule(b *testing.B) {
	w := newWheel[recItem]()
	its := make([]*recItem, 100)
	for i := range its {
		its[i] = newRecItem(once)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		it := its[i%len(its)]
		w.add(it, int64(2+i%60))
		w.remove(it)
		i++
	}
}

// TestConnSize keeps a connection's own state in the 176-byte size class
// (the netpoll node's budget is 4.0 KB per idle connection): the wheel's
// links and slot number are part of it (the slot sits in the id buffer's
// padding), and so is its hub protocol (two bits of flags, protocol.go:
// 168 B before and after MessagePack). Past 176 B each connection costs
// 16 B more.
func TestConnSize(t *testing.T) {
	n := unsafe.Sizeof(Conn{})
	t.Logf("conn.Conn: %d bytes", n)
	if n > 176 {
		t.Fatalf("conn.Conn grew to %d bytes, budget 176", n)
	}
}

// TestConnFlags: the close cause shares a word with the flag bits; setting
// one must not disturb the others, and every cause index must fit.
func TestConnFlags(t *testing.T) {
	if len(causes) >= 1<<8 {
		t.Fatalf("%d close causes do not fit the 8 cause bits of Conn.flags", len(causes))
	}
	var c Conn
	c.flags.Or(flRegistered)
	for _, k := range causes {
		c.setCause(k.idx)
		if got := c.cause(); got != k.idx || disconnectReason(got, nil) != disconnectReason(k.idx, nil) {
			t.Fatalf("cause %q: stored %d, read %d", k.label, k.idx, got)
		}
		if !c.has(flRegistered) || c.has(flGone) || c.has(flIPCounted) {
			t.Fatalf("setCause(%q) changed the flags: %#x", k.label, c.flags.Load())
		}
	}
	c.flags.Or(flGone | flIPCounted)
	c.setCause(0)
	if c.cause() != 0 || !c.has(flGone) || !c.has(flIPCounted) || !c.has(flRegistered) {
		t.Fatalf("flags %#x after clearing the cause", c.flags.Load())
	}
}
