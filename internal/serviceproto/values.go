package serviceproto

import (
	"strings"

	"github.com/tinylib/msgp/msgp"
)

// NullString is a string field the SDK may write as nil (a C# null),
// where nil and "" differ on the wire or in meaning (LeaveGroup's group:
// nil = every group). The zero value is nil.
type NullString struct {
	String string
	Valid  bool // false: nil
}

// Str is a non-nil NullString.
func Str(s string) NullString { return NullString{String: s, Valid: true} }

// Claim is one claim of a client, in OpenConnection. A client's claims
// are a list: the same type may repeat (roles).
type Claim struct {
	Type, Value string
}

// Header is one request header of a client with its values, in
// OpenConnection and CloseConnection.
type Header struct {
	Name   string
	Values []string
}

// Payload is one hub protocol's serialization of a message: for "json"
// the JSON record with its 0x1e, for "messagepack" the record with its
// length prefix, ready to go to a client of that protocol as they are.
type Payload struct {
	Protocol string
	Data     []byte
}

// Payloads are a message's serializations, one per hub protocol the app
// server speaks, in the order it wrote them.
type Payloads []Payload

// Get returns the serialization for protocol (names compared ignoring
// case, as the SDK's dictionary does) and whether there is one.
func (p Payloads) Get(protocol string) ([]byte, bool) {
	for i := range p {
		if strings.EqualFold(p[i].Protocol, protocol) {
			return p[i].Data, true
		}
	}
	return nil, false
}

// appendInt writes an integer as MessagePack-CSharp's Write(int) and
// Write(long) do: the shortest form, unsigned formats for non-negative
// values (msgp's AppendInt64 would use signed ones: d1 rather than cd).
func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return msgp.AppendUint64(b, uint64(v))
	}
	return msgp.AppendInt64(b, v)
}

// appendInt32Fixed writes v as a 5-byte int32 (d2), as the SDK's
// WriteInt32 does for ConnectionFlowControl.
func appendInt32Fixed(b []byte, v int32) []byte {
	return append(b, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendNullString(b []byte, s NullString) []byte {
	if !s.Valid {
		return msgp.AppendNil(b)
	}
	return msgp.AppendString(b, s.String)
}

func appendStrings(b []byte, ss []string) []byte {
	b = msgp.AppendArrayHeader(b, uint32(len(ss)))
	for _, s := range ss {
		b = msgp.AppendString(b, s)
	}
	return b
}

func appendPayloads(b []byte, p Payloads) []byte {
	b = msgp.AppendMapHeader(b, uint32(len(p)))
	for i := range p {
		b = msgp.AppendString(b, p[i].Protocol)
		b = msgp.AppendBytes(b, p[i].Data)
	}
	return b
}

func appendHeaders(b []byte, h []Header) []byte {
	b = msgp.AppendMapHeader(b, uint32(len(h)))
	for i := range h {
		b = msgp.AppendString(b, h[i].Name)
		b = appendStrings(b, h[i].Values)
	}
	return b
}

func appendClaims(b []byte, c []Claim) []byte {
	b = msgp.AppendMapHeader(b, uint32(len(c)))
	for i := range c {
		b = msgp.AppendString(b, c[i].Type)
		b = msgp.AppendString(b, c[i].Value)
	}
	return b
}

// readString reads a str, or nil as "" (the SDK's ReadString allows
// null). The string is a copy: it outlives the input.
func readString(b []byte) (string, []byte, error) {
	if msgp.IsNil(b) {
		o, err := msgp.ReadNilBytes(b)
		return "", o, err
	}
	return msgp.ReadStringBytes(b)
}

// readNullString reads a str or nil.
func readNullString(b []byte) (NullString, []byte, error) {
	if msgp.IsNil(b) {
		o, err := msgp.ReadNilBytes(b)
		return NullString{}, o, err
	}
	s, o, err := msgp.ReadStringBytes(b)
	return NullString{String: s, Valid: err == nil}, o, err
}

// readBin reads a bin, or leniently a str (MessagePack-CSharp's
// ReadBytes takes both), or nil as nil. The bytes alias the input.
func readBin(b []byte) ([]byte, []byte, error) {
	switch msgp.NextType(b) {
	case msgp.NilType:
		o, err := msgp.ReadNilBytes(b)
		return nil, o, err
	case msgp.StrType:
		return msgp.ReadStringZC(b)
	}
	return msgp.ReadBytesZC(b)
}

// capHint bounds a preallocation by what the input can hold: every item
// takes at least one byte, so a forged count cannot allocate more than
// the message's size.
func capHint(n uint32, b []byte) int {
	if int64(n) > int64(len(b)) {
		return len(b)
	}
	return int(n)
}
