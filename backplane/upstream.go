package backplane

// EventKind is the kind of an upstream event.
type EventKind uint8

// Upstream event kinds.
const (
	EventInvocation EventKind = iota + 1
	EventConnected
	EventDisconnected
	// EventReconnected: a stateful-reconnect connection came back on a
	// new socket within its reconnect window; it kept its id, groups and
	// messages (its disconnected event comes only when it ends for good).
	EventReconnected
)

func (k EventKind) String() string {
	switch k {
	case EventInvocation:
		return "invocation"
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventReconnected:
		return "reconnected"
	}
	return "unknown"
}

// Event is a client invocation or a connection lifecycle event on its way
// to the application servers.
type Event struct {
	Kind   EventKind
	Hub    string
	ConnID string
	UserID string
	// Invocation fields.
	InvocationID string
	Target       string
	Arguments    []byte // raw JSON array; may be retained
	// Disconnected: why.
	Reason string
	// Connected: what the client's connect request said; nil when the
	// node sends none.
	Context *ConnectContext
}

// ConnectContext is the client's connect request (the WebSocket upgrade),
// for the application: what ASP.NET Core hub code reads through
// Context.GetHttpContext(), and what Azure SignalR forwards in
// OpenConnection (claims, headers, query string) and to its upstream
// (X-ASRS-Client-Query, X-ASRS-User-Claims). It rides on the connected
// event only. Credentials are left out: the Authorization and
// Proxy-Authorization headers, the access_token and id (connection token)
// query parameters, and cookies unless the node is told to forward them.
// The node bounds its size; what did not fit is left out and Truncated
// set.
type ConnectContext struct {
	// Headers of the request by canonical name (User-Agent, X-Custom),
	// without credentials and without the WebSocket handshake's own
	// headers (Connection, Upgrade, Sec-WebSocket-*). Host is included.
	Headers map[string][]string
	// Query is the raw query string (no '?'), as sent, minus access_token
	// and id.
	Query string
	// RemoteAddr is the client's address, ip:port, as the node sees it:
	// behind a load balancer the balancer's (its X-Forwarded-For is in
	// Headers).
	RemoteAddr string
	// Claims is the access token's payload, a JSON object with every
	// claim; nil when the node is open (no access key).
	Claims []byte
	// Truncated: headers, the query string or the claims were left out to
	// keep the context within the node's bound.
	Truncated bool
}

// Upstream carries events from clients to the application servers.
type Upstream interface {
	// Send must not block on I/O; it returns an error when the event cannot
	// be accepted (e.g. ErrUnavailable).
	Send(e *Event) error
}
