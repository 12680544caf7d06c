package backplane

import "github.com/VictoriaMetrics/metrics"

// Metrics of the Redis backplane, in the default VictoriaMetrics set
// (served on the admin port's /metrics). Gauges are adjusted with Add, so
// several backplanes in one process (tests) sum up.
var (
	mReceivedAll        = metrics.NewCounter(`edgeplane_backplane_received_total{kind="all"}`)
	mReceivedGroup      = metrics.NewCounter(`edgeplane_backplane_received_total{kind="group"}`)
	mReceivedUser       = metrics.NewCounter(`edgeplane_backplane_received_total{kind="user"}`)
	mReceivedConnection = metrics.NewCounter(`edgeplane_backplane_received_total{kind="connection"}`)
	mReceivedGroups     = metrics.NewCounter(`edgeplane_backplane_received_total{kind="group_command"}`)
	mReceivedAck        = metrics.NewCounter(`edgeplane_backplane_received_total{kind="ack"}`)
	// Messages that failed to decode; never delivered.
	mDecodeErrors = metrics.NewCounter(`edgeplane_backplane_decode_errors_total`)
	// Messages on a channel this node no longer subscribes to (in flight
	// while it unsubscribed).
	mUnrouted = metrics.NewCounter(`edgeplane_backplane_unrouted_total`)

	mSubscriptions = metrics.NewGauge(`edgeplane_backplane_subscriptions`, nil)
	mSubscribeCmds = metrics.NewCounter(`edgeplane_backplane_subscribe_commands_total`)

	mPublished       = metrics.NewCounter(`edgeplane_backplane_published_total`)
	mPublishDuration = metrics.NewPrometheusHistogram(`edgeplane_backplane_publish_duration_seconds`)
	// Messages published while the backplane was down: pub/sub keeps
	// nothing, so they are lost.
	mLost = metrics.NewCounter(`edgeplane_backplane_lost_total`)

	mConnected   = metrics.NewGauge(`edgeplane_backplane_connected`, nil)
	mDisconnects = metrics.NewCounter(`edgeplane_backplane_disconnects_total`)
	mReconnects  = metrics.NewCounter(`edgeplane_backplane_reconnects_total`)
	mDownSeconds = metrics.NewFloatCounter(`edgeplane_backplane_down_seconds_total`)

	mGroupCommands = metrics.NewCounter(`edgeplane_backplane_group_commands_total`)
	mAckTimeouts   = metrics.NewCounter(`edgeplane_backplane_ack_timeouts_total`)
	mAcksDropped   = metrics.NewCounter(`edgeplane_backplane_acks_dropped_total`)

	mUpstreamSent        = metrics.NewCounter(`edgeplane_backplane_upstream_sent_total`)
	mUpstreamDropped     = metrics.NewCounter(`edgeplane_backplane_upstream_dropped_total`)
	mUpstreamErrors      = metrics.NewCounter(`edgeplane_backplane_upstream_errors_total`)
	mUpstreamUnconfirmed = metrics.NewCounter(`edgeplane_backplane_upstream_unconfirmed_total`)
)

func receivedCounter(k chanKind) *metrics.Counter {
	switch k {
	case chanAll:
		return mReceivedAll
	case chanGroup:
		return mReceivedGroup
	case chanUser:
		return mReceivedUser
	case chanConnection:
		return mReceivedConnection
	case chanGroups:
		return mReceivedGroups
	default:
		return mReceivedAck
	}
}
