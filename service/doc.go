// Package service is edgeplane's service mode: a node speaks Azure
// SignalR Service's Default mode, so an unmodified ASP.NET Core app with
// AddSignalR().AddAzureSignalR("Endpoint=http://edge:8080;AccessKey=…;Version=1.0;")
// hosts its Hubs behind edgeplane. It is policy; the wire format is
// internal/serviceproto's, the client-side HTTP and WebSocket handling
// conn's (conn.Service is the seam), delivery fanout's and the
// backplane's.
//
// App servers open five WebSocket connections per hub to
// /server/?hub=HUB on the client port, authenticated with a JWT signed
// with the access key (aud {scheme}://{host}/server/?hub=HUB, nameid and
// X-ASRS-Server-Id the server's id). A hub the node was not started with
// is learned from the first authenticated server connection that names
// it (fanout.Router.AddHub; Config.MaxHubs bounds them), matched
// ignoring case as the SDK lower-cases hub names. Each connection is a
// serverConn: the event loop
// parses its frames and queues the bytes to the connection's goroutine,
// which splits the service-protocol stream (frame boundaries mean
// nothing), answers the HandshakeRequest, and dispatches the messages in
// order. The service pings every server connection every 5 s and closes
// one that sent nothing for 30 s; when one closes, the clients it hosted
// are closed (with allowReconnect: they negotiate with the app again).
//
// Clients come through the app's negotiate, which redirects them to
// /client/?hub=HUB with an access token. conn negotiates and upgrades
// them as /{hub} clients, then hands them here at their handshake
// request: RelayOpen picks a server connection of the hub (the sticky
// server of the token's asrs.s.sn, else round-robin over the hosting
// connections), sends it OpenConnection — the token's claims with .NET
// claim types, the request's headers (plus X-Forwarded-For), its query
// string and the hub protocol — and the handshake request as the first
// ConnectionData. The app's handshake response goes to the client, which
// then joins its hub in fanout. From there ConnectionData flows both
// ways, and CloseConnection either way ends the client.
//
// What an app sends to many clients (Clients.All, Group(s), User(s),
// Client(s), with exclusions) goes through the backplane like a REST
// send: one publish per target name, the json payload copied once and
// shared, framed once per node by fanout. So a multi-node fleet delivers
// app messages to clients on every node. Group changes are applied where
// the connection lives (locally, or through the backplane's acked group
// command) and acked Ok or NotFound within the SDK's 10 s. User groups
// (UserJoinGroup with TTL), existence checks and the close-with-ack
// messages act on this node's registry. Client results keep a table of
// pending invocations per hub: the client's answer is routed from the
// server hosting it to the one that asked; a client leaving fails them.
//
// A fleet (fleet.go): on a backplane that carries it (Redis,
// backplane.Relay), a client reaching a node with no server connection
// that can host it is relayed to a node with one: the client's node
// sends the OpenConnection, handshake and the client's messages to that
// node's relay channel, which hands them to a local server connection
// and sends the app's data and closes for the client back. Nodes
// announce, with a TTL, that they are alive and which hubs' app servers
// they hold; one publisher per other node keeps each client's messages
// in order; a node gone ends the relays with it (the clients reconnect).
// A local server connection is always preferred.
//
// Limits of this first version, each counted where it applies
// (edgeplane_service_*): a client relayed to another node is served by
// the server connections there (what the app writes for it on a
// connection of a third node reaches it only through the backplane's
// multicast messages); JSON clients (MessagePack once conn serves it);
// Clients.Groups publishes per group, so a connection in several of them
// gets the message once per group, as ASP.NET Core's Redis backplane
// does; GroupBroadcastData's excluded users are resolved on this node
// only; subscriber filters, GroupMemberQuery, Entra ID (AccessKeyRequest),
// client migration and stateful reconnect are not implemented.
//
//	svc := service.New(service.Config{AccessKey: key}, router, backplane)
//	srv, _ := conn.New(conn.Config{AccessKey: key, Service: svc}, router)
package service
