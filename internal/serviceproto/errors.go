package serviceproto

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error Parse and Splitter return wraps one of
// them; all of them mean the peer broke the protocol, and the server
// connection that sent it should be closed.
var (
	// ErrMalformed: a message body does not decode as the layout of its
	// type (wrong MessagePack type, a required field missing, trailing
	// bytes). The error's text names the message type and the field.
	ErrMalformed = errors.New("serviceproto: malformed message")
	// ErrLengthPrefix: a length prefix is longer than 5 bytes or says
	// 2 GiB or more (BinaryMessageParser's limits).
	ErrLengthPrefix = errors.New("serviceproto: invalid length prefix")
	// ErrTooLarge: a message is longer than the Splitter's
	// MaxMessageBytes.
	ErrTooLarge = errors.New("serviceproto: message too large")
)

// fieldError is a malformed field of a message type.
func fieldError(t Type, field string, err error) error {
	if err == nil {
		return fmt.Errorf("%w: %s: %s", ErrMalformed, t, field)
	}
	return fmt.Errorf("%w: %s: %s: %w", ErrMalformed, t, field, err)
}
