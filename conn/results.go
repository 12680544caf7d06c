package conn

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// Client results at the node that holds the connection: a
// server-to-client Invocation that came with an invocation id and a
// return channel (an ASP.NET Core server's InvokeAsync over the Redis
// backplane, or the REST API's :invoke on any node) is remembered until
// the client's Completion for it arrives, which then goes back to the
// return channel in the client's protocol instead of to the upstream.
// The table is bounded (Config.MaxPendingResults); an entry gets an error
// Completion when its connection ends ("Connection disconnected.", as
// ASP.NET Core says) or when Config.ResultTimeout passes, swept by one
// goroutine per Server, never one per invocation.

// Defaults of the client-result bounds.
const (
	DefaultResultTimeout     = 60 * time.Second
	DefaultMaxPendingResults = 10000
)

// Completion errors the node writes itself, in ASP.NET Core's words where
// it has them.
const (
	errTextDisconnected = "Connection disconnected."
	errTextTimedOut     = "Client result timed out."
	errTextTooMany      = "Too many pending client results on this node."
)

// resultTimeout is Config.ResultTimeout or its default.
func (c *Config) resultTimeout() time.Duration {
	if c.ResultTimeout > 0 {
		return c.ResultTimeout
	}
	return DefaultResultTimeout
}

// maxPendingResults is Config.MaxPendingResults or its default.
func (c *Config) maxPendingResults() int {
	if c.MaxPendingResults > 0 {
		return c.MaxPendingResults
	}
	return DefaultMaxPendingResults
}

type resultKey struct{ hub, conn, inv string }
type connKey struct{ hub, conn string }

type pendingResult struct {
	channel string
	at      int64 // unix seconds of the invocation
}

// results is the Server's table of pending client results.
type results struct {
	mu     sync.Mutex
	pend   map[resultKey]pendingResult
	byConn map[connKey][]string // invocation ids by connection
	n      atomic.Int64

	// Outcomes, edgeplane_client_results_total{outcome}.
	expected, returned, timedOut, abandoned, refused, lost *metrics.Counter
}

// registerResultMetrics declares the client-result metrics on set.
func (r *results) registerMetrics(set *metricset.Set) {
	c := set.CounterVec("edgeplane_client_results_total", "outcome",
		"Client results (server-to-client invocations awaiting the client's Completion) at the node holding the connection, by outcome: expected, returned, timeout, disconnected, refused (too many pending), lost (not published).")
	r.expected, r.returned, r.timedOut, r.abandoned, r.refused, r.lost = c("expected"), c("returned"), c("timeout"), c("disconnected"), c("refused"), c("lost")
	set.Gauge("edgeplane_client_results_pending", "Client results awaiting the client's Completion at this node.", func() float64 { return float64(r.n.Load()) })
}

// ExpectResult records that the connection m names will answer the
// invocation m carries (m.InvocationID, m.ReturnChannel); the node calls
// it before delivering m. A connection that is not here is ignored (its
// owner answers), so is a message that asks for no result. A full table
// answers the invocation at once with an error Completion.
func (s *Server) ExpectResult(m *backplane.Message) {
	if m.ReturnChannel == "" || m.Kind != backplane.Connection || s.cfg.Returner == nil {
		return
	}
	h := s.router.Hub(m.Hub)
	if h == nil || !h.Lookup(m.Name) {
		return
	}
	r := &s.results
	r.mu.Lock()
	if r.n.Load() >= int64(s.cfg.maxPendingResults()) {
		r.mu.Unlock()
		r.refused.Inc()
		s.returnError(m.ReturnChannel, hubproto.IDJSON, m.InvocationID, errTextTooMany)
		return
	}
	if r.pend == nil {
		r.pend = make(map[resultKey]pendingResult)
		r.byConn = make(map[connKey][]string)
	}
	k := resultKey{m.Hub, m.Name, m.InvocationID}
	if _, dup := r.pend[k]; !dup {
		r.pend[k] = pendingResult{channel: m.ReturnChannel, at: time.Now().Unix()}
		ck := connKey{m.Hub, m.Name}
		r.byConn[ck] = append(r.byConn[ck], m.InvocationID)
		r.n.Add(1)
		r.expected.Inc()
	}
	r.mu.Unlock()
}

// takeLocked removes k and reports its entry. r.mu must be held.
func (r *results) takeLocked(k resultKey) (pendingResult, bool) {
	p, ok := r.pend[k]
	if !ok {
		return p, false
	}
	delete(r.pend, k)
	r.n.Add(-1)
	ck := connKey{k.hub, k.conn}
	ids := r.byConn[ck]
	for i, id := range ids {
		if id == k.inv {
			ids = append(ids[:i], ids[i+1:]...)
			break
		}
	}
	if len(ids) == 0 {
		delete(r.byConn, ck)
	} else {
		r.byConn[ck] = ids
	}
	return p, true
}

// complete sends a client's Completion to the return channel that waits
// for it and reports whether one did.
func (r *results) complete(c *Conn, m *hubproto.Message) bool {
	if r.n.Load() == 0 {
		return false
	}
	r.mu.Lock()
	p, ok := r.takeLocked(resultKey{c.hub.Name(), c.entry.ID(), m.InvocationID})
	r.mu.Unlock()
	if !ok {
		return false
	}
	r.returned.Inc()
	id := c.proto()
	proto := hubproto.ByID(id)
	var rec []byte
	if m.HasError {
		rec = proto.AppendCompletionError(nil, m.InvocationID, m.Error)
	} else {
		var err error
		if rec, err = proto.AppendCompletion(nil, m.InvocationID, m.Arguments); err != nil {
			rec = proto.AppendCompletionError(nil, m.InvocationID, "Invalid client result: "+err.Error())
		}
	}
	c.srv.publishReturn(p.channel, proto.Name(), rec)
	return true
}

// abandon answers the pending results of a connection that ended.
func (s *Server) abandonResults(c *Conn) {
	r := &s.results
	if r.n.Load() == 0 {
		return
	}
	ck := connKey{c.hub.Name(), c.entry.ID()}
	r.mu.Lock()
	ids := append([]string(nil), r.byConn[ck]...)
	chans := make([]string, 0, len(ids))
	for _, id := range ids {
		p, _ := r.takeLocked(resultKey{ck.hub, ck.conn, id})
		chans = append(chans, p.channel)
	}
	r.mu.Unlock()
	for i, id := range ids {
		r.abandoned.Inc()
		s.returnError(chans[i], c.proto(), id, errTextDisconnected)
	}
}

// sweepResults times out the results older than Config.ResultTimeout.
func (s *Server) sweepResults(now time.Time) {
	r := &s.results
	if r.n.Load() == 0 {
		return
	}
	limit := now.Add(-s.cfg.resultTimeout()).Unix()
	type late struct {
		k resultKey
		p pendingResult
	}
	var lates []late
	r.mu.Lock()
	for k, p := range r.pend {
		if p.at <= limit {
			lates = append(lates, late{k, p})
		}
	}
	for _, l := range lates {
		r.takeLocked(l.k)
	}
	r.mu.Unlock()
	for _, l := range lates {
		r.timedOut.Inc()
		s.returnError(l.p.channel, hubproto.IDJSON, l.k.inv, errTextTimedOut)
	}
}

func (s *Server) returnError(channel string, id hubproto.ID, invocationID, text string) {
	p := hubproto.ByID(id)
	s.publishReturn(channel, p.Name(), p.AppendCompletionError(nil, invocationID, text))
}

// returnJob is a Completion on its way to a return channel.
type returnJob struct {
	channel, protocol string
	rec               []byte
}

// returnQueue bounds the Completions waiting for the returner goroutine.
const returnQueue = 1024

// publishReturn queues a Completion for its return channel: the caller
// (an event loop, the backplane's reader) never waits for the publish.
// A full queue drops it, counted and logged.
func (s *Server) publishReturn(channel, protocol string, rec []byte) {
	if s.cfg.Returner == nil {
		return
	}
	select {
	case s.returns <- returnJob{channel, protocol, rec}:
	default:
		s.results.lost.Inc()
		s.log.Warn("client result not returned: queue full", "channel", channel)
	}
}

// runReturner publishes the queued Completions, one at a time, and
// times out the pending results once a second.
func (s *Server) runReturner() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.wheel.stop:
			return
		case now := <-t.C:
			s.sweepResults(now)
		case j := <-s.returns:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.cfg.Returner.Return(ctx, j.channel, j.protocol, j.rec); err != nil {
				s.results.lost.Inc()
				s.log.Warn("client result not returned", "channel", j.channel, "err", err)
			}
			cancel()
		}
	}
}
