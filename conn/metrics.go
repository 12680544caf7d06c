package conn

import (
	"strconv"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// Metrics are a Server's metrics, declared with their help on their own
// set; the node registers it.
type Metrics struct {
	set         *metricset.Set
	accepted    *metrics.Counter
	closed      []*metrics.Counter // by cause index (1-based; 0 unused)
	rejected    func(reason string) *metrics.Counter
	messagesIn  *metrics.Counter
	ownOut      *metrics.Counter // frames the connection layer sent itself
	ownBytes    *metrics.Counter
	dropped     *metrics.Counter // invocations dropped: no upstream
	upstreamErr *metrics.Counter
	httpReqs    func(route string, code int) *metrics.Counter
	resume      resumeMetrics
}

func newMetrics(s *Server) *Metrics {
	set := metricset.New()
	closed := set.CounterVec("edgeplane_closed_total", "reason", "Client connections closed, by reason.")
	m := &Metrics{
		set:         set,
		accepted:    set.Counter("edgeplane_accepted_total", "Client connections admitted by the poller."),
		closed:      make([]*metrics.Counter, len(causes)+1),
		rejected:    set.CounterVec("edgeplane_rejected_total", "reason", "Connections or requests turned away, by reason."),
		messagesIn:  set.Counter("edgeplane_messages_in_total", "SignalR records received from clients."),
		ownOut:      set.Counter("edgeplane_control_frames_out_total", "Frames the connection layer sent itself (handshake, pings, completions)."),
		ownBytes:    set.Counter("edgeplane_control_bytes_out_total", "Bytes of frames the connection layer sent itself."),
		dropped:     set.Counter("edgeplane_invocations_dropped_total", "Client invocations with nowhere to go (no upstream or upstream refused)."),
		upstreamErr: set.Counter("edgeplane_upstream_errors_total", "Upstream events the upstream refused."),
	}
	for _, k := range causes {
		m.closed[k.idx] = closed(k.label)
	}
	m.resume = newResumeMetrics(set)
	s.results.registerMetrics(set)
	httpReqs := set.Counters("edgeplane_http_requests_total", "Client-port HTTP answers, by route and status code.", "route", "code")
	m.httpReqs = func(route string, code int) *metrics.Counter { return httpReqs(route, strconv.Itoa(code)) }
	set.Gauge("edgeplane_queue_bytes", "Outbound bytes queued but not yet written, all connections.", func() float64 {
		// The hubs' members, and the connections that left their hub on
		// their way out (slow clients...), whose queues the poller has
		// not freed yet: a slow-client storm must not make the gauge drop.
		// A member closing meanwhile is in the closing set, not counted
		// twice.
		n := s.closing.queuedBytes()
		s.router.Hubs(func(h *fanout.Hub) {
			h.Each(func(e *fanout.Entry) {
				if c, ok := e.Member().(*Conn); ok && c.state.Load() != stClosed {
					n += c.queued()
				}
			})
		})
		return float64(n)
	})
	return m
}

// Accepted is the number of connections admitted so far.
func (m *Metrics) Accepted() uint64 { return m.accepted.Get() }

// Rejected counts a connection or request turned away (poller admission
// reasons and HTTP-level ones).
func (m *Metrics) Rejected(reason string) { m.rejected(reason).Inc() }
