package hubproto

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
)

// MessagePackProtocol is the MessagePack hub protocol, version 1: binary
// frames, each record a VarInt length prefix and one MessagePack array
// whose first item is the message type (HubProtocol.md, "MessagePack
// (MsgPack) encoding"). Use the MessagePack value.
//
// It is written on github.com/tinylib/msgp's Append and Read…Bytes
// functions: they work on byte slices in place, allocate nothing and
// never reflect (see BenchmarkMessagePackLibraries for the comparison
// with vmihailenco/msgpack that chose it).
type MessagePackProtocol struct{}

// MessagePack is the MessagePack hub protocol.
var MessagePack MessagePackProtocol

var _ Protocol = MessagePack

// Completion result kinds.
const (
	resultError   = 1
	resultVoid    = 2
	resultNonVoid = 3
)

// maxVarInt is the longest length prefix: 5 bytes, up to 2^32-1 (the
// spec's 2 GB bound is enforced by the caller's message size limit).
const maxVarInt = 5

// mpPing is the Ping record "always exactly encoded as 0x91 0x06", with
// its length prefix.
var mpPing = []byte{0x02, 0x91, 0x06}

// Name implements Protocol: "messagepack".
func (MessagePackProtocol) Name() string { return "messagepack" }

// Version implements Protocol: 1.
func (MessagePackProtocol) Version() int { return 1 }

// Binary implements Protocol: MessagePack records travel in binary frames.
func (MessagePackProtocol) Binary() bool { return true }

// ID implements Protocol: IDMessagePack.
func (MessagePackProtocol) ID() ID { return IDMessagePack }

// Split implements Protocol: each record is preceded by its length as a
// VarInt (7 bits a byte, least significant first, at most 5 bytes).
func (MessagePackProtocol) Split(msg []byte, fn func(rec []byte) error) error {
	for len(msg) > 0 {
		n, k, err := readVarInt(msg)
		if err != nil {
			return err
		}
		if uint64(len(msg)-k) < n {
			return ErrIncompleteRecord
		}
		if err := fn(msg[k : k+int(n)]); err != nil {
			return err
		}
		msg = msg[k+int(n):]
	}
	return nil
}

// readVarInt reads a length prefix: its value and its size in bytes.
func readVarInt(b []byte) (v uint64, n int, err error) {
	for i := 0; i < maxVarInt; i++ {
		if i == len(b) {
			return 0, 0, ErrIncompleteRecord
		}
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			if i == maxVarInt-1 && b[i] > 0x0f {
				return 0, 0, ErrLengthPrefix
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, ErrLengthPrefix
}

// appendVarInt appends v as a length prefix.
func appendVarInt(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// varIntLen is the size of v's length prefix.
func varIntLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// framed appends a record's length prefix and body: body(dst) appends the
// body, which is then moved right behind its prefix.
func framed(dst []byte, body func([]byte) []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0) // room for the longest prefix
	dst = body(dst)
	n := uint64(len(dst) - start - maxVarInt)
	k := varIntLen(n)
	copy(dst[start+k:], dst[start+maxVarInt:])
	appendVarInt(dst[start:start], n)
	return dst[:start+k+int(n)]
}

// mpError is a record that does not decode: which field, and why.
func mpError(field string, err error) error {
	return fmt.Errorf("%w: reading '%s' failed: %w", ErrInvalidMessage, field, err)
}

// Parse implements Protocol. It reads what HubProtocol.md lays out for
// each type and rejects what ASP.NET Core's reader rejects: a missing
// item, a field of the wrong MessagePack type, an empty target or
// invocation id where one is required, header keys or values that are
// not strings, bytes after the array. Items after the ones a type defines
// are skipped (future additions), so is a message type edgeplane does not
// know. Arguments, stream items and completion results are kept as their
// MessagePack bytes.
func (MessagePackProtocol) Parse(rec []byte) (Message, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(rec)
	if err != nil {
		return Message{}, mpError("message", err)
	}
	if n == 0 {
		return Message{}, ErrMissingType
	}
	t, b, err := msgp.ReadInt32Bytes(b)
	if err != nil {
		return Message{}, mpError("messageType", err)
	}
	m := Message{Type: MessageType(t)}
	if min := minItems(m.Type); n < min {
		return Message{}, fmt.Errorf("%w: %s has %d items, at least %d expected", ErrInvalidMessage, m.Type, n, min)
	}
	used := uint32(1)
	switch m.Type {
	case TypeInvocation, TypeStreamInvocation:
		if b, err = skipHeaders(b); err != nil {
			return Message{}, err
		}
		if m.InvocationID, b, err = readOptString(b, "invocationId"); err != nil {
			return Message{}, err
		}
		if m.Type == TypeStreamInvocation && m.InvocationID == "" {
			return Message{}, fmt.Errorf("%w: null or empty invocation ID for StreamInvocation message", ErrInvalidMessage)
		}
		var target []byte
		if target, b, err = msgp.ReadStringZC(b); err != nil {
			return Message{}, mpError("target", err)
		}
		if len(target) == 0 {
			return Message{}, fmt.Errorf("%w: null or empty target for %s message", ErrInvalidMessage, m.Type)
		}
		m.Target = string(target)
		if msgp.NextType(b) != msgp.ArrayType {
			return Message{}, mpError("arguments", errors.New("not an array"))
		}
		if m.Arguments, b, err = rawValue(b, "arguments"); err != nil {
			return Message{}, err
		}
		used = 5
		if n > 5 {
			if m.StreamIDs, b, err = readStringArray(b, "streamIds"); err != nil {
				return Message{}, err
			}
			used = 6
		}
	case TypeStreamItem, TypeCompletion, TypeCancelInvocation:
		if b, err = skipHeaders(b); err != nil {
			return Message{}, err
		}
		if m.InvocationID, b, err = readOptString(b, "invocationId"); err != nil {
			return Message{}, err
		}
		if m.InvocationID == "" {
			return Message{}, fmt.Errorf("%w: null or empty invocation ID for %s message", ErrInvalidMessage, m.Type)
		}
		used = 3
		switch m.Type {
		case TypeStreamItem:
			if m.Arguments, b, err = rawValue(b, "item"); err != nil {
				return Message{}, err
			}
			used = 4
		case TypeCompletion:
			var kind int32
			if kind, b, err = msgp.ReadInt32Bytes(b); err != nil {
				return Message{}, mpError("resultKind", err)
			}
			used = 4
			switch kind {
			case resultVoid:
			case resultError, resultNonVoid:
				if n < 5 {
					return Message{}, fmt.Errorf("%w: Completion with result kind %d has no result", ErrInvalidMessage, kind)
				}
				if kind == resultError {
					var e []byte
					if e, b, err = msgp.ReadStringZC(b); err != nil {
						return Message{}, mpError("error", err)
					}
					m.Error, m.HasError = string(e), true
				} else if m.Arguments, b, err = rawValue(b, "result"); err != nil {
					return Message{}, err
				}
				used = 5
			default:
				return Message{}, fmt.Errorf("%w: invalid invocation result kind %d", ErrInvalidMessage, kind)
			}
		}
	case TypeClose:
		if _, b, err = readOptString(b, "error"); err != nil {
			return Message{}, err
		}
		used = 2
		if n > 2 {
			if _, b, err = msgp.ReadBoolBytes(b); err != nil {
				return Message{}, mpError("allowReconnect", err)
			}
			used = 3
		}
	case TypeAck, TypeSequence:
		if m.SequenceID, b, err = msgp.ReadInt64Bytes(b); err != nil {
			return Message{}, mpError("sequenceId", err)
		}
		used = 2
	}
	for ; used < n; used++ {
		if b, err = msgp.Skip(b); err != nil {
			return Message{}, mpError("item", err)
		}
	}
	if len(b) != 0 {
		return Message{}, fmt.Errorf("%w: %d bytes after the message", ErrInvalidMessage, len(b))
	}
	return m, nil
}

// minItems is the least array length each message type needs (what the
// official clients and ASP.NET Core's reader require).
func minItems(t MessageType) uint32 {
	switch t {
	case TypeInvocation, TypeStreamInvocation:
		return 5
	case TypeStreamItem, TypeCompletion:
		return 4
	case TypeCancelInvocation:
		return 3
	case TypeClose, TypeAck, TypeSequence:
		return 2
	}
	return 1
}

// skipHeaders reads the headers map: string keys to string values, none
// empty, as ASP.NET Core requires. edgeplane relays no headers.
func skipHeaders(b []byte) ([]byte, error) {
	n, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return nil, mpError("headers", err)
	}
	for i := uint32(0); i < 2*n; i++ {
		var s []byte
		if s, b, err = msgp.ReadStringZC(b); err != nil {
			return nil, mpError("headers", err)
		}
		if len(s) == 0 {
			return nil, fmt.Errorf("%w: null or empty key or value in header", ErrInvalidMessage)
		}
	}
	return b, nil
}

// readStringArray reads an array of non-empty strings (streamIds); nil
// for an empty array.
func readStringArray(b []byte, field string) ([]string, []byte, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return nil, nil, mpError(field, err)
	}
	if n > uint32(len(b)) { // each string takes a byte at least
		return nil, nil, mpError(field, msgp.ErrShortBytes)
	}
	var ids []string
	for i := uint32(0); i < n; i++ {
		var s []byte
		if s, b, err = msgp.ReadStringZC(b); err != nil {
			return nil, nil, mpError(field, err)
		}
		if len(s) == 0 {
			return nil, nil, fmt.Errorf("%w: null or empty value in %s", ErrInvalidMessage, field)
		}
		ids = append(ids, string(s))
	}
	return ids, b, nil
}

// readOptString reads a string or nil ("" for nil).
func readOptString(b []byte, field string) (string, []byte, error) {
	if msgp.IsNil(b) {
		return "", b[1:], nil
	}
	s, b, err := msgp.ReadStringZC(b)
	if err != nil {
		return "", nil, mpError(field, err)
	}
	if !utf8.Valid(s) {
		return "", nil, mpError(field, errors.New("invalid UTF-8"))
	}
	return string(s), b, nil
}

// rawValue copies the next value's bytes, whatever its type.
func rawValue(b []byte, field string) (raw, rest []byte, err error) {
	rest, err = msgp.Skip(b)
	if err != nil {
		return nil, nil, mpError(field, err)
	}
	return append([]byte(nil), b[:len(b)-len(rest)]...), rest, nil
}

// PeekType implements Protocol: the array's first item, read without
// decoding the rest.
func (MessagePackProtocol) PeekType(rec []byte) MessageType {
	n, b, err := msgp.ReadArrayHeaderBytes(rec)
	if err != nil || n == 0 {
		return 0
	}
	t, _, err := msgp.ReadInt32Bytes(b)
	if err != nil {
		return 0
	}
	return MessageType(t)
}

// IsPing implements Protocol: the exact record 0x91 0x06.
func (MessagePackProtocol) IsPing(rec []byte) bool {
	return len(rec) == 2 && rec[0] == 0x91 && rec[1] == 0x06
}

// Ping implements Protocol: 0x91 0x06 behind its length prefix.
func (MessagePackProtocol) Ping() []byte { return mpPing }

// checkValue reports whether v is exactly one MessagePack value.
func checkValue(v []byte, field string) error {
	rest, err := msgp.Skip(v)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidMsgpack, field, err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %s: %d bytes after the value", ErrInvalidMsgpack, field, len(rest))
	}
	return nil
}

// appendHeadID appends a message's type, empty headers and invocation id
// (nil when empty).
func appendHeadID(dst []byte, items uint32, t MessageType, invocationID string) []byte {
	dst = msgp.AppendArrayHeader(dst, items)
	dst = msgp.AppendInt(dst, int(t))
	dst = msgp.AppendMapHeader(dst, 0)
	if invocationID == "" {
		return msgp.AppendNil(dst)
	}
	return msgp.AppendString(dst, invocationID)
}

// AppendInvocation implements Protocol: [1, {}, id|nil, target, args, []],
// the six items ASP.NET Core writes (streamIds empty). args must be a
// MessagePack array; empty means no arguments.
func (MessagePackProtocol) AppendInvocation(dst []byte, invocationID, target string, args []byte) ([]byte, error) {
	return appendMPInvocation(dst, TypeInvocation, invocationID, target, args, nil)
}

// appendMPInvocation appends [t, {}, id|nil, target, args, streamIds]
// (Invocation, StreamInvocation). args must be a MessagePack array;
// empty means no arguments.
func appendMPInvocation(dst []byte, t MessageType, invocationID, target string, args []byte, streamIDs []string) ([]byte, error) {
	if len(args) == 0 {
		args = emptyArray
	} else if err := checkValue(args, "arguments"); err != nil {
		return dst, err
	} else if msgp.NextType(args) != msgp.ArrayType {
		return dst, fmt.Errorf("%w: arguments: not an array", ErrInvalidMsgpack)
	}
	return framed(dst, func(b []byte) []byte {
		b = appendHeadID(b, 6, t, invocationID)
		b = msgp.AppendString(b, target)
		b = append(b, args...)
		b = msgp.AppendArrayHeader(b, uint32(len(streamIDs)))
		for _, id := range streamIDs {
			b = msgp.AppendString(b, id)
		}
		return b
	}), nil
}

var emptyArray = []byte{0x90}

// AppendStreamItem implements Protocol: [2, {}, id, item].
func (MessagePackProtocol) AppendStreamItem(dst []byte, invocationID string, item []byte) ([]byte, error) {
	if err := checkValue(item, "item"); err != nil {
		return dst, err
	}
	return framed(dst, func(b []byte) []byte {
		return append(appendHeadID(b, 4, TypeStreamItem, invocationID), item...)
	}), nil
}

// AppendCompletion implements Protocol: [3, {}, id, 3, result], or
// [3, {}, id, 2] (void) when result is empty.
func (MessagePackProtocol) AppendCompletion(dst []byte, invocationID string, result []byte) ([]byte, error) {
	if len(result) == 0 {
		return framed(dst, func(b []byte) []byte {
			return msgp.AppendInt(appendHeadID(b, 4, TypeCompletion, invocationID), resultVoid)
		}), nil
	}
	if err := checkValue(result, "result"); err != nil {
		return dst, err
	}
	return framed(dst, func(b []byte) []byte {
		b = msgp.AppendInt(appendHeadID(b, 5, TypeCompletion, invocationID), resultNonVoid)
		return append(b, result...)
	}), nil
}

// AppendCompletionError implements Protocol: [3, {}, id, 1, error].
func (MessagePackProtocol) AppendCompletionError(dst []byte, invocationID, errMsg string) []byte {
	return framed(dst, func(b []byte) []byte {
		b = msgp.AppendInt(appendHeadID(b, 5, TypeCompletion, invocationID), resultError)
		return msgp.AppendString(b, errMsg)
	})
}

// AppendClose implements Protocol: [7, error|nil, allowReconnect], as
// ASP.NET Core writes it (always three items).
func (MessagePackProtocol) AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	return framed(dst, func(b []byte) []byte {
		b = msgp.AppendArrayHeader(b, 3)
		b = msgp.AppendInt(b, int(TypeClose))
		if errMsg == "" {
			b = msgp.AppendNil(b)
		} else {
			b = msgp.AppendString(b, errMsg)
		}
		return msgp.AppendBool(b, allowReconnect)
	})
}

// AppendAck implements Protocol: [8, sequenceId].
func (MessagePackProtocol) AppendAck(dst []byte, sequenceID int64) []byte {
	return appendMPSeq(dst, TypeAck, sequenceID)
}

// AppendSequence implements Protocol: [9, sequenceId].
func (MessagePackProtocol) AppendSequence(dst []byte, sequenceID int64) []byte {
	return appendMPSeq(dst, TypeSequence, sequenceID)
}

func appendMPSeq(dst []byte, t MessageType, id int64) []byte {
	return framed(dst, func(b []byte) []byte {
		b = msgp.AppendArrayHeader(b, 2)
		b = msgp.AppendInt(b, int(t))
		return appendInt(b, id)
	})
}

// appendInt appends v in the smallest encoding, unsigned when v is not
// negative, as MessagePack-CSharp (ASP.NET Core) writes integers.
func appendInt(dst []byte, v int64) []byte {
	if v >= 0 {
		return msgp.AppendUint64(dst, uint64(v))
	}
	return msgp.AppendInt64(dst, v)
}
