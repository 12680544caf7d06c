package backplane

// EventKind is the kind of an upstream event.
type EventKind uint8

// Upstream event kinds.
const (
	EventInvocation EventKind = iota + 1
	EventConnected
	EventDisconnected
)

func (k EventKind) String() string {
	switch k {
	case EventInvocation:
		return "invocation"
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
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
}

// Upstream carries events from clients to the application servers.
type Upstream interface {
	// Send must not block on I/O; it returns an error when the event cannot
	// be accepted (e.g. ErrUnavailable).
	Send(e *Event) error
}
