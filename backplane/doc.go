// Package backplane connects the nodes of an edgeplane fleet so that they
// behave as one: a message published on any node reaches the recipients on
// every node. fanout subscribes to what its local members need (first local
// member subscribes, last one unsubscribes) and receives through Receiver.
//
// Memory is the single-node backplane (the default). The Redis backplane
// speaks the ASP.NET Core SignalR Redis wire format.
//
//	bp := backplane.NewMemory()
//	bp.Start(router) // router implements Receiver
//	bp.Publish(ctx, &backplane.Message{Hub: "chat", Kind: backplane.All, Payload: rec})
//
// # Redis
//
// NewRedis connects a node to the fleet through Redis pub/sub, in the wire
// format of ASP.NET Core SignalR's Redis backplane
// (Microsoft.AspNetCore.SignalR.StackExchangeRedis), so edgeplane nodes and
// ASP.NET Core servers can share one backplane:
//
//	bp, err := backplane.NewRedis(backplane.RedisConfig{
//		URL:  "redis://127.0.0.1:6379",
//		Hubs: map[string]string{"chat": "MyApp.Hubs.ChatHub"}, // hub → channel prefix
//	})
//	err = bp.Start(router)
//
// Channels, for a hub whose prefix is P (default: the hub name):
//
//	P:all                     every client of the hub
//	P:group:{group}           members of a group
//	P:user:{userId}           connections of a user
//	P:connection:{connId}     one connection
//	P:internal:groups         group commands for connections on other nodes
//	P:internal:ack:{server}   acks for this node's group commands
//
// A node subscribes to P:all, P:internal:groups and its ack channel for
// every hub, and to a group, user or connection channel while it has a
// local member (fanout calls Subscribe and Unsubscribe; they only queue the
// change, and a single goroutine writes all queued changes in one
// SUBSCRIBE/UNSUBSCRIBE). Payloads are MessagePack (package wire): an
// invocation is [[excluded connection ids], {"json": record}], where the
// record is the complete JSON hub-protocol message with its 0x1e; it becomes
// Message.Payload as a sub-slice of the Redis message, without a copy.
// Payloads that do not decode are counted, logged with their channel and
// dropped. A node receives its own publishes through its subscriptions: that
// is how it delivers them locally, once. Nothing is queued between Redis and
// the Receiver (the read goroutine calls Deliver), so nothing is dropped on
// the way; a slow Receiver slows reading, Redis buffers for the node up to
// its client-output-buffer-limit for pubsub and then disconnects it, which
// is counted as a disconnect (and what was in flight is lost).
//
// With RedisConfig.ClusterAddrs the backplane uses sharded pub/sub
// (SPUBLISH/SSUBSCRIBE, Redis 7+) through a cluster client, with one
// subscription connection per hash slot in use (one SSUBSCRIBE may only
// name channels of one slot). Resharding while subscribed is not handled.
//
// When Redis goes away, client connections stay up; go-redis reconnects
// and restores every subscription, including those made meanwhile. Ready
// reports false until then, Publish fails fast with ErrUnavailable, and
// the message is lost (pub/sub keeps nothing): it is counted in
// edgeplane_backplane_lost_total. Messages published by others while this
// node was disconnected are lost to it as well.
//
// # Upstream stream
//
// (*Redis).Upstream appends client events to one Redis Stream per hub,
// P:upstream, trimmed with XADD MAXLEN ~ (RedisConfig.UpstreamMaxLen).
// Application servers consume it with consumer groups (XGROUP CREATE
// P:upstream app $ MKSTREAM, then XREADGROUP). An entry's fields, all
// strings:
//
//	type          "invocation", "connected" or "disconnected"
//	hub           hub name
//	connectionId  the client connection
//	userId        the authenticated user; absent when anonymous
//	invocationId  invocation: present when the client expects a completion
//	target        invocation: the hub method called
//	arguments     invocation: the JSON array of arguments, as sent
//	reason        disconnected: why: "" for a normal close by the client,
//	              else the node's close reason (slow_client, timeout,
//	              server_close, shutdown, protocol_error, too_big,
//	              invalid_utf8, rate_limited, …) or peer_gone when the
//	              socket went away without a close
//	server        name of the node that holds the connection
//
// The entry id gives the time. To answer an invocation, publish a
// Completion record ({"type":3,"invocationId":…,"result":…} + 0x1e) as an
// invocation on P:connection:{connectionId}. Events that cannot be queued
// (buffer full, Redis down) are refused and counted
// (edgeplane_backplane_upstream_dropped_total).
//
// # Metrics
//
// In the default VictoriaMetrics set, prefixed edgeplane_backplane_:
// received_total{kind}, decode_errors_total, unrouted_total,
// subscriptions, subscribe_commands_total, published_total,
// publish_duration_seconds, lost_total, connected, disconnects_total,
// reconnects_total, down_seconds_total, group_commands_total,
// ack_timeouts_total, acks_dropped_total, upstream_sent_total,
// upstream_dropped_total, upstream_errors_total.
package backplane
