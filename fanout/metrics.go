package fanout

import (
	"fmt"
	"time"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// Metrics declares the router's metrics (deliveries, registered
// connections per hub; messages dropped, declared by NewRouter) on a set
// of their own, completed on the first call, and hooks them to
// Stats.OnDeliver (after a hook already set there, which keeps being
// called). Call it before the first delivery.
func (r *Router) Metrics() *metricset.Set {
	r.metricsOnce.Do(func() {
		set := r.metrics
		msgsOut := set.Counter("edgeplane_messages_out_total", "(message, recipient) deliveries queued.")
		bytesOut := set.Counter("edgeplane_bytes_out_total", "Frame bytes queued to recipients.")
		fanoutMsgs := set.Counter("edgeplane_fanout_messages_total", "Messages delivered to this node's local recipients.")
		fanoutDur := set.Histogram("edgeplane_fanout_duration_seconds", "Time to queue one message to all its local recipients.")
		prev := r.Stats.OnDeliver
		r.Stats.OnDeliver = func(n, bytes int, took time.Duration) {
			fanoutDur.Update(took.Seconds())
			fanoutMsgs.Inc()
			msgsOut.Add(n)
			bytesOut.Add(bytes)
			if prev != nil {
				prev(n, bytes, took)
			}
		}
		for _, name := range r.HubNames() {
			r.declareHub(r.Hub(name))
		}
		r.metricsDone.Store(true)
	})
	return r.metrics
}

// declareHub declares a hub's gauge.
func (r *Router) declareHub(h *Hub) {
	r.metrics.Gauge(fmt.Sprintf(`edgeplane_connections{hub=%q}`, h.Name()), "Registered (handshake done) client connections, by hub.",
		func() float64 { return float64(h.Len()) })
}

// declareDropped declares edgeplane_fanout_dropped_total with a series per
// reason (zero until the first drop, so alerts see it from the start), and
// the encode counters. NewRouter calls it: Deliver counts drops and
// encodes whether or not Metrics is called.
func (r *Router) declareDropped() {
	dropped := r.metrics.CounterVec("edgeplane_fanout_dropped_total", "reason",
		"Messages dropped instead of delivered, by reason: invalid_utf8 (not valid UTF-8: in a text frame it would break every recipient's connection), too_large (its frame is larger than a connection's outbound queue, --max-queue-bytes).")
	for i, l := range dropLabels {
		r.dropped[i] = dropped(l)
	}
	encodes := r.metrics.CounterVec("edgeplane_fanout_encodes_total", "protocol",
		"Frames built for delivery, by hub protocol: at most one per message and protocol, and none for a protocol no recipient of the message speaks.")
	for id := hubproto.ID(0); id < hubproto.NumIDs; id++ {
		r.encodes[id] = encodes(id.String())
	}
	r.transcoded = r.metrics.Counter("edgeplane_fanout_transcoded_total",
		"MessagePack frames converted from a message's JSON (REST, upstream, a backplane message without a messagepack entry); the others reuse the backplane's messagepack bytes.")
}
