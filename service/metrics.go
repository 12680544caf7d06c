package service

import (
	"fmt"
	"strconv"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/metricset"
	"github.com/edgeplane/edgeplane/internal/serviceproto"
)

// Metrics are the service's metrics, declared with their help on their
// own set; the node registers it.
type Metrics struct {
	set            *metricset.Set
	handshakes     func(result string) *metrics.Counter
	serverClosed   func(reason string) *metrics.Counter
	messagesIn     func(typ string) *metrics.Counter
	bytesOut       *metrics.Counter
	relayed        *metrics.Counter
	relayRefused   *metrics.Counter
	clientsDropped *metrics.Counter
	clientsClosed  *metrics.Counter
	toServer       *metrics.Counter
	fromServer     *metrics.Counter
	toClient       *metrics.Counter
	multicast      func(kind backplane.Kind) *metrics.Counter
	acks           func(st serviceproto.AckStatus) *metrics.Counter
	ackLatency     *metrics.PrometheusHistogram
	dropped        func(reason string) *metrics.Counter
	unsupported    func(t serviceproto.Type) *metrics.Counter
	invocations    func(event string) *metrics.Counter
}

func newMetrics(s *Service) *Metrics {
	set := metricset.New()
	msgs := set.CounterVec("edgeplane_service_messages_in_total", "type", "Service-protocol messages received from app servers, by type.")
	multicast := set.CounterVec("edgeplane_service_multicast_total", "kind", "App messages to many clients published to the fleet, by target kind.")
	acks := set.CounterVec("edgeplane_service_acks_total", "status", "Acks sent to app servers, by status.")
	unsupported := set.CounterVec("edgeplane_service_unsupported_total", "type", "App-server messages or options the service does not implement (answered with an error ack or ignored), by message type.")
	m := &Metrics{
		set:            set,
		handshakes:     set.CounterVec("edgeplane_service_handshakes_total", "result", "App server connection handshakes, by result (ok, unauthorized, refused, bad_request, timeout)."),
		serverClosed:   set.CounterVec("edgeplane_service_server_closed_total", "reason", "App server connections closed, by reason."),
		messagesIn:     func(t string) *metrics.Counter { return msgs(t) },
		bytesOut:       set.Counter("edgeplane_service_bytes_out_total", "Bytes queued to app server connections."),
		relayed:        set.Counter("edgeplane_service_clients_relayed_total", "Clients relayed to an app server (OpenConnection sent)."),
		relayRefused:   set.Counter("edgeplane_service_clients_refused_total", "Clients refused at their handshake: no app server connection could host them."),
		clientsDropped: set.Counter("edgeplane_service_clients_dropped_total", "Clients closed because the server connection hosting them closed."),
		clientsClosed:  set.Counter("edgeplane_service_clients_closed_total", "Clients closed by their app (CloseConnection and the close-with-ack messages)."),
		toServer:       set.Counter("edgeplane_service_client_messages_total", "Client messages relayed to app servers (ConnectionData)."),
		fromServer:     set.Counter("edgeplane_service_server_data_total", "ConnectionData from app servers to their clients."),
		toClient:       set.Counter("edgeplane_service_client_frames_total", "Frames of app data sent to relayed clients."),
		multicast:      func(k backplane.Kind) *metrics.Counter { return multicast(k.String()) },
		acks:           func(st serviceproto.AckStatus) *metrics.Counter { return acks(ackLabel(st)) },
		ackLatency:     set.Histogram("edgeplane_service_group_change_seconds", "Time to apply an app's group change (local, or on the owning node through the backplane), in seconds."),
		dropped:        set.CounterVec("edgeplane_service_dropped_total", "reason", "App data that reached no client, by reason (unknown_connection, no_payload: neither json nor messagepack, no_json_form: a messagepack payload only that does not convert to JSON, invalid_utf8, too_large, backplane, handshake_refused_by_app)."),
		unsupported:    func(t serviceproto.Type) *metrics.Counter { return unsupported(t.String()) },
		invocations:    set.CounterVec("edgeplane_service_client_invocations_total", "event", "Client-result invocations (server to client with a result), by event: sent, completed, routed, client_gone, not_found, no_payload, unknown_completion, caller_gone."),
	}
	set.Gauge("edgeplane_service_server_connections_open", "App server connections open, all hubs, handshake done or not.", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.conns))
	})
	return m
}

// declareHub declares a hub's gauges.
func (m *Metrics) declareHub(h *hub) {
	m.set.Gauge(fmt.Sprintf(`edgeplane_service_server_connections{hub=%q}`, h.name), "App server connections open, by hub.", func() float64 {
		h.mu.RLock()
		defer h.mu.RUnlock()
		return float64(len(h.all))
	})
	m.set.Gauge(fmt.Sprintf(`edgeplane_service_app_servers{hub=%q}`, h.name), "Distinct app servers connected, by hub.", func() float64 {
		return float64(h.servers())
	})
	m.set.Gauge(fmt.Sprintf(`edgeplane_service_invocations_pending{hub=%q}`, h.name), "Client-result invocations waiting for the client's answer, by hub.", func() float64 {
		return float64(h.inv.len())
	})
}

func (m *Metrics) messageIn(t serviceproto.Type) { m.messagesIn(t.String()).Inc() }

func ackLabel(st serviceproto.AckStatus) string {
	switch st {
	case serviceproto.AckOk:
		return "ok"
	case serviceproto.AckNotFound:
		return "not_found"
	case serviceproto.AckTimeout:
		return "timeout"
	case serviceproto.AckInternalServerError:
		return "error"
	}
	return strconv.Itoa(int(st))
}
