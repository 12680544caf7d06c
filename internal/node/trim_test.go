package node

import (
	"testing"
	"time"
)

func TestTrimmerDecide(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	const mb = 1 << 20
	// step is one trimInterval tick: the accept counter and the heap
	// (object bytes, live bytes as of the last GC, automatic GC cycles).
	// A trim decided is recorded as done, as trimLoop does.
	type step struct {
		sec                  int
		accepted             uint64
		objects, live, autos uint64
		want                 trimReason
		what                 string
	}
	run := func(name string, tr *trimmer, conns int, steps []step) {
		t.Helper()
		for _, st := range steps {
			got := tr.decide(at(st.sec), st.accepted, conns, heapStats{objects: st.objects, live: st.live, autoGCs: st.autos})
			if got != st.want {
				t.Fatalf("%s, at %d s, %s: %v, want %v", name, st.sec, st.what, got, st.want)
			}
			if got != noTrim {
				tr.trimmed(at(st.sec))
			}
		}
	}

	run("19k node", &trimmer{}, 19000, []step{
		{5, 5000, 50 * mb, 20 * mb, 10, noTrim, "during a burst"},
		{10, 19000, 90 * mb, 70 * mb, 30, noTrim, "during a burst"},
		{15, 19000, 90 * mb, 70 * mb, 30, trimAfterBurst, "quiet after 19000 accepts, though the GC ran just before"},
		{40, 19000, 70 * mb, 66 * mb, 30, noTrim, "4 MB of garbage 30 s after an automatic GC: left to the GC"},
		{75, 19000, 67 * mb, 66 * mb, 30, noTrim, "1 MB of idle garbage, under 2% of 66 MB"},
		{80, 19000, 68 * mb, 66 * mb, 30, trimIdleGarbage, "2 MB of idle garbage, idle for 70 s"},
		{85, 19000, 69 * mb, 66 * mb, 30, noTrim, "5 s after a trim"},
		{95, 19000, 80 * mb, 66 * mb, 31, noTrim, "automatic GC in the last interval: busy, left to the GC"},
		// The baseline is what the last GC left live, automatic or ours.
		{160, 19000, 71 * mb, 70 * mb, 31, noTrim, "1 MB over the last GC's 70 MB (2% is 1.4 MB)"},
		{165, 19000, 72 * mb, 70 * mb, 31, trimIdleGarbage, "2 MB over the last GC's 70 MB, idle 70 s"},
	})
	// Churn (more than 1% of the connections per interval) holds it off.
	run("busy node", &trimmer{lastAccepted: 19000, lastTrim: at(0), autoGCs: 5, lastAutoGC: at(0)}, 19000, []step{
		{200, 19400, 80 * mb, 66 * mb, 5, noTrim, "400 accepts in an interval"},
	})
	run("fresh node", &trimmer{}, 10, []step{
		{5, 10, 500 * mb, 4 * mb, 0, noTrim, "GC not yet quiet for a minute"},
	})
	// Small nodes: the 1 MB floor, not 2% of a tiny heap.
	run("small node", &trimmer{lastAccepted: 5, lastTrim: at(0), lastAutoGC: at(0)}, 5, []step{
		{60, 5, 4*mb + 600<<10, 4 * mb, 0, noTrim, "600 KB over a 4 MB heap (floor 1 MB)"},
		{65, 5, 5*mb + 100, 4 * mb, 0, trimIdleGarbage, "1 MB over a 4 MB heap"},
	})
	if trimAfterBurst.String() != "connection burst" || trimIdleGarbage.String() != "idle garbage" {
		t.Fatalf("reason names: %q, %q", trimAfterBurst, trimIdleGarbage)
	}
}
