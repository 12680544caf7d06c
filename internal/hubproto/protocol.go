package hubproto

import "strconv"

// MessageType is a hub message's type: the "type" property in JSON, the
// first array item in MessagePack.
type MessageType int

// Message types (HubProtocol.md).
const (
	TypeInvocation       MessageType = 1
	TypeStreamItem       MessageType = 2
	TypeCompletion       MessageType = 3
	TypeStreamInvocation MessageType = 4
	TypeCancelInvocation MessageType = 5
	TypePing             MessageType = 6
	TypeClose            MessageType = 7
	TypeAck              MessageType = 8
	TypeSequence         MessageType = 9
)

var typeNames = [...]string{"", "Invocation", "StreamItem", "Completion", "StreamInvocation",
	"CancelInvocation", "Ping", "Close", "Ack", "Sequence"}

func (t MessageType) String() string {
	if t > 0 && int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// Message is a parsed client record: the fields edgeplane reads today.
// Parse never retains its input: the strings and Arguments are copies.
type Message struct {
	Type         MessageType
	InvocationID string // "" for a non-blocking invocation
	Target       string
	// Arguments is the arguments array exactly as the client encoded it,
	// in the parsing protocol's encoding (a JSON array for JSON); nil when
	// the record has none. For a StreamItem it is the item, for a
	// Completion its result (nil: void or error). See the package doc on
	// arguments.
	Arguments []byte
	// StreamIDs are an Invocation's or StreamInvocation's upload streams
	// (streamIds): the client sends each stream's items as StreamItems
	// and ends it with a Completion, both carrying the stream id as their
	// invocation id. Nil when none.
	StreamIDs []string
	// Error is a Completion's error text; HasError tells an error from a
	// void or non-void Completion.
	Error    string
	HasError bool
	// SequenceID is an Ack's or a Sequence's sequenceId (stateful
	// reconnect); 0 for the other types.
	SequenceID int64
}

// StatefulReconnectVersion is the hub protocol version a client asks for
// in its handshake when it negotiated stateful reconnect (Ack and
// Sequence messages); ParseHandshake accepts it for every protocol, as
// ASP.NET Core does. Whether the connection then uses stateful reconnect
// is the connection layer's decision.
const StatefulReconnectVersion = 2

// IsTrackable reports whether messages of type t take part in stateful
// reconnect: they are numbered (sequence ids), kept until acknowledged
// and replayed after a reconnect. Only the hub invocation messages are
// (HubProtocol.md, "Trackable messages"); Ping, Close, Ack and Sequence
// are not.
func (t MessageType) IsTrackable() bool {
	switch t {
	case TypeInvocation, TypeStreamItem, TypeCompletion, TypeStreamInvocation, TypeCancelInvocation:
		return true
	}
	return false
}

// ID is a protocol's small number: the index of tables kept per protocol
// (one frame per protocol in the fanout, precompiled records) and what a
// connection stores, in a few bits, to say which protocol it speaks.
type ID uint8

// Protocol IDs, one per protocol Lookup offers.
const (
	IDJSON ID = iota
	IDMessagePack
	// NumIDs is the number of protocols: the length of per-protocol tables.
	NumIDs
)

// Protocol is one SignalR hub protocol: how records are framed inside a
// WebSocket message, and how each message is encoded. JSON and
// MessagePack implement it.
//
// Records are whole messages without their framing (the 0x1e separator
// for JSON, the VarInt length prefix for MessagePack). The Append methods
// append one record, framing included, to dst and return the extended
// slice; on error they return dst unchanged. Encoded values given to them
// (args, item, result) must already be in the protocol's encoding.
//
// Hot paths should call the concrete protocol (hubproto.JSON), not the
// interface: a static call lets the compiler keep Split's callback and
// Parse's result off the heap.
type Protocol interface {
	// Name is the handshake's "protocol" value: "json", "messagepack".
	Name() string
	// Version is the protocol version the handshake accepts.
	Version() int
	// Binary reports whether records travel in binary WebSocket frames
	// (transfer format Binary) rather than text frames.
	Binary() bool
	// ID is the protocol's number (IDJSON, IDMessagePack).
	ID() ID

	// Split calls fn for each record of msg, one whole WebSocket message,
	// and stops at fn's first error. Bytes after the last whole record
	// are ErrIncompleteRecord: clients send whole records per message.
	Split(msg []byte, fn func(rec []byte) error) error
	// Parse decodes one client record (ErrInvalidMessage).
	Parse(rec []byte) (Message, error)
	// PeekType returns rec's message type without decoding the rest of
	// it, and 0 for a record without one (a handshake response) or one
	// whose type cannot be read. It does not validate rec; Parse does.
	PeekType(rec []byte) MessageType
	// IsPing reports whether rec is the Ping record clients send, so that
	// the most frequent record is recognised without decoding it.
	IsPing(rec []byte) bool

	// Ping is the Ping record, framing included, encoded once: shared,
	// never modify it.
	Ping() []byte
	// AppendInvocation appends an Invocation of target with the encoded
	// arguments array args (empty means no arguments); invocationID ""
	// is a non-blocking invocation.
	AppendInvocation(dst []byte, invocationID, target string, args []byte) ([]byte, error)
	// AppendStreamItem appends a StreamItem carrying the encoded item.
	AppendStreamItem(dst []byte, invocationID string, item []byte) ([]byte, error)
	// AppendCompletion appends a Completion with the encoded result, or
	// without a result (void) when result is empty.
	AppendCompletion(dst []byte, invocationID string, result []byte) ([]byte, error)
	// AppendCompletionError appends a Completion carrying an error.
	AppendCompletionError(dst []byte, invocationID, errMsg string) []byte
	// AppendClose appends a Close message; errMsg "" and allowReconnect
	// false are left out.
	AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte
	// AppendAck appends an Ack of sequenceID (stateful reconnect).
	AppendAck(dst []byte, sequenceID int64) []byte
	// AppendSequence appends a Sequence starting at sequenceID.
	AppendSequence(dst []byte, sequenceID int64) []byte
}

// protocols are the protocols the handshake accepts, by name, at their
// ID's position.
var protocols = [NumIDs]Protocol{IDJSON: JSON, IDMessagePack: MessagePack}

// ByID returns the protocol numbered id; it panics for an id not below
// NumIDs.
func ByID(id ID) Protocol { return protocols[id] }

func (id ID) String() string {
	if id < NumIDs {
		return protocols[id].Name()
	}
	return "ID(" + strconv.Itoa(int(id)) + ")"
}

// Lookup returns the protocol the handshake names, or nil if edgeplane
// does not speak it. Names match exactly, as in ASP.NET Core.
func Lookup(name string) Protocol {
	for _, p := range protocols {
		if p.Name() == name {
			return p
		}
	}
	return nil
}
