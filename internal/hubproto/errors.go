package hubproto

import (
	"errors"
	"fmt"
)

// Sentinel errors. Parse and Split errors close the connection; handshake
// errors are answered with a handshake error response whose text is the
// error's text (see ParseHandshake).
var (
	// ErrIncompleteRecord: a message ends inside a record.
	ErrIncompleteRecord = errors.New("record not terminated by 0x1e")
	// ErrInvalidMessage: a record that does not decode as a hub message.
	// Parse errors wrap it, and their text starts with it.
	ErrInvalidMessage = errors.New("invalid hub message")
	// ErrMissingType: a record without a message type (it wraps
	// ErrInvalidMessage).
	ErrMissingType = fmt.Errorf("%w: missing type", ErrInvalidMessage)
	// ErrInvalidJSON: a value handed to an Append method is not valid
	// JSON.
	ErrInvalidJSON = errors.New("invalid JSON value")
	// ErrInvalidMsgpack: a value handed to a MessagePack Append method is
	// not exactly one MessagePack value of the kind it needs.
	ErrInvalidMsgpack = errors.New("invalid MessagePack value")
	// ErrNoJSON: a MessagePack value JSON cannot express (an extension
	// type other than timestamps, a NaN, a map key that is not a string,
	// number or boolean), so it cannot go on to a JSON upstream.
	ErrNoJSON = errors.New("MessagePack value has no JSON form")
	// ErrLengthPrefix: a MessagePack record's VarInt length prefix is
	// longer than 5 bytes or over 2^32-1.
	ErrLengthPrefix = errors.New("invalid record length prefix")

	// ErrHandshakeUnterminated: the first message holds no 0x1e.
	ErrHandshakeUnterminated = errors.New("handshake request not terminated")
	// ErrHandshakeSyntax: the handshake request is not a JSON object, or
	// protocol is not a string or version not an integer.
	ErrHandshakeSyntax = errors.New("handshake request does not parse")
	// ErrHandshakeMissing: protocol or version is missing or null.
	ErrHandshakeMissing = errors.New("handshake request incomplete")
	// ErrUnsupportedProtocol: a protocol Lookup does not know.
	ErrUnsupportedProtocol = errors.New("protocol not supported")
	// ErrUnsupportedVersion: a version the protocol does not speak.
	ErrUnsupportedVersion = errors.New("protocol version not supported")
)

// handshakeError carries the text the client is sent (ASP.NET Core's words)
// and the sentinel that classifies it.
type handshakeError struct {
	kind error
	text string
}

func (e *handshakeError) Error() string { return e.text }
func (e *handshakeError) Unwrap() error { return e.kind }
