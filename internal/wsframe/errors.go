package wsframe

import "fmt"

// CloseCode is a WebSocket close status code (RFC 6455 §7.4).
type CloseCode uint16

// Close codes (RFC 6455 §7.4.1 and the IANA registry).
const (
	CloseNormal          CloseCode = 1000
	CloseGoingAway       CloseCode = 1001
	CloseProtocolError   CloseCode = 1002
	CloseUnsupported     CloseCode = 1003
	CloseNoStatus        CloseCode = 1005 // never sent: an empty close frame was received
	CloseInvalidPayload  CloseCode = 1007 // e.g. invalid UTF-8 in a text frame
	ClosePolicyViolation CloseCode = 1008
	CloseTooBig          CloseCode = 1009
	CloseInternalError   CloseCode = 1011
	CloseServiceRestart  CloseCode = 1012
	CloseTryAgainLater   CloseCode = 1013
)

// validOnWire reports whether a peer may send c in a close frame: 1000-1014
// except the reserved 1004-1006, and the registered/private 3000-4999.
func (c CloseCode) validOnWire() bool {
	return c >= 1000 && c != 1004 && c != 1005 && c != 1006 && (c <= 1014 || c >= 3000) && c < 5000
}

// ProtocolError is a WebSocket-level violation by the peer; it carries the
// close code chosen where it was detected. The errors below are shared
// values: compare with errors.Is, read with errors.As, never modify them.
type ProtocolError struct {
	Code   CloseCode
	Reason string // sent as the close frame's reason
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("websocket protocol error %d: %s", e.Code, e.Reason)
}

// Sentinel errors: the violations this package and a frame reader built on
// it detect, each with the close code it calls for.
var (
	// ErrReservedBits: RSV1-3 set, and no extension was negotiated (1002).
	ErrReservedBits = &ProtocolError{CloseProtocolError, "reserved bits set"}
	// ErrUnknownOpcode: an opcode RFC 6455 reserves (3-7, 0xB-0xF) (1002).
	ErrUnknownOpcode = &ProtocolError{CloseProtocolError, "unknown opcode"}
	// ErrUnmasked: a client frame without a mask (1002).
	ErrUnmasked = &ProtocolError{CloseProtocolError, "unmasked client frame"}
	// ErrBadLength: a 64-bit payload length with its top bit set (1002).
	ErrBadLength = &ProtocolError{CloseProtocolError, "invalid payload length"}
	// ErrFragmentedControl: a control frame without FIN (1002).
	ErrFragmentedControl = &ProtocolError{CloseProtocolError, "fragmented control frame"}
	// ErrControlTooLong: a control frame payload over 125 bytes (1002).
	ErrControlTooLong = &ProtocolError{CloseProtocolError, "control frame too long"}
	// ErrTooBig: a data frame, or a message, over the caller's limit (1009).
	ErrTooBig = &ProtocolError{CloseTooBig, "message too big"}
	// ErrUnexpectedData: a text or binary frame inside a fragmented
	// message (1002).
	ErrUnexpectedData = &ProtocolError{CloseProtocolError, "new data frame inside a fragmented message"}
	// ErrUnexpectedContinuation: a continuation frame with no message to
	// continue (1002).
	ErrUnexpectedContinuation = &ProtocolError{CloseProtocolError, "continuation frame without a message"}
	// ErrInvalidUTF8: a text message that is not UTF-8 (1007).
	ErrInvalidUTF8 = &ProtocolError{CloseInvalidPayload, "invalid UTF-8 in text message"}
	// ErrBadClosePayload: a close frame body of one byte (1002).
	ErrBadClosePayload = &ProtocolError{CloseProtocolError, "invalid close frame"}
	// ErrBadCloseCode: a close code a peer may not send, e.g. 1005 (1002).
	ErrBadCloseCode = &ProtocolError{CloseProtocolError, "invalid close code"}
	// ErrCloseReasonUTF8: a close reason that is not UTF-8 (1007).
	ErrCloseReasonUTF8 = &ProtocolError{CloseInvalidPayload, "invalid UTF-8 in close reason"}
)
