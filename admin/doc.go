// Package admin serves an edgeplane node's admin port with net/http:
// Prometheus metrics (/metrics: the node's metricset.Registry, every
// part's families with HELP lines, plus process metrics), /healthz,
// /readyz, /debug/pprof/, and Azure SignalR Service's data-plane REST API,
// so that serverless apps (the Management SDK, Azure Functions) work
// against edgeplane unchanged:
//
//	POST   /api/hubs/{hub}/:send · /groups/{g}/:send · /users/{u}/:send · /connections/{id}/:send   → 202
//	POST   /api/hubs/{hub}/:closeConnections · /groups/{g}/… · /users/{u}/…  (?excluded=&reason=)  → 204
//	DELETE /api/hubs/{hub}/connections/{id}                                  → 200 | 404
//	HEAD   /api/hubs/{hub}/connections/{id} · /groups/{g} · /users/{u}       → 200 | 404
//	PUT    /api/hubs/{hub}/groups/{g}/connections/{id}  (DELETE too)         → 200 | 404
//	DELETE /api/hubs/{hub}/connections/{id}/groups                          → 200
//	PUT    /api/hubs/{hub}/users/{u}/groups/{g}?ttl=                         → 200
//	DELETE /api/hubs/{hub}/users/{u}/groups/{g} · /users/{u}/groups          → 204
//	HEAD   /api/hubs/{hub}/users/{u}/groups/{g}  (GET too)                   → 200 | 404
//	GET    /api/hubs/{hub}/groups/{g}/connections?maxpagesize=&top=&continuationToken= → 200
//	POST   /api/hubs/{hub}/:generateToken?userId=&minutesToExpire=           → 200 {"token"}
//	POST   /api/hubs/{hub}/connections/{id}/:invoke?timeout=                  → 200 {"result","protocol"} | 400 | 504 (rest_invoke.go)
//	POST   /api/hubs/{hub}/connections/{id}/streams/…, :execute               → 501
//	…      /api/v1/hubs/{hub}/…                                              (the v1 routes)
//	HEAD   /api/health                                                       → 200
//
// Every route takes api-version (a version date, or none) and application
// (hub {app}_{hub}); hub names match case-insensitively. Errors are
// Azure's ErrorDetail with the x-ms-error-code header the Management SDK
// reads (Warning.Connection.NotExisted, Info.User.NotInGroup, …). Bodies
// are JSON {"target","arguments"} or the SDK's MessagePack map of
// protocol → serialized message (each client gets its protocol's entry;
// a messagepack-only map is converted to JSON once), at most
// 1 MB; a send no client could take is refused before it is published
// (400 not UTF-8, 413 larger than a connection's outbound queue).
//
// With an access key the API requires "Authorization: Bearer <JWT>"
// (HS256 or HS512, signed with the key or the secondary key) whose aud is
// the request's URL, as Azure's REST API does (a client's access token,
// whose aud is its hub, is refused), and which carries exp. /debug/pprof/
// takes the same token; without an access key it answers loopback clients
// only, and profiles last at most MaxProfileSeconds. /metrics, /healthz
// and /readyz are open. Handler.Server is the admin http.Server with every
// timeout set.
//
// Fleet-wide: sends go through the backplane. Existence checks look at
// this node, then ask the backplane how many nodes hold the connection,
// group or user (backplane.Fleet.Holders). Group changes for a connection
// on another node are ASP.NET group commands acked by the owner. Closes,
// leave-all, user-group changes and group listings are fleet commands
// (backplane.Fleet.Command) that Fleet applies on every node to its own
// connections; the call waits for the nodes that hold what it names. User
// groups are stored in a backplane.UserGroupStore (Redis with the Redis
// backplane): Fleet watches a user's connections arrive (its Upstream
// wraps the node's) and joins them to the user's groups, read by a small
// pool of workers, and ends memberships with a TTL when they expire.
//
// admin depends on the node's parts through its Config, not on conn: the
// fanout.Router (hubs, local membership), the backplane (publish, remote
// group commands, fleet commands, readiness) and a one-method ConnCloser.
// The node builds the Fleet before the connection server and the
// backplane's Start:
//
//	f, err := admin.NewFleet(admin.FleetConfig{Router: r, Backplane: bp, Conns: closer, UserGroups: store})
//	srvCfg.Upstream = f.Upstream(srvCfg.Upstream)
//	// … conn.New, bp.Start …
//	h, err := admin.New(admin.Config{Router: r, Backplane: bp, Conns: srv, Fleet: f, Metrics: reg})
//	http.Serve(ln, h)
//
// # Files
//
//	admin.go            Config, Handler, metrics, health, pprof
//	fleet.go            Fleet: fleet commands on this node, user-group arrivals and expiries
//	rest.go             the REST routes, parameters, hub resolution
//	rest_auth.go        REST tokens
//	rest_errors.go      ErrorDetail and the error codes
//	rest_send.go        sends and their bodies (JSON, MessagePack)
//	rest_connections.go existence, closes, a connection's groups
//	rest_groups.go      group listing, user groups
//	rest_token.go       :generateToken
package admin
