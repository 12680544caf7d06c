package conn

import (
	"fmt"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/edgeplane/edgeplane/fanout"
)

// Close reasons (metric label values of edgeplane_closed_total).
const (
	reasonClientClose      = "client_close"
	reasonPeerGone         = "peer_gone"
	reasonSlowClient       = "slow_client"
	reasonTimeout          = "timeout"
	reasonHandshakeTimeout = "handshake_timeout"
	reasonProtocolError    = "protocol_error"
	reasonTooBig           = "too_big"
	reasonInvalidUTF8      = "invalid_utf8"
	reasonHandshakeError   = "handshake_error"
	reasonHTTPDone         = "http_done"
	reasonHTTPError        = "http_error"
	reasonServerClose      = "server_close"
	reasonShutdown         = "shutdown"
	reasonDuplicate        = "duplicate_id"
	reasonRateLimited      = "rate_limited"
)

var closeReasons = []string{
	reasonClientClose, reasonPeerGone, reasonSlowClient, reasonTimeout,
	reasonHandshakeTimeout, reasonProtocolError, reasonTooBig, reasonInvalidUTF8,
	reasonHandshakeError, reasonHTTPDone, reasonHTTPError, reasonServerClose,
	reasonShutdown, reasonDuplicate, reasonRateLimited,
}

var reasonIndex = func() map[string]uint32 {
	m := make(map[string]uint32, len(closeReasons))
	for i, r := range closeReasons {
		m[r] = uint32(i + 1)
	}
	return m
}()

// disconnectReason is the reason given upstream for a disconnect: "" for a
// normal close by the client, the close reason the node chose, or
// peer_gone (with the I/O error, if any) when the socket just went away.
func disconnectReason(idx uint32, err error) string {
	if idx > 0 && int(idx) <= len(closeReasons) {
		if r := closeReasons[idx-1]; r != reasonClientClose {
			return r
		}
		return ""
	}
	if err != nil {
		return reasonPeerGone + ": " + err.Error()
	}
	return reasonPeerGone
}

// Metrics are a Server's Prometheus metrics, in their own set registered
// with the global VictoriaMetrics registry (so /metrics includes them).
type Metrics struct {
	set         *metrics.Set
	accepted    *metrics.Counter
	closed      map[string]*metrics.Counter
	rejected    func(reason string) *metrics.Counter
	messagesIn  *metrics.Counter
	ownOut      *metrics.Counter // frames the connection layer sent itself
	ownBytes    *metrics.Counter
	dropped     *metrics.Counter // invocations dropped: no upstream
	upstreamErr *metrics.Counter
	httpReqs    func(route string, code int) *metrics.Counter
}

func newMetrics(s *Server) *Metrics {
	set := metrics.NewSet()
	m := &Metrics{
		set:         set,
		accepted:    set.NewCounter("edgeplane_accepted_total"),
		closed:      make(map[string]*metrics.Counter, len(closeReasons)),
		messagesIn:  set.NewCounter("edgeplane_messages_in_total"),
		ownOut:      set.NewCounter("edgeplane_control_frames_out_total"),
		ownBytes:    set.NewCounter("edgeplane_control_bytes_out_total"),
		dropped:     set.NewCounter("edgeplane_invocations_dropped_total"),
		upstreamErr: set.NewCounter("edgeplane_upstream_errors_total"),
	}
	for _, r := range closeReasons {
		m.closed[r] = set.NewCounter(fmt.Sprintf(`edgeplane_closed_total{reason=%q}`, r))
	}
	m.rejected = func(reason string) *metrics.Counter {
		return set.GetOrCreateCounter(fmt.Sprintf(`edgeplane_rejected_total{reason=%q}`, reason))
	}
	m.httpReqs = func(route string, code int) *metrics.Counter {
		return set.GetOrCreateCounter(fmt.Sprintf(`edgeplane_http_requests_total{route=%q,code="%d"}`, route, code))
	}
	msgsOut := set.NewCounter("edgeplane_messages_out_total")
	bytesOut := set.NewCounter("edgeplane_bytes_out_total")
	fanoutMsgs := set.NewCounter("edgeplane_fanout_messages_total")
	fanoutDur := set.NewPrometheusHistogram("edgeplane_fanout_duration_seconds")
	s.router.Stats.OnDeliver = func(n, size int, took time.Duration) {
		fanoutDur.Update(took.Seconds())
		fanoutMsgs.Inc()
		msgsOut.Add(n)
		bytesOut.Add(n * size)
	}
	for _, name := range s.cfg.Hubs {
		h := s.router.Hub(name)
		set.NewGauge(fmt.Sprintf(`edgeplane_connections{hub=%q}`, name), func() float64 { return float64(h.Len()) })
	}
	set.NewGauge("edgeplane_queue_bytes", func() float64 {
		var n int
		s.router.Hubs(func(h *fanout.Hub) {
			h.Each(func(e *fanout.Entry) {
				if c, ok := e.Member().(*Conn); ok {
					n += c.pc.QueuedBytes()
				}
			})
		})
		return float64(n)
	})
	metrics.RegisterSet(set)
	return m
}

// Accepted is the number of connections admitted so far.
func (m *Metrics) Accepted() uint64 { return m.accepted.Get() }

// Rejected counts a connection or request turned away (poller admission
// reasons and HTTP-level ones).
func (m *Metrics) Rejected(reason string) { m.rejected(reason).Inc() }

func (m *Metrics) unregister() { metrics.UnregisterSet(m.set, true) }
