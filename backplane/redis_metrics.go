package backplane

import (
	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/internal/metricset"
)

// redisMetrics are one Redis backplane's metrics, declared with their help
// on the backplane's own Set (see Metrics). Every series exists from
// NewRedis on, zero until something is counted.
type redisMetrics struct {
	set *metricset.Set

	// received is edgeplane_backplane_received_total by chanKind.
	receivedAll, receivedGroup, receivedUser, receivedConnection,
	receivedGroups, receivedAck, receivedFleet, receivedReturn *metrics.Counter
	decodeErrors *metrics.Counter
	unrouted     *metrics.Counter

	subscriptions *metrics.Gauge
	subscribeCmds *metrics.Counter

	published       *metrics.Counter
	publishDuration *metrics.PrometheusHistogram
	lost            *metrics.Counter

	connected   *metrics.Gauge
	disconnects *metrics.Counter
	reconnects  *metrics.Counter
	downSeconds *metrics.FloatCounter

	gapsConnection, gapsNoPong, gapsSlotMoved, gapsNotSubscribed, gapsErrorReply *metrics.Counter
	gapSeconds                                                                   *metrics.FloatCounter
	subConns                                                                     *metrics.Gauge

	groupCommands *metrics.Counter
	ackTimeouts   *metrics.Counter
	acksDropped   *metrics.Counter

	fleetCommands      *metrics.Counter
	fleetReplyTimeouts *metrics.Counter

	upstreamSent        *metrics.Counter
	upstreamDropped     *metrics.Counter
	upstreamErrors      *metrics.Counter
	upstreamUnconfirmed *metrics.Counter
}

func newRedisMetrics() *redisMetrics {
	s := metricset.New()
	received := s.CounterVec("edgeplane_backplane_received_total", "kind",
		"Messages received on a channel this node subscribes to, by channel kind (all, group, user, connection, group_command, ack, fleet_command, client_result), before decoding.")
	gaps := s.CounterVec("edgeplane_backplane_gaps_total", "reason",
		"Subscriptions (a subscription connection, or a cluster slot's channels) restored after a gap in which messages published on them were lost, by why they stopped: connection_error, no_pong (nothing read for a health interval: half-open connection, paused Redis), slot_moved (cluster failover or resharding), not_subscribed (a publish reached no subscriber), error_reply.")
	return &redisMetrics{
		set: s,

		receivedAll:        received("all"),
		receivedGroup:      received("group"),
		receivedUser:       received("user"),
		receivedConnection: received("connection"),
		receivedGroups:     received("group_command"),
		receivedAck:        received("ack"),
		receivedFleet:      received("fleet_command"),
		receivedReturn:     received("client_result"),
		decodeErrors: s.Counter("edgeplane_backplane_decode_errors_total",
			"Backplane messages that failed to decode (dropped)."),
		unrouted: s.Counter("edgeplane_backplane_unrouted_total",
			"Messages on a channel this node no longer subscribes to (in flight while it unsubscribed); dropped."),

		subscriptions: s.Gauge("edgeplane_backplane_subscriptions",
			"Redis channels this node subscribes to (written to Redis; confirmation may be pending).", nil),
		subscribeCmds: s.Counter("edgeplane_backplane_subscribe_commands_total",
			"(S)SUBSCRIBE and (S)UNSUBSCRIBE commands written, each carrying a batch of channel changes."),

		published: s.Counter("edgeplane_backplane_published_total",
			"Messages published to Redis (PUBLISH or SPUBLISH): hub messages, group commands and acks."),
		publishDuration: s.Histogram("edgeplane_backplane_publish_duration_seconds",
			"Time of one publish to Redis, retries included, whether it succeeded or not."),
		lost: s.Counter("edgeplane_backplane_lost_total",
			"Messages not published because Redis was unreachable or the publish failed; pub/sub keeps nothing, so they are lost."),

		connected: s.Gauge("edgeplane_backplane_connected",
			"1 while the Redis backplane is connected and every subscription is in effect.", nil),
		disconnects: s.Counter("edgeplane_backplane_disconnects_total",
			"Times the backplane stopped receiving (a subscription connection lost, or a cluster slot's subscriptions dropped) after having been connected."),
		reconnects: s.Counter("edgeplane_backplane_reconnects_total",
			"Times the backplane was receiving everything again after a disconnect."),
		downSeconds: s.FloatCounter("edgeplane_backplane_down_seconds_total",
			"Seconds the backplane was disconnected from Redis after having been connected."),

		gapsConnection:    gaps(reasonConnection),
		gapsNoPong:        gaps(reasonNoPong),
		gapsSlotMoved:     gaps(reasonSlotMoved),
		gapsNotSubscribed: gaps(reasonNotSubscribed),
		gapsErrorReply:    gaps(reasonErrorReply),
		gapSeconds: s.FloatCounter("edgeplane_backplane_gap_seconds_total",
			"Seconds during which at least one subscription was not in effect, from the last moment it was known to work (the last bytes read) until its resubscription was confirmed; messages published on its channels meanwhile were lost."),
		subConns: s.Gauge("edgeplane_backplane_subscription_connections",
			"Redis subscription connections: one for a single server, one per master in use in a cluster.", nil),

		groupCommands: s.Counter("edgeplane_backplane_group_commands_total",
			"Group commands published for connections on other nodes."),
		ackTimeouts: s.Counter("edgeplane_backplane_ack_timeouts_total",
			"Group commands no node acknowledged before the ack time-out or the caller's deadline (answered as not found)."),
		acksDropped: s.Counter("edgeplane_backplane_acks_dropped_total",
			"Acks for group commands applied here that were dropped because the ack queue was full."),

		fleetCommands: s.Counter("edgeplane_backplane_fleet_commands_total",
			"Fleet commands (REST closes, user groups, group listings) published to the other nodes."),
		fleetReplyTimeouts: s.Counter("edgeplane_backplane_fleet_reply_timeouts_total",
			"Fleet commands for which fewer nodes replied than held what the command named, within the ack time-out."),

		upstreamSent: s.Counter("edgeplane_backplane_upstream_sent_total",
			"Upstream events written to the hubs' Redis Streams."),
		upstreamDropped: s.Counter("edgeplane_backplane_upstream_dropped_total",
			"Upstream events refused because the buffer was full or Redis was unreachable."),
		upstreamErrors: s.Counter("edgeplane_backplane_upstream_errors_total",
			"Upstream events whose XADD failed (lost)."),
		upstreamUnconfirmed: s.Counter("edgeplane_backplane_upstream_unconfirmed_total",
			"Upstream batches written before this node's subscription to a connection's channel was confirmed (a reply to it may be missed)."),
	}
}

// received returns the received_total counter for a channel kind.
func (m *redisMetrics) received(k chanKind) *metrics.Counter {
	switch k {
	case chanAll:
		return m.receivedAll
	case chanGroup:
		return m.receivedGroup
	case chanUser:
		return m.receivedUser
	case chanConnection:
		return m.receivedConnection
	case chanGroups:
		return m.receivedGroups
	case chanFleet:
		return m.receivedFleet
	case chanReturn:
		return m.receivedReturn
	default:
		return m.receivedAck
	}
}

// gaps returns the gaps_total counter for a reason.
func (m *redisMetrics) gaps(reason string) *metrics.Counter {
	switch reason {
	case reasonNoPong:
		return m.gapsNoPong
	case reasonSlotMoved:
		return m.gapsSlotMoved
	case reasonNotSubscribed:
		return m.gapsNotSubscribed
	case reasonErrorReply:
		return m.gapsErrorReply
	default:
		return m.gapsConnection
	}
}

// Metrics returns the backplane's metrics (edgeplane_backplane_*), for the
// node to register. Each Redis backplane has its own Set.
func (r *Redis) Metrics() *metricset.Set { return r.m.set }
