package conn

import (
	"net/http"
	"strings"
)

// Azure SignalR Service's client endpoints outside service mode: a client
// handed {url: "https://edge/client/?hub=chat", accessToken} by a
// serverless app (the Management SDK's negotiate, the Functions
// SignalRConnectionInfo binding, :generateToken) negotiates at
// POST /client/negotiate?hub=HUB and connects at GET /client/?hub=HUB.
// The connection is the node's own, exactly as one on the hub's path:
// the node answers the handshake, fanout delivers to it, and its
// invocations go to the upstream (webhooks, the Redis stream). With
// Config.Service set, service.go relays these paths to app servers
// instead.
//
// The hub is the hub query parameter, prefixed "{application}_" when an
// application parameter is given (the SDK writes the prefixed name
// itself), matched ignoring case (the SDK lower-cases it). A request on
// /client whose hub parameter names no hub goes on to the hub paths, so a
// hub whose own path is /client keeps working.

// clientEndpoint serves /client/negotiate?hub= and /client/?hub=; it
// reports false when req is not for them.
func (c *Conn) clientEndpoint(req *http.Request, head []byte) bool {
	kind, rest, _ := strings.Cut(strings.Trim(req.URL.Path, "/"), "/")
	if !strings.EqualFold(kind, "client") {
		return false
	}
	q := req.URL.Query()
	name := q.Get("hub")
	if name == "" {
		return false
	}
	if app := q.Get("application"); app != "" {
		name = app + "_" + name
	}
	h := c.srv.hubFold(name)
	if h == nil {
		if _, _, isHub := c.srv.paths.route(req.URL.Path); isHub {
			return false
		}
		c.httpError(req, "client_endpoint", http.StatusNotFound, "unknown hub (the hub query parameter)")
		return true
	}
	switch {
	case strings.EqualFold(rest, "negotiate"):
		switch req.Method {
		case http.MethodPost:
			if c.admitRate(req) {
				c.negotiate(req, h.Name())
			}
		case http.MethodOptions:
			c.respond("negotiate", http.StatusNoContent, "", nil, c.corsHeaders(req, true))
		default:
			c.httpError(req, "negotiate", http.StatusMethodNotAllowed, "negotiate takes POST")
		}
	case rest == "":
		c.upgrade(req, head, h.Name())
	default:
		c.httpError(req, "client_endpoint", http.StatusNotFound, "unknown path")
	}
	return true
}
