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
	// EventStreamItem: an item of a client's upload stream (InvocationID
	// is the stream id, Arguments the item).
	EventStreamItem
	// EventCompletion: a client's Completion: the end of one of its
	// upload streams, or its answer to an invocation the upstream sent
	// it with an invocation id (a client result). Arguments is the
	// result (nil: none), or Error when HasError.
	EventCompletion
	// EventCancelInvocation: the client cancelled its stream invocation
	// InvocationID.
	EventCancelInvocation
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
	case EventStreamItem:
		return "streamItem"
	case EventCompletion:
		return "completion"
	case EventCancelInvocation:
		return "cancelInvocation"
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
	Arguments    []byte // raw JSON array (stream item, result: a JSON value); may be retained
	// Protocol is the client's hub protocol, as its handshake named it
	// ("json", "messagepack"), on invocations; "" is JSON.
	Protocol string
	// Record, on an invocation of a MessagePack client, is the client's
	// record as received, without its VarInt length (what Azure
	// SignalR's webhook upstream posts); nil otherwise. Unlike
	// Arguments it is valid only during Send: an upstream that keeps it
	// copies it.
	Record []byte
	// Stream: the invocation is a StreamInvocation (the client expects
	// StreamItems and a Completion), not an Invocation.
	Stream bool
	// StreamIDs are the invocation's upload streams: their items and
	// completions follow as EventStreamItem and EventCompletion.
	StreamIDs []string
	// Completion: the client's error text, when HasError.
	Error    string
	HasError bool
	// Disconnected: why.
	Reason string
	// Disconnected: the stream invocations and upload streams the client
	// opened and did not end itself (CancelInvocation, Completion); the
	// upstream stops those it has not completed yet.
	Abandoned []string
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
