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
//	P:internal:ack:{server}   acks for this node's group commands (and
//	                          replies to its fleet commands)
//	P:internal:edgeplane      fleet commands (edgeplane nodes only)
//
// A node subscribes to P:all, P:internal:groups, its ack channel and
// P:internal:edgeplane for every hub, and to a group, user or connection channel while it has a
// local member (fanout calls Subscribe and Unsubscribe; they only queue the
// change, and a single goroutine writes all queued changes in one
// SUBSCRIBE/UNSUBSCRIBE). Payloads are MessagePack (package wire): an
// invocation is [[excluded connection ids], {"json": record}], where the
// record is the complete JSON hub-protocol message with its 0x1e; it becomes
// Message.Payload as a sub-slice of the Redis message, without a copy. A
// messagepack entry beside it (an ASP.NET Core server with MessagePack
// writes one) becomes Message.MessagePack the same way, for fanout to hand
// to MessagePack clients as it is; this node publishes the json entry,
// and a messagepack entry beside it when the message has one (a REST
// send's body carried it, or an app's own MessagePack records in service
// mode).
// Payloads that do not decode are counted, logged with their channel and
// dropped. A node receives its own publishes through its subscriptions: that
// is how it delivers them locally, once. Nothing is queued between Redis and
// the Receiver (the read goroutine calls Deliver), so nothing is dropped on
// the way; a slow Receiver slows reading, Redis buffers for the node up to
// its client-output-buffer-limit for pubsub and then disconnects it, which
// is counted as a gap (and what was in flight is lost).
//
// Subscription connections are the backplane's own (a small RESP2 reader,
// redis_resp.go); go-redis carries publishes, the health probe, the
// upstream stream and CLUSTER SLOTS.
//
// With RedisConfig.ClusterAddrs the backplane uses sharded pub/sub
// (SPUBLISH/SSUBSCRIBE, Redis 7+): one subscription connection per master
// in use, each slot's channels in SSUBSCRIBEs of their own (one command may
// only name channels of one slot). When a slot moves (CLUSTER FAILOVER, a
// replica taking over a dead master, resharding) Redis 7 sends sunsubscribe
// for its channels; that, a MOVED reply, or a subscription connection that
// fails makes the node re-read the topology and subscribe the slot's
// channels on the master that serves it now.
//
// # Never ready while deaf
//
// Ready is true only while every subscription is in effect and the publish
// path works:
//
//   - a subscription connection that has read nothing for half of
//     HealthInterval is sent a PING; one that has read nothing for a whole
//     HealthInterval (a half-open socket after a partition, a paused Redis,
//     a Redis that moved behind a stable address) is closed, dialed again
//     and everything is subscribed anew;
//   - a connection or a slot counts as working again only once a PING
//     written after its SUBSCRIBEs is answered;
//   - every HealthInterval the health probe publishes on this node's own
//     ack channel: an error or a time-out makes the node not ready until a
//     probe succeeds, and a probe (or a broadcast) that reaches no
//     subscriber while this node believes itself subscribed means the
//     subscription is on another server than publishes go to: it is
//     restored (a broadcast that reached no one fails with ErrUnavailable
//     and is counted as lost).
//
// Between the last moment a subscription was known to work (the last bytes
// read) and the confirmation of its resubscription, messages published on
// its channels are lost to this node (pub/sub keeps nothing). That gap is
// counted (gaps_total by reason, gap_seconds_total) and logged as a
// warning with its bounds (gap_from, gap_to).
//
// When Redis goes away, client connections stay up; the backplane
// reconnects with a capped backoff and restores every subscription,
// including those made meanwhile. Ready reports false until then, Publish
// fails fast with ErrUnavailable, and the message is lost: it is counted
// in edgeplane_backplane_lost_total.
//
// # Upstream stream
//
// (*Redis).Upstream appends client events to one Redis Stream per hub,
// P:upstream, bounded by entries (XADD MAXLEN ~, RedisConfig.UpstreamMaxLen),
// by bytes (UpstreamMaxBytes: a MAXLEN from the stream's bytes per entry,
// estimated and measured in Redis) and by age (UpstreamMaxAge: XTRIM MINID
// ~), whether an app reads it or not; RedisConfig.UpstreamURL puts the
// streams on a Redis of their own. Application servers consume it with consumer groups (XGROUP CREATE
// P:upstream app $ MKSTREAM, then XREADGROUP). An entry's fields, all
// strings:
//
//	type          "invocation", "connected", "disconnected",
//	              "reconnected" (a stateful-reconnect connection came back
//	              on a new socket within its window: same id and groups),
//	              "streamItem", "completion" or "cancelInvocation" (the
//	              client's own stream messages, in order with its other
//	              entries)
//	hub           hub name
//	connectionId  the client connection
//	userId        the authenticated user; absent when anonymous
//	invocationId  invocation: present when the client expects a completion;
//	              streamItem, completion: the upload stream's id (or, for
//	              a completion, the id of an invocation the app sent the
//	              client: its client result); cancelInvocation: the
//	              stream invocation cancelled
//	target        invocation: the hub method called
//	arguments     invocation: the JSON array of arguments, as sent
//	messageType   invocation: "streamInvocation" when the client expects
//	              StreamItems and then a Completion; absent for a plain
//	              Invocation
//	streamIds     invocation: its upload streams, a JSON array of ids;
//	              absent when none
//	item          streamItem: the item, JSON
//	result        completion: the result, JSON; absent when void or error
//	error         completion: the client's error text
//	abandoned     disconnected: a JSON array of the stream invocations and
//	              upload streams the client opened and did not end itself
//	              (the last 32 at most); absent when none
//	remoteAddress connected: the client's address, ip:port, as the node
//	              sees it (behind a load balancer, the balancer's)
//	query         connected: the connect request's query string as sent,
//	              without access_token and id; absent when empty
//	headers       connected: the connect request's headers, a JSON object
//	              of canonical name → array of values (User-Agent, Host,
//	              custom headers), without Authorization,
//	              Proxy-Authorization, Cookie (unless the node forwards
//	              cookies) and the WebSocket handshake's own headers
//	claims        connected: the access token's claims, a JSON object;
//	              absent without an access key
//	truncated     connected: "true" when headers, the query or the claims
//	              were left out to keep the context within the node's
//	              bound (--upstream-context-bytes)
//	reason        disconnected: why: "" for a normal close by the client,
//	              else the node's close reason (slow_client, timeout,
//	              server_close, shutdown, protocol_error, too_big,
//	              invalid_utf8, rate_limited, reconnect_expired,
//	              reconnect_buffer_full, …) or peer_gone when the socket
//	              went away without a close (with stateful reconnect: when
//	              the client did not come back, reconnect_expired, at the
//	              end of the window)
//	server        name of the node that holds the connection
//
// The connected event's request context (ConnectContext) is what ASP.NET
// hub code reads with Context.GetHttpContext() and what Azure SignalR
// forwards in OpenConnection and its upstream's X-ASRS-* headers.
// The entry id gives the time. To answer an invocation, publish a
// Completion record ({"type":3,"invocationId":…,"result":…} + 0x1e) as an
// invocation on P:connection:{connectionId}; a stream's items are
// StreamItem records ({"type":2,"invocationId":…,"item":…}) published
// there before it.
//
// # Client results
//
// A Connection message with Message.ReturnChannel (the 4-item payload
// [excluded, {json}, invocationId, returnChannel] of ASP.NET Core's
// InvokeAsync, wire/results.go) asks the node that holds the connection
// to publish the client's Completion to that channel as
// [protocolName, bin(framed Completion)]; every node subscribes to its
// own P:internal:return:{server} (Returner, ReturnReceiver) for the REST
// API's :invoke. Events that cannot be queued
// (buffer full, Redis down) are refused and counted
// (edgeplane_backplane_upstream_dropped_total).
//
// # Fleet commands and user groups
//
// Fleet (Memory, Redis) carries edgeplane's own commands for what the
// ASP.NET Core format has no message for, each applied by every node to
// its own connections (fleet.go): close the connections of a hub, group
// or user; take a connection out of every group; add a user's
// connections to a group or take them out; list a group's members, a page
// at a time. Command sends one and collects the replies of as many nodes
// as asked (Holders: the nodes subscribed to a group's, user's or
// connection's channel, PUBSUB NUMSUB); a reply that names a group waits
// for the replying node's subscription to it. Commands are MessagePack
// arrays on P:internal:edgeplane, replies acks with extra items on the
// asker's ack channel, so ASP.NET Core servers on the same backplane see
// neither. The REST API (package admin) is their user.
//
// UserGroupStore holds Azure SignalR's user-group memberships (a user's
// current and future connections belong to a group until a TTL, or
// without one among its latest MaxUserGroups): MemoryUserGroups on one
// node, (*Redis).UserGroups for a fleet, two sorted sets per user
// (edgeplane:usergroups:{P:user}, …:nottl) changed by one script each and
// expiring with the user's last membership.
//
// # Connection tokens
//
// The Redis backplane also keeps two kinds of plain keys for the connection
// layer. ClaimTokens (TokenClaimer) claims connection ids at upgrade,
// edgeplane:conn:{hub}:{id} = the claiming node, SET NX EXAT the token's
// expiry (+10 s), so a token connects once on the whole fleet; it answers
// ErrUnavailable at once while the backplane is not ready. AgreeTokenKey
// (TokenKeyAgreer) lets nodes given no token key agree on one:
// edgeplane:token-key, SET NX then GET, no expiry; a stored value shorter
// than MinTokenKeyLen is ErrBadTokenKey.
//
// # Metrics
//
// Each Redis backplane declares its metrics, with their help text, on a
// metricset.Set of its own, returned by (*Redis).Metrics; the node
// registers it (the Memory backplane counts nothing: its Metrics is nil).
// The families, all prefixed edgeplane_backplane_:
//
//	received_total{kind}        messages on subscribed channels; kind is all,
//	                            group, user, connection, group_command or ack
//	decode_errors_total         messages that failed to decode (dropped)
//	unrouted_total              messages on a channel no longer subscribed
//	subscriptions               channels subscribed (gauge)
//	subscribe_commands_total    (S)SUBSCRIBE/(S)UNSUBSCRIBE commands written
//	published_total             messages published (group commands, acks too)
//	publish_duration_seconds    one publish, retries included (histogram)
//	lost_total                  messages not published: Redis down or failing
//	connected                   1 while every subscription is in effect (gauge)
//	disconnects_total           stopped receiving after having been up
//	reconnects_total            receiving everything again after a disconnect
//	down_seconds_total          time not receiving, from detection to recovery
//	gaps_total{reason}          subscriptions (a connection, a cluster slot)
//	                            restored after a gap: connection_error, no_pong,
//	                            slot_moved, not_subscribed, error_reply
//	gap_seconds_total           time with a subscription not in effect, from
//	                            when it was last known to work
//	subscription_connections    subscription connections (gauge)
//	group_commands_total        group commands sent to other nodes
//	ack_timeouts_total          group commands no node acknowledged in time
//	acks_dropped_total          acks (and fleet replies) dropped, the ack
//	                            queue full
//	fleet_commands_total        fleet commands published
//	fleet_reply_timeouts_total  fleet commands fewer nodes replied to than
//	                            were asked, within the ack time-out
//	upstream_sent_total         upstream events written to the streams
//	upstream_dropped_total      upstream events refused (buffer full, Redis down)
//	upstream_errors_total       upstream events whose XADD failed
//	upstream_unconfirmed_total  upstream batches written before the connection
//	                            channel's subscription was confirmed
//
// # Files
//
//	backplane.go            the Backplane and Receiver interfaces, Message, errors
//	memory.go               Memory, the single-node backplane
//	upstream.go             the Upstream interface and Event
//	results.go              Returner, ReturnReceiver: client results (Memory's side too)
//	tokens.go               the TokenClaimer and TokenKeyAgreer interfaces
//	redis.go                RedisConfig, Redis, NewRedis, channel names, Start,
//	                        Publish, Close
//	redis_subscriptions.go  Subscribe/Unsubscribe bookkeeping, the flusher that
//	                        batches them, WaitSubscribed
//	redis_subscriber.go     one subscription connection (per master in a
//	                        cluster): dial, resubscribe, liveness
//	redis_resp.go           RESP2 for subscription connections
//	redis_receive.go        a subscription's read loop; decoding and dispatch
//	redis_cluster.go        slot placement on masters, topology, moved slots
//	redis_groups.go         RemoteGroup, applying group commands, acks
//	fleet.go                fleet commands: Command, Reply, the Fleet interface
//	memory_fleet.go         Memory's fleet: commands applied locally
//	redis_fleet.go          Redis's fleet: P:internal:edgeplane, replies, Holders
//	usergroups.go           UserGroupStore, MemoryUserGroups
//	redis_usergroups.go     RedisUserGroups, the user-group sorted sets
//	redis_health.go         Ready, faults and gaps, the health probe, down time
//	redis_upstream.go       RedisUpstream, the Redis Stream writer and its bounds
//	redis_tokens.go         connection-token claims and the agreed token key
//	relay.go                the Relay interface: service mode's node-to-node
//	                        channel and presence
//	redis_relay.go          Redis's relay: edgeplane:relay:{node}, presence
//	                        sorted sets edgeplane:{svc}:nodes and :hosts
//	redis_metrics.go        the metrics, (*Redis).Metrics
//	redis_slot.go           Redis Cluster hash slots
//	ratelog.go              rate-limited warnings
//	wire/                   the MessagePack codec of the ASP.NET Core format
package backplane
