// Package admin serves an edgeplane node's admin port with net/http:
// Prometheus metrics (/metrics: the node's metricset.Registry, every
// part's families with HELP lines, plus process metrics), /healthz,
// /readyz, and the REST API in the Azure SignalR data-plane shape:
//
//	POST   /api/hubs/{hub}/:send                       {"target","arguments"} → 202 (?excluded=id,id)
//	POST   /api/hubs/{hub}/groups/{g}/:send            → 202
//	POST   /api/hubs/{hub}/users/{u}/:send             → 202
//	POST   /api/hubs/{hub}/connections/{id}/:send      → 202
//	PUT    /api/hubs/{hub}/groups/{g}/connections/{id} → 200 | 404
//	DELETE /api/hubs/{hub}/groups/{g}/connections/{id} → 200 | 404
//	HEAD   /api/hubs/{hub}/connections/{id} | groups/{g} | users/{u} → 200 | 404
//	DELETE /api/hubs/{hub}/connections/{id}            → 200 | 404
//	HEAD   /api/health                                 → 200
//
// With an access key the API requires "Authorization: Bearer <HS256 JWT>"
// whose aud is the request's URL, as Azure SignalR's REST API does (a
// client's access token, whose aud is its hub, is refused) and which
// carries exp. /debug/pprof/ takes the same token; without an access key
// it answers loopback clients only, and profiles last at most
// MaxProfileSeconds. /metrics, /healthz and /readyz are open. Handler.Server
// is the admin http.Server with every timeout set. Sends go through the
// backplane, so they reach every node. A send no client could take is
// refused before it is published: 400 for arguments that are not valid
// UTF-8 (in a text frame they would break every recipient's connection),
// 413 for a body over 1 MiB or a message whose frame is larger than a
// connection's outbound queue (Router.Check).
//
// admin depends on the node's parts through its Config, not on conn: the
// fanout.Router (hubs, local membership), the backplane (publish, remote
// group commands, readiness) and a one-method ConnCloser.
//
//	h, err := admin.New(admin.Config{Router: r, Backplane: bp, Conns: srv, Metrics: reg})
//	http.Serve(ln, h)
package admin
