// Package webhook delivers client events to HTTP upstreams as Azure
// SignalR Service does in Serverless mode ("upstream"), so that an Azure
// Functions app's SignalR trigger, or any HTTP backend written for it,
// receives them unchanged:
//
//	u, err := webhook.New(webhook.Config{
//		Settings:   []webhook.Setting{{URLTemplate: "https://app/runtime/webhooks/signalr?hub={hub}&category={category}&event={event}"}},
//		AccessKeys: []string{key},
//		Deliver:    func(hub, connID string, rec, messagePack []byte) { /* to the client */ },
//	})
//	srvCfg.Upstream = u // a backplane.Upstream
//
// Settings are tried in order and the first whose hub, category and event
// patterns match takes the event ("*", a comma list, or a name; the URL
// template's {hub}, {category} and {event} are filled in). Events:
// category "connections" with "connected" ({"type":10}) and
// "disconnected" ({"type":11,"error":…}), category "messages" with the
// invocation's target as the event: the client's Invocation without
// framing, as JSON without the record separator (application/json) or,
// from a MessagePack client, its own MessagePack record as it came,
// without the VarInt length (application/x-msgpack); connection events
// are always JSON. Each request carries X-ASRS-Connection-Id,
// -Hub, -Category, -Event, -User-Id, -User-Claims (from the connection's
// access token), -Client-Query and -Signature: "sha256=" and the hex
// HMAC-SHA256 of the connection id under each access key, comma-joined.
//
// The answer to an invocation with an id goes back to the client, in the
// client's protocol: a Completion record of that invocation as is (what
// the Functions extension returns: JSON with its record separator, or
// MessagePack behind its VarInt length), another body as the Completion's
// result (a JSON value, or for a MessagePack client exactly one
// MessagePack value), an empty 2xx as an empty Completion, anything else
// as an error Completion ("Invocation failed, status code N"). An
// invocation no setting takes is refused (the client gets an error
// Completion).
//
// Delivery keeps to the event loop's terms: Send never blocks. Events are
// queued to a fixed pool of workers (Config.Workers) by connection, so a
// connection's events are posted in order, one at a time; each worker's
// queue is bounded, and an event that does not fit is dropped and counted
// (a slow or dead upstream costs at most the queues, never client
// traffic). Connection events are retried with back-off after a network
// error or a 5xx; invocations are posted once. Every request is bounded
// by Config.Timeout. Metrics (Metrics): edgeplane_webhook_requests_total
// {upstream, outcome}, _dropped_total, _retries_total, _queued,
// _request_duration_seconds.
package webhook
