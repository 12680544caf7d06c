package backplane

import (
	"context"
	"errors"
	"time"
)

// DefaultAckTimeout bounds a group change for a connection on another node
// (RemoteGroup waiting for the owner's ack) and, in the REST API, waiting
// for this node's own group subscription: one remote-group timeout.
const DefaultAckTimeout = 5 * time.Second

// Sentinel errors.
var (
	// ErrNotFound: no node owns the connection a group command named (no ack
	// arrived in time). The REST API answers 404.
	ErrNotFound = errors.New("backplane: connection not found on any node")
	// ErrUnavailable: the backplane cannot publish right now (Redis down).
	// The message is lost (pub/sub keeps nothing) and counted.
	ErrUnavailable = errors.New("backplane: unavailable")
	// ErrClosed: the backplane was closed.
	ErrClosed = errors.New("backplane: closed")
	// ErrNoUpstream: no upstream is configured for client invocations.
	ErrNoUpstream = errors.New("no upstream is configured")
)

// Kind is the kind of target a message is addressed to. Each maps to one
// backplane channel: P:all, P:group:{name}, P:user:{name},
// P:connection:{name}.
type Kind uint8

// Target kinds.
const (
	All Kind = iota + 1
	Group
	User
	Connection
)

func (k Kind) String() string {
	switch k {
	case All:
		return "all"
	case Group:
		return "group"
	case User:
		return "user"
	case Connection:
		return "connection"
	}
	return "unknown"
}

// Message is one hub message on its way to clients.
type Message struct {
	Hub  string
	Kind Kind
	// Name is the group, user or connection id; empty for All.
	Name string
	// Excluded connection ids receive nothing.
	Excluded []string
	// Payload is one complete JSON hub-protocol record including its
	// trailing 0x1e. It may be shared and must never be modified.
	Payload []byte
	// MessagePack is the same message as MessagePack hub-protocol
	// records, each behind its VarInt length, when the backplane message
	// carried one (the messagepack entry an ASP.NET Core server with
	// MessagePack writes); nil otherwise: fanout converts Payload for its
	// MessagePack clients. Shared like Payload. Publish sends it beside
	// Payload when set (a REST send whose body had a messagepack entry,
	// or service mode: the app's own MessagePack records).
	MessagePack []byte
	// ReturnChannel, for a Connection message, asks for a client result:
	// Payload is an Invocation with InvocationID, and the owner of the
	// connection publishes the client's Completion to ReturnChannel
	// (Returner.Return). Both "" otherwise.
	InvocationID  string
	ReturnChannel string
}

// GroupAction is the action of a group command (wire values of the
// ASP.NET Core SignalR Redis backplane).
type GroupAction uint8

// Group actions.
const (
	GroupAdd    GroupAction = 1
	GroupRemove GroupAction = 2
)

// Receiver is what a backplane delivers to: fanout's router.
type Receiver interface {
	// Deliver hands over a message for a channel this node subscribed to.
	// It must not block on I/O. m is valid only during the call, except
	// m.Payload, which is immutable and may be kept.
	Deliver(m *Message)
	// ApplyGroup applies a group command if this node owns connID and
	// reports whether it did.
	ApplyGroup(hub string, action GroupAction, group, connID string) bool
}

// Backplane connects the nodes of a fleet. Implementations: Memory (one
// node) and Redis.
//
// Subscribe and Unsubscribe are called by fanout when a hub gets its first
// local member of a group, user or connection and when it loses the last
// one. They must not block on I/O: implementations batch them.
type Backplane interface {
	// Start begins delivering to r. It is called once, before any other
	// method but Ready.
	Start(r Receiver) error
	// Publish sends m to every node (this one included) that has
	// recipients for it. m.Payload may be retained.
	Publish(ctx context.Context, m *Message) error
	Subscribe(hub string, kind Kind, name string)
	Unsubscribe(hub string, kind Kind, name string)
	// RemoteGroup asks the node that owns connID to apply the group
	// command, and waits for its acknowledgement (ErrNotFound on time-out).
	RemoteGroup(ctx context.Context, hub string, action GroupAction, group, connID string) error
	// Ready reports whether the backplane can publish now.
	Ready() bool
	Close() error
}
