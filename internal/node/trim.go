package node

import (
	"runtime"
	"runtime/debug"
	"time"
)

// Trimming: a burst of connects leaves garbage (HTTP parsing, handshakes)
// up to the GC goal, about twice the live heap, and the runtime returns
// freed pages to the OS only slowly; idle connections allocate nothing, so
// no GC comes to clean up. RSS would stay at the burst's high-water mark.
// The trimmer waits until the accept rate has been quiet for one interval
// after at least max(trimMinAccepts, 10% of open connections) connects,
// then runs a GC and one debug.FreeOSMemory (a second GC plus returning
// free pages; the first GC only moves sync.Pool contents, such as buffers
// freed by the burst's closed connections, to the victim cache, which the
// second frees): idle RSS then tracks the live heap.
const (
	trimInterval   = 5 * time.Second
	trimMinAccepts = 1000
	trimMinGap     = 10 * time.Second
)

func (n *Node) trimLoop() {
	defer close(n.trimDone)
	t := time.NewTicker(trimInterval)
	defer t.Stop()
	var (
		lastAccepted = n.srv.M.Accepted()
		sinceTrim    uint64
		lastTrim     time.Time
	)
	for {
		select {
		case <-n.trimStop:
			return
		case now := <-t.C:
			acc := n.srv.M.Accepted()
			churn := acc - lastAccepted
			lastAccepted = acc
			sinceTrim += churn
			quiet := churn < uint64(max(100, n.poll.Conns()/100))
			enough := sinceTrim >= uint64(max(trimMinAccepts, n.poll.Conns()/10))
			if enough && quiet && now.Sub(lastTrim) >= trimMinGap {
				start := time.Now()
				runtime.GC()
				debug.FreeOSMemory()
				n.log.Debug("returned free memory to the OS after a connection burst",
					"accepts", sinceTrim, "took", time.Since(start).String())
				sinceTrim, lastTrim = 0, now
			}
		}
	}
}
