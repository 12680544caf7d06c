package e2e

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// The fault harness (issue 12): real edgeplane binaries, real redis-server
// processes (behind internal/faultproxy where the fault is on the network),
// real @microsoft/signalr clients under Node, a steady publisher through
// the REST API, and a watcher of every node's /readyz. A scenario injects a
// fault, heals it, and then accounts for every message: published during
// the fault, accepted (202) or refused (503: counted by the node in
// edgeplane_backplane_lost_total), delivered to each client, and, for each
// accepted message a client did not get, whether its node counted a gap
// covering the moment it was published (the node logs every gap with its
// bounds). Nothing may be lost without being counted, no client may get a
// message twice, and a node may not stay ready while deaf for longer than
// one health interval.

// faultHealth is the nodes' --redis-health-interval in the scenarios (the
// default).
const faultHealth = 2 * time.Second

// readySample is one /readyz answer.
type readySample struct {
	at    time.Time
	ready bool
}

// readyWatcher polls a node's /readyz every 20 ms.
type readyWatcher struct {
	n       *node
	mu      sync.Mutex
	samples []readySample
	stop    chan struct{}
	done    chan struct{}
}

func watchReadyz(t *testing.T, n *node) *readyWatcher {
	w := &readyWatcher{n: n, stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: time.Second}
	go func() {
		defer close(w.done)
		for {
			resp, err := client.Get("http://" + n.admin + "/readyz")
			ready := err == nil && resp.StatusCode == 200
			if err == nil {
				resp.Body.Close()
			}
			w.mu.Lock()
			w.samples = append(w.samples, readySample{at: time.Now(), ready: ready})
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *readyWatcher) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *readyWatcher) snapshot() []readySample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]readySample(nil), w.samples...)
}

// firstNotReady is the first not-ready sample at or after t (zero if none).
func (w *readyWatcher) firstNotReady(t time.Time) time.Time {
	for _, s := range w.snapshot() {
		if !s.at.Before(t) && !s.ready {
			return s.at
		}
	}
	return time.Time{}
}

// recovery is the first ready sample after the last not-ready one in
// [from, to] (zeros if the node never turned not ready).
func (w *readyWatcher) recovery(from, to time.Time) (time.Time, bool) {
	last := -1
	ss := w.snapshot()
	for i, s := range ss {
		if !s.at.Before(from) && !s.at.After(to) && !s.ready {
			last = i
		}
	}
	if last < 0 {
		return time.Time{}, false
	}
	for _, s := range ss[last:] {
		if s.ready {
			return s.at, true
		}
	}
	return time.Time{}, true
}

// everNotReady reports whether a not-ready sample lies in [from, to].
func (w *readyWatcher) everNotReady(from, to time.Time) bool {
	for _, s := range w.snapshot() {
		if !s.at.Before(from) && !s.at.After(to) && !s.ready {
			return true
		}
	}
	return false
}

// readyAt reports the last sample at or before t (true if none).
func (w *readyWatcher) readyAt(t time.Time) bool {
	ready := true
	for _, s := range w.snapshot() {
		if s.at.After(t) {
			break
		}
		ready = s.ready
	}
	return ready
}

// pubRecord is one publish through the REST API.
type pubRecord struct {
	seq        int
	target     string // "all" or a group name
	start, end time.Time
	code       int
}

// publisher sends one message every interval through the REST API of the
// nodes in turn, each in a goroutine of its own (a publish held up by a
// fault does not hold up the next), and records what it sent.
type publisher struct {
	mu      sync.Mutex
	recs    []pubRecord
	stop    chan struct{}
	wg      sync.WaitGroup
	stopped bool
}

func startPublisher(t *testing.T, nodes []*node, targets []string, every time.Duration) *publisher {
	p := &publisher{stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			n := nodes[seq%len(nodes)]
			target := targets[seq%len(targets)]
			path := "/api/hubs/chat/:send"
			if target != "all" {
				path = "/api/hubs/chat/groups/" + target + "/:send"
			}
			p.wg.Add(1)
			go func(seq int) {
				defer p.wg.Done()
				rec := pubRecord{seq: seq, target: target, start: time.Now()}
				body := fmt.Sprintf(`{"target":"t","arguments":["%d"]}`, seq)
				resp, err := client.Post("http://"+n.admin+path, "application/json", strings.NewReader(body))
				if err == nil {
					rec.code = resp.StatusCode
					resp.Body.Close()
				}
				rec.end = time.Now()
				p.mu.Lock()
				p.recs = append(p.recs, rec)
				p.mu.Unlock()
			}(seq)
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *publisher) close() {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.stop)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *publisher) records() []pubRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := append([]pubRecord(nil), p.recs...)
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// gapRE matches the backplane's gap report.
var gapRE = regexp.MustCompile(`msg="redis subscriptions restored after a gap.* gap_from=(\S+) gap_to=(\S+)`)

// gap is a time interval in which a node counted its subscriptions as not
// in effect.
type gap struct{ from, to time.Time }

// gaps parses the gaps a node reported in its log.
func (n *node) gaps(t *testing.T) []gap {
	var out []gap
	for _, m := range gapRE.FindAllStringSubmatch(n.logs(), -1) {
		from, err1 := time.Parse(time.RFC3339Nano, m[1])
		to, err2 := time.Parse(time.RFC3339Nano, m[2])
		if err1 != nil || err2 != nil {
			t.Fatalf("bad gap report %q: %v %v", m[0], err1, err2)
		}
		out = append(out, gap{from, to})
	}
	return out
}

// faultClient is one @microsoft/signalr client of the scenario: on which
// node, in which group.
type faultClient struct {
	name  string
	node  int
	group string
}

// faultScenario is one fault-injection run.
type faultScenario struct {
	t        *testing.T
	name     string
	nodes    []*node
	watchers []*readyWatcher
	js       map[string]*jsClients // by client name: the Node process it runs in
	clients  []faultClient
	pub      *publisher
	affected []int // nodes the fault hits (the others must not lose anything)
	metrics0 []map[string]float64

	faultStart, faultEnd time.Time
}

// backplaneCounters are the node counters the report reads.
var backplaneCounters = []string{
	"edgeplane_backplane_lost_total",
	"edgeplane_backplane_gap_seconds_total",
	`edgeplane_backplane_gaps_total{reason="connection_error"}`,
	`edgeplane_backplane_gaps_total{reason="no_pong"}`,
	`edgeplane_backplane_gaps_total{reason="slot_moved"}`,
	`edgeplane_backplane_gaps_total{reason="not_subscribed"}`,
	`edgeplane_backplane_gaps_total{reason="error_reply"}`,
}

func (s *faultScenario) counters(n *node) map[string]float64 {
	m := map[string]float64{}
	for _, c := range backplaneCounters {
		m[c] = n.metric(c)
	}
	return m
}

// newFaultScenario connects perNode clients to every node (client i of a
// node joins group g{i} when groups is set), waits until every node is
// ready, starts the readiness watchers and the publisher (targets "all"
// and the groups, through publishers, one message every 20 ms), and waits
// until messages flow.
func newFaultScenario(t *testing.T, name string, nodes []*node, publishers []int, perNode int, groups []string, affected []int) *faultScenario {
	t.Helper()
	s := &faultScenario{t: t, name: name, nodes: nodes, affected: affected, js: map[string]*jsClients{}}
	for i, n := range nodes {
		testutil.WaitUntil(t, 15*time.Second, fmt.Sprintf("node %d ready", i+1), func() bool { c, _ := n.api("GET", "/readyz", "", ""); return c == 200 })
	}
	// One Node process per edgeplane node (clients.js takes one base URL).
	for i, n := range nodes {
		var specs []jsClientSpec
		for k := 0; k < perNode; k++ {
			c := faultClient{name: fmt.Sprintf("n%dc%d", i+1, k), node: i}
			if len(groups) > 0 {
				c.group = groups[k%len(groups)]
			}
			s.clients = append(s.clients, c)
			specs = append(specs, jsClientSpec{Name: c.name})
		}
		js := startJS(t, "http://"+n.client, specs)
		for _, c := range s.clients {
			if c.node == i {
				s.js[c.name] = js
			}
			if c.node == i && c.group != "" {
				id := js.connID(c.name)
				if code, body := n.api("PUT", "/api/hubs/chat/groups/"+c.group+"/connections/"+id, "", ""); code != 200 {
					t.Fatalf("add %s to %s: %d %s", c.name, c.group, code, body)
				}
			}
		}
	}
	for _, n := range nodes {
		s.watchers = append(s.watchers, watchReadyz(t, n))
		s.metrics0 = append(s.metrics0, s.counters(n))
	}
	var pubNodes []*node
	for _, i := range publishers {
		pubNodes = append(pubNodes, nodes[i])
	}
	targets := append([]string{"all"}, groups...)
	s.pub = startPublisher(t, pubNodes, targets, 20*time.Millisecond)
	testutil.WaitUntil(t, 15*time.Second, "messages flowing to every client", func() bool {
		for _, c := range s.clients {
			if len(s.js[c.name].received(c.name)) < 5 {
				return false
			}
		}
		return true
	})
	return s
}

// faultReport is one row of the fault table.
type faultReport struct {
	name                         string
	lasted                       time.Duration // from the injection to the heal
	notReady, recovered          time.Duration // from the injection: first not ready, ready for good
	published, accepted, refused int           // during the fault
	expected, delivered          int           // client-messages of accepted publishes
	missedCounted, uncounted     int
	lost, gaps                   float64 // node counters, deltas
	gapSeconds                   float64
	readyWhileDeaf               time.Duration
}

func (r faultReport) row() string {
	return fmt.Sprintf("| %s | %.1f s | %.2f s | %.2f s | %d | %d / %d | %d / %d | %d | %d | %.0f | %.0f (%.2f s) | %.2f s |",
		r.name, r.lasted.Seconds(), r.notReady.Seconds(), r.recovered.Seconds(), r.published, r.accepted, r.refused,
		r.delivered, r.expected, r.missedCounted, r.uncounted, r.lost, r.gaps, r.gapSeconds, r.readyWhileDeaf.Seconds())
}

const faultTableHeader = "| scenario | fault lasted | not ready after | ready again after | published | accepted / refused (503) | delivered / expected | missed, in a counted gap | missed, uncounted | lost_total | gaps_total (gap_seconds_total), all nodes | ready while deaf (max) |\n|---|---|---|---|---|---|---|---|---|---|---|---|"

// inject marks the start of the fault.
func (s *faultScenario) inject() { s.faultStart = time.Now() }

// healed marks the end of the fault.
func (s *faultScenario) healed() { s.faultEnd = time.Now() }

// finish waits until every node is ready and messages reach every client
// again, stops the publisher, waits for what is in flight, and accounts
// for every message. It fails the test if a message was lost uncounted,
// delivered twice, or a node stayed ready while deaf for longer than one
// health interval (and a little for the 20 ms readiness polling and the
// REST round trip).
func (s *faultScenario) finish() faultReport {
	t := s.t
	t.Helper()
	for i, n := range s.nodes {
		testutil.WaitUntil(t, 60*time.Second, fmt.Sprintf("node %d ready after the fault", i+1), func() bool { c, _ := n.api("GET", "/readyz", "", ""); return c == 200 })
	}
	recoveredAt := time.Now()
	// Messages published from now on reach every client.
	marker := 0
	testutil.WaitUntil(t, 30*time.Second, "deliveries resumed everywhere", func() bool {
		recs := s.pub.records()
		for _, r := range recs {
			if r.start.After(recoveredAt.Add(500*time.Millisecond)) && r.code == 202 && r.target == "all" {
				marker = r.seq
				break
			}
		}
		if marker == 0 {
			return false
		}
		for _, c := range s.clients {
			if !s.got(c.name)[marker] {
				return false
			}
		}
		return true
	})
	s.pub.close()
	last := s.pub.records()
	// Let the last publishes arrive: wait until the highest accepted
	// broadcast is everywhere.
	maxAll := 0
	for _, r := range last {
		if r.code == 202 && r.target == "all" && r.seq > maxAll {
			maxAll = r.seq
		}
	}
	testutil.WaitUntil(t, 15*time.Second, "last broadcast delivered", func() bool {
		for _, c := range s.clients {
			if !s.got(c.name)[maxAll] {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // stragglers and duplicates would arrive by now

	rep := faultReport{name: s.name, lasted: s.faultEnd.Sub(s.faultStart)}
	affected := map[int]bool{}
	for _, i := range s.affected {
		affected[i] = true
	}
	// The fault's window ends when the last affected node was ready for
	// good (by its watcher; recoveredAt, when finish saw it, is later).
	var windowEnd time.Time
	for _, i := range s.affected {
		if nr := s.watchers[i].firstNotReady(s.faultStart); !nr.IsZero() {
			rep.notReady = max(rep.notReady, nr.Sub(s.faultStart))
		}
		if ra, down := s.watchers[i].recovery(s.faultStart, recoveredAt); down && !ra.IsZero() {
			rep.recovered = max(rep.recovered, ra.Sub(s.faultStart))
			if ra.After(windowEnd) {
				windowEnd = ra
			}
		}
	}
	if windowEnd.IsZero() || windowEnd.Before(s.faultEnd) {
		windowEnd = s.faultEnd // never (seen) not ready: the fault itself
	}
	gaps := make([][]gap, len(s.nodes))
	for i, n := range s.nodes {
		gaps[i] = n.gaps(t)
		m := s.counters(n)
		rep.lost += m["edgeplane_backplane_lost_total"] - s.metrics0[i]["edgeplane_backplane_lost_total"]
		rep.gapSeconds += m["edgeplane_backplane_gap_seconds_total"] - s.metrics0[i]["edgeplane_backplane_gap_seconds_total"]
		for _, c := range backplaneCounters[2:] {
			rep.gaps += m[c] - s.metrics0[i][c]
		}
	}
	// The fault's publishes: those not answered before it began, up to the
	// nodes' recovery.
	during := func(r pubRecord) bool { return !r.end.Before(s.faultStart) && !r.start.After(windowEnd) }
	for _, r := range last {
		if !during(r) {
			continue
		}
		rep.published++
		if r.code == 202 {
			rep.accepted++
		} else {
			rep.refused++
		}
	}
	// Every accepted message, for every client that should get it.
	for _, c := range s.clients {
		got := s.got(c.name)
		counts := s.counts(c.name)
		for seq, k := range counts {
			if k > 1 {
				t.Errorf("%s: client %s got message %d %d times", s.name, c.name, seq, k)
			}
		}
		var deafFrom time.Time // start of the current run of misses
		for _, r := range last {
			if r.code != 202 || (r.target != "all" && r.target != c.group) {
				continue
			}
			inWindow := during(r)
			if inWindow {
				rep.expected++
			}
			if got[r.seq] {
				if inWindow {
					rep.delivered++
				}
				if !deafFrom.IsZero() {
					rep.readyWhileDeaf = max(rep.readyWhileDeaf, s.readyWhileDeaf(c.node, deafFrom, r.start))
					deafFrom = time.Time{}
				}
				continue
			}
			if deafFrom.IsZero() {
				deafFrom = r.start
			}
			if covered(gaps[c.node], r.start, r.end) {
				if inWindow {
					rep.missedCounted++
				}
				continue
			}
			rep.uncounted++
			t.Errorf("%s: client %s (node %d) missed message %d (%s, published %s–%s, 202) and node %d counted no gap then; its gaps: %v",
				s.name, c.name, c.node+1, r.seq, r.target, r.start.Format("15:04:05.000"), r.end.Format("15:04:05.000"), c.node+1, gaps[c.node])
		}
		if !affected[c.node] && len(counts) > 0 {
			// A node the fault does not hit loses nothing.
			for _, r := range last {
				if r.code == 202 && (r.target == "all" || r.target == c.group) && !got[r.seq] {
					t.Errorf("%s: client %s on unaffected node %d missed message %d", s.name, c.name, c.node+1, r.seq)
				}
			}
		}
	}
	for i, w := range s.watchers {
		if !affected[i] && w.everNotReady(s.faultStart, windowEnd) {
			t.Errorf("%s: unaffected node %d turned not ready", s.name, i+1)
		}
	}
	if bound := faultHealth + 750*time.Millisecond; rep.readyWhileDeaf > bound {
		t.Errorf("%s: a node was ready while deaf for %v (bound: one health interval %v + polling and REST slack)", s.name, rep.readyWhileDeaf, faultHealth)
	}
	t.Logf("%s\n%s", faultTableHeader, rep.row())
	if f := os.Getenv("EDGEPLANE_FAULT_REPORT"); f != "" {
		fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(fh, rep.row())
			fh.Close()
		}
	}
	return rep
}

// covered reports whether [start, end] (a publish) meets one of the gaps
// (a publish in flight when a gap began may have been missed).
func covered(gaps []gap, start, end time.Time) bool {
	for _, g := range gaps {
		if !end.Before(g.from) && !start.After(g.to) {
			return true
		}
	}
	return false
}

// readyWhileDeaf is how long node i was ready from deafFrom (the first
// publish one of its clients missed) until it turned not ready, or until
// until (the next publish it got) if it never did.
func (s *faultScenario) readyWhileDeaf(i int, deafFrom, until time.Time) time.Duration {
	w := s.watchers[i]
	if !w.readyAt(deafFrom) {
		return 0
	}
	nr := w.firstNotReady(deafFrom)
	if nr.IsZero() || nr.After(until) {
		return until.Sub(deafFrom)
	}
	return nr.Sub(deafFrom)
}

// got is the set of message numbers a client received.
func (s *faultScenario) got(name string) map[int]bool {
	out := map[int]bool{}
	for seq := range s.counts(name) {
		out[seq] = true
	}
	return out
}

// counts is how often a client received each message number.
func (s *faultScenario) counts(name string) map[int]int {
	out := map[int]int{}
	for _, v := range s.js[name].received(name) {
		if seq, err := strconv.Atoi(v); err == nil {
			out[seq]++
		}
	}
	return out
}
