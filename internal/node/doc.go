// Package node assembles an edgeplane node, the one place that wires the
// parts together:
//
//	backplane (Redis or in-memory)
//	  → fanout.Router (hubs; the backplane's Receiver; encodes once, queues to recipients)
//	  → conn.Server (client policy; registers connections in the router)
//	  → poller (event loop on the client port; hands bytes to conn.Server)
//	  → admin (REST API, /metrics, health, on its own port)
//
// and closes them in the opposite order: poller, admin HTTP, conn,
// webhooks, the REST API's fleet, backplane. The REST API's admin.Fleet
// (fleet commands, user groups) is built before the connection server and
// the backplane's Start: it handles the backplane's commands and wraps the
// upstream to see a user's connections arrive. The upstream is the Redis
// stream (for Config.StreamHubs), webhooks (Config.Webhook, answers going
// to the connection through the router), or both (upstreams.go).
// With Redis it also gives the connection server the backplane's token
// claims (a token connects once per fleet) and, when no token key or
// access key is configured, agrees on a token key with the other nodes in
// Redis (tokenkey.go).
// Every part's metrics go into the node's metricset.Registry, which the
// admin port writes. cmd/edgeplane maps flags onto Config; integration
// tests start nodes in process with it too:
//
//	n, err := node.Start(node.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0"})
//	...
//	defer n.Close()
package node
