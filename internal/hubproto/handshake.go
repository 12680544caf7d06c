package hubproto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// RecordSeparator ends every JSON record, and the handshake request and
// response of every protocol (the handshake is always JSON).
const RecordSeparator = 0x1e

// HandshakeOK is the successful handshake response, encoded once: shared,
// never modify it.
var HandshakeOK = []byte("{}\x1e")

// Handshake is an accepted handshake request.
type Handshake struct {
	Protocol Protocol
	Version  int
}

// ParseHandshake reads the handshake request at the start of msg, the
// first WebSocket message of a connection: one JSON record ended by 0x1e,
// whatever the protocol. It returns the handshake and the bytes after the
// separator (records sent in the same message). An error's text is the
// response to send back (AppendHandshakeError), in ASP.NET Core's words;
// errors.Is tells its kind (ErrHandshakeUnterminated, ErrHandshakeSyntax,
// ErrHandshakeMissing, ErrUnsupportedProtocol, ErrUnsupportedVersion).
//
// Property names match exactly, as ASP.NET Core's handshake reader does
// (encoding/json alone would also accept "Protocol" or "PROTOCOL").
// Version is the protocol's own (Protocol.Version) or
// StatefulReconnectVersion, which the official clients send when they
// negotiated stateful reconnect.
func ParseHandshake(msg []byte) (h Handshake, rest []byte, err error) {
	i := bytes.IndexByte(msg, RecordSeparator)
	if i < 0 {
		return h, nil, &handshakeError{ErrHandshakeUnterminated, "Handshake request is not terminated by 0x1e."}
	}
	rec, rest := msg[:i], msg[i+1:]
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(rec, &fields); err != nil {
		return h, nil, &handshakeError{ErrHandshakeSyntax, "Error parsing handshake request: " + err.Error()}
	}
	var name string
	var version int
	rawP, okP := fields["protocol"]
	rawV, okV := fields["version"]
	if !okP || !okV || string(rawP) == "null" || string(rawV) == "null" {
		return h, nil, &handshakeError{ErrHandshakeMissing, "Handshake request is missing protocol or version."}
	}
	if err := json.Unmarshal(rawP, &name); err != nil {
		return h, nil, &handshakeError{ErrHandshakeSyntax, "Error parsing handshake request: protocol must be a string."}
	}
	if err := json.Unmarshal(rawV, &version); err != nil {
		return h, nil, &handshakeError{ErrHandshakeSyntax, "Error parsing handshake request: version must be an integer."}
	}
	p := Lookup(name)
	if p == nil {
		return h, nil, &handshakeError{ErrUnsupportedProtocol, fmt.Sprintf("The protocol '%s' is not supported.", name)}
	}
	if version != p.Version() && version != StatefulReconnectVersion {
		return h, nil, &handshakeError{ErrUnsupportedVersion,
			fmt.Sprintf("The server does not support version %d of the '%s' protocol.", version, name)}
	}
	return Handshake{Protocol: p, Version: version}, rest, nil
}

// AppendHandshakeError appends the handshake response carrying the error
// text msg: {"error":msg} and 0x1e.
func AppendHandshakeError(dst []byte, msg string) []byte {
	dst = slices.Grow(dst, 12+len(msg))
	dst = append(dst, `{"error":`...)
	dst = appendString(dst, msg)
	return append(dst, '}', RecordSeparator)
}

// AppendHandshakeRequest appends the handshake request a client sends to
// speak p: {"protocol":name,"version":n} and 0x1e.
func AppendHandshakeRequest(dst []byte, p Protocol) []byte {
	dst = slices.Grow(dst, 36+len(p.Name()))
	dst = append(dst, `{"protocol":`...)
	dst = appendString(dst, p.Name())
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, int64(p.Version()), 10)
	return append(dst, '}', RecordSeparator)
}
