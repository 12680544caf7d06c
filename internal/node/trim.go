package node

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Trimming: a burst of connects leaves garbage (HTTP parsing, handshakes)
// up to the GC goal, and the runtime returns freed pages to the OS only
// slowly; idle connections allocate little, so no GC comes to clean up.
// RSS would stay at the burst's high-water mark. The trimmer waits until
// the accept rate has been quiet for one interval after at least
// max(trimMinAccepts, 10% of open connections) connects, then runs a GC
// and one debug.FreeOSMemory (a second GC plus returning free pages; the
// first GC only moves sync.Pool contents, such as buffers freed by the
// burst's closed connections, to the victim cache, which the second
// frees): idle RSS then tracks the live heap.
//
// An idle node still makes a little garbage (the netpoll backend
// allocates per read, so every keep-alive Ping costs some); left to the
// GC goal it would hold up to GOGC% of the live heap more. So while the
// accept rate stays quiet the trimmer also trims once the heap holds
// trimIdleGrowth of the live heap (and at least trimIdleMinBytes) more
// than the last GC left live, at most every trimMinGap: a GC of the live heap every
// few seconds at most, and never on a node that makes no garbage (the
// epoll backend's idle connections allocate nothing). Only an idle node:
// one whose GC has not run by itself for trimIdleAfterGC. A node busy
// enough to reach its GC goal is left to the GC.
const (
	trimInterval     = 5 * time.Second
	trimMinAccepts   = 1000
	trimMinGap       = 10 * time.Second
	trimIdleGrowth   = 0.02
	trimIdleMinBytes = 1 << 20
	trimIdleAfterGC  = time.Minute
)

// trimmer decides when to trim; it holds no locks and does no I/O.
type trimmer struct {
	lastAccepted uint64
	sinceTrim    uint64    // accepts since the last trim
	lastTrim     time.Time // zero: never
	autoGCs      uint64    // automatic GC cycles seen
	lastAutoGC   time.Time // when autoGCs last changed (or the trimmer started)
}

// trimReason says why decide wants a trim.
type trimReason int

const (
	noTrim trimReason = iota
	trimAfterBurst
	trimIdleGarbage
)

func (r trimReason) String() string {
	switch r {
	case trimAfterBurst:
		return "connection burst"
	case trimIdleGarbage:
		return "idle garbage"
	}
	return "none"
}

// heapStats is what the trimmer reads of the runtime, without stopping
// the world: the heap's object bytes (live plus not yet swept), the live
// heap as of the last GC (the trimmer's or an automatic one) and the
// automatic GC cycles so far.
type heapStats struct {
	objects, live, autoGCs uint64
}

func readHeapStats() heapStats {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/automatic:gc-cycles"}}
	metrics.Read(s)
	u := func(i int) uint64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return s[i].Value.Uint64()
		}
		return 0
	}
	return heapStats{objects: u(0), live: u(1), autoGCs: u(2)}
}

// decide is called every trimInterval with the accept counter, the open
// connections and the heap.
func (t *trimmer) decide(now time.Time, accepted uint64, conns int, h heapStats) trimReason {
	if h.autoGCs != t.autoGCs || t.lastAutoGC.IsZero() {
		t.autoGCs, t.lastAutoGC = h.autoGCs, now
	}
	churn := accepted - t.lastAccepted
	t.lastAccepted = accepted
	t.sinceTrim += churn
	quiet := churn < uint64(max(100, conns/100))
	if !quiet || (!t.lastTrim.IsZero() && now.Sub(t.lastTrim) < trimMinGap) {
		return noTrim
	}
	if t.sinceTrim >= uint64(max(trimMinAccepts, conns/10)) {
		return trimAfterBurst
	}
	if now.Sub(t.lastAutoGC) >= trimIdleAfterGC && h.objects > h.live &&
		h.objects-h.live >= max(uint64(trimIdleMinBytes), uint64(float64(h.live)*trimIdleGrowth)) {
		return trimIdleGarbage
	}
	return noTrim
}

// trimmed records a trim done at now.
func (t *trimmer) trimmed(now time.Time) {
	t.sinceTrim, t.lastTrim = 0, now
}

func (n *Node) trimLoop() {
	defer close(n.trimDone)
	tk := time.NewTicker(trimInterval)
	defer tk.Stop()
	t := trimmer{lastAccepted: n.srv.M.Accepted()}
	for {
		select {
		case <-n.trimStop:
			return
		case now := <-tk.C:
			why := t.decide(now, n.srv.M.Accepted(), n.poll.Conns(), readHeapStats())
			if why == noTrim {
				continue
			}
			start := time.Now()
			accepts := t.sinceTrim
			runtime.GC()
			debug.FreeOSMemory()
			t.trimmed(now)
			n.log.Debug("returned free memory to the OS", "after", why.String(),
				"accepts", accepts, "live_bytes", readHeapStats().live, "took", time.Since(start).String())
		}
	}
}
