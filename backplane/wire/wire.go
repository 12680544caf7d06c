package wire

import (
	"errors"
	"fmt"
	"math"

	"github.com/tinylib/msgp/msgp"
)

// Names of the hub protocols in an invocation's protocol map.
const (
	ProtocolJSON        = "json"
	ProtocolMessagePack = "messagepack"
)

// Sentinel errors. Every decode error wraps ErrMalformed.
var (
	// ErrMalformed: the payload is not a valid backplane message.
	ErrMalformed = errors.New("wire: malformed backplane payload")
	// ErrNoProtocol: an invocation carries no serialization for the
	// protocol asked for (e.g. no "json" entry, when it was written only for
	// MessagePack clients); clients of that protocol cannot be served from it.
	ErrNoProtocol = fmt.Errorf("%w: invocation has no serialization for the protocol", ErrMalformed)
)

// Group actions on the wire.
const (
	ActionAdd    = 1
	ActionRemove = 2
)

func malformed(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
}

// AppendInvocation appends [[excluded...], {"json": record}] to b.
func AppendInvocation(b []byte, excluded []string, record []byte) []byte {
	b = appendInvocationHead(b, excluded, 1)
	b = msgp.AppendString(b, ProtocolJSON)
	return msgp.AppendBytes(b, record)
}

// AppendInvocationProtocols appends an invocation with one serialization per
// protocol, in the order given (names[i] → serialized[i]): what a .NET
// server with several hub protocols produces, and what a node publishes
// for a service-mode app's message that came with its MessagePack form.
func AppendInvocationProtocols(b []byte, excluded []string, names []string, serialized [][]byte) []byte {
	b = appendInvocationHead(b, excluded, len(names))
	for i, name := range names {
		b = msgp.AppendString(b, name)
		b = msgp.AppendBytes(b, serialized[i])
	}
	return b
}

// appendInvocationHead appends an invocation up to its protocol map's
// entries: the outer array header, the excluded ids and the header of a map
// of protocols entries.
func appendInvocationHead(b []byte, excluded []string, protocols int) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	b = msgp.AppendArrayHeader(b, uint32(len(excluded)))
	for _, id := range excluded {
		b = msgp.AppendString(b, id)
	}
	return msgp.AppendMapHeader(b, uint32(protocols))
}

// ReadInvocation decodes an invocation. The excluded ids are appended to
// excluded (pass a reused slice to avoid allocating) as strings that alias
// b; json is the sub-slice of b holding the JSON hub-protocol record. Other
// protocols' serializations are skipped. A missing json entry is ErrNoProtocol.
func ReadInvocation(b []byte, excluded []string) (ex []string, json []byte, err error) {
	return ReadInvocationProtocol(b, excluded, ProtocolJSON)
}

// ReadInvocationProtocol is ReadInvocation for any protocol name: it returns
// the serialization for protocol.
func ReadInvocationProtocol(b []byte, excluded []string, protocol string) (ex []string, ser []byte, err error) {
	ex, ser, _, err = readInvocation(b, excluded, protocol, "")
	return ex, ser, err
}

// ReadInvocationWithMessagePack is ReadInvocation that also returns the
// messagepack serialization, a sub-slice of b, or nil when the invocation
// has none: an ASP.NET Core server with the MessagePack protocol writes
// both entries, and the node can hand those bytes to its MessagePack
// clients as they are.
func ReadInvocationWithMessagePack(b []byte, excluded []string) (ex []string, json, messagePack []byte, err error) {
	return readInvocation(b, excluded, ProtocolJSON, ProtocolMessagePack)
}

// readInvocation decodes an invocation and returns the serializations of
// protocol (required) and of also (optional; "" for none).
func readInvocation(b []byte, excluded []string, protocol, also string) (ex []string, ser, alsoSer []byte, err error) {
	ex = excluded
	extra, b, err := readArrayAtLeast(b, 2, "invocation")
	if err != nil {
		return ex, nil, nil, err
	}
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return ex, nil, nil, malformed("excluded ids", err)
	}
	for i := uint32(0); i < n; i++ {
		var id []byte
		id, b, err = msgp.ReadStringZC(b)
		if err != nil {
			return ex, nil, nil, malformed("excluded id", err)
		}
		ex = append(ex, msgp.UnsafeString(id))
	}
	m, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return ex, nil, nil, malformed("protocol map", err)
	}
	for i := uint32(0); i < m; i++ {
		var name, val []byte
		name, b, err = msgp.ReadStringZC(b)
		if err != nil {
			return ex, nil, nil, malformed("protocol name", err)
		}
		val, b, err = readBinOrStr(b)
		if err != nil {
			return ex, nil, nil, malformed("serialized message", err)
		}
		switch {
		case ser == nil && string(name) == protocol:
			ser = val
		case alsoSer == nil && also != "" && string(name) == also:
			alsoSer = val
		}
	}
	if ser == nil {
		return ex, nil, nil, ErrNoProtocol
	}
	// Items after the two known ones (e.g. a return channel and an
	// invocation id for client results) must still be well-formed.
	if err := skipRest(b, extra); err != nil {
		return ex, nil, nil, err
	}
	return ex, ser, alsoSer, nil
}

// readBinOrStr reads a bin (what .NET writes) or, leniently, a str.
func readBinOrStr(b []byte) ([]byte, []byte, error) {
	if msgp.NextType(b) == msgp.StrType {
		return msgp.ReadStringZC(b)
	}
	return msgp.ReadBytesZC(b)
}

// GroupCommand is a request to the node that owns ConnectionID to add it to
// or remove it from Group.
type GroupCommand struct {
	ID           int32
	ServerName   string
	Action       uint8 // ActionAdd or ActionRemove
	Group        string
	ConnectionID string
}

// AppendGroupCommand appends [id, serverName, action, group, connectionId].
func AppendGroupCommand(b []byte, c *GroupCommand) []byte {
	b = msgp.AppendArrayHeader(b, 5)
	b = appendID(b, c.ID)
	b = msgp.AppendString(b, c.ServerName)
	b = msgp.AppendUint8(b, c.Action)
	b = msgp.AppendString(b, c.Group)
	return msgp.AppendString(b, c.ConnectionID)
}

// ReadGroupCommand decodes a group command into c. Its strings alias b.
func ReadGroupCommand(b []byte, c *GroupCommand) error {
	extra, b, err := readArrayAtLeast(b, 5, "group command")
	if err != nil {
		return err
	}
	if c.ID, b, err = readID(b); err != nil {
		return err
	}
	var s []byte
	if s, b, err = msgp.ReadStringZC(b); err != nil {
		return malformed("server name", err)
	}
	c.ServerName = msgp.UnsafeString(s)
	if c.Action, b, err = msgp.ReadUint8Bytes(b); err != nil {
		return malformed("action", err)
	}
	if c.Action != ActionAdd && c.Action != ActionRemove {
		return fmt.Errorf("%w: unknown group action %d", ErrMalformed, c.Action)
	}
	if s, b, err = msgp.ReadStringZC(b); err != nil {
		return malformed("group", err)
	}
	c.Group = msgp.UnsafeString(s)
	if s, b, err = msgp.ReadStringZC(b); err != nil {
		return malformed("connection id", err)
	}
	c.ConnectionID = msgp.UnsafeString(s)
	return skipRest(b, extra)
}

// AppendAck appends [id].
func AppendAck(b []byte, id int32) []byte {
	b = msgp.AppendArrayHeader(b, 1)
	return appendID(b, id)
}

// ReadAck decodes an ack and returns its id.
func ReadAck(b []byte) (int32, error) {
	extra, b, err := readArrayAtLeast(b, 1, "ack")
	if err != nil {
		return 0, err
	}
	id, b, err := readID(b)
	if err != nil {
		return 0, err
	}
	return id, skipRest(b, extra)
}

// appendID writes an id the way MessagePack-CSharp writes an int: the
// shortest unsigned form for non-negative values.
func appendID(b []byte, id int32) []byte {
	if id >= 0 {
		return msgp.AppendUint32(b, uint32(id))
	}
	return msgp.AppendInt32(b, id)
}

func readID(b []byte) (int32, []byte, error) {
	v, o, err := msgp.ReadInt64Bytes(b)
	if err != nil {
		return 0, b, malformed("id", err)
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, b, fmt.Errorf("%w: id %d out of int32 range", ErrMalformed, v)
	}
	return int32(v), o, nil
}

// readArrayAtLeast reads an array header of at least min items and returns
// the number of items beyond min (to skip after the known ones) and the rest
// of b, positioned at the first item.
func readArrayAtLeast(b []byte, min uint32, what string) (extra uint32, o []byte, err error) {
	n, o, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return 0, b, malformed(what, err)
	}
	if n < min {
		return 0, b, fmt.Errorf("%w: %s has %d items, want at least %d", ErrMalformed, what, n, min)
	}
	return n - min, o, nil
}

// skipRest skips the extra items of the outer array and requires that
// nothing follows them: a payload is exactly one MessagePack value.
func skipRest(b []byte, extra uint32) error {
	for ; extra > 0; extra-- {
		var err error
		if b, err = msgp.Skip(b); err != nil {
			return malformed("extra item", err)
		}
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b))
	}
	return nil
}
