package conn

import (
	"errors"
	"fmt"
)

// Sentinel errors, grouped by what the caller can do about them.
var (
	// ErrUnknownHub: the request named a hub that is not configured (404).
	ErrUnknownHub = errors.New("unknown hub")
	// ErrBadToken: a connection token failed validation (404, as ASP.NET
	// Core answers for an unknown connection id).
	ErrBadToken = errors.New("invalid connection token")
	// ErrTokenExpired: a connection token is past its lifetime (404).
	ErrTokenExpired = errors.New("connection token expired")
	// ErrTokenReused: the connection id is, or was recently, connected (409).
	ErrTokenReused = errors.New("connection id already used")
	// ErrUnauthorized: an access token is required and was missing or bad (401).
	ErrUnauthorized = errors.New("unauthorized")
)

// CloseCode is a WebSocket close status code.
type CloseCode uint16

// Close codes edgeplane sends (RFC 6455 §7.4.1).
const (
	CloseNormal          CloseCode = 1000
	CloseGoingAway       CloseCode = 1001
	CloseProtocolError   CloseCode = 1002
	CloseUnsupported     CloseCode = 1003
	CloseInvalidPayload  CloseCode = 1007 // e.g. invalid UTF-8 in a text frame
	ClosePolicyViolation CloseCode = 1008
	CloseTooBig          CloseCode = 1009
	CloseInternalError   CloseCode = 1011
	CloseServiceRestart  CloseCode = 1012
	CloseTryAgainLater   CloseCode = 1013
)

// ProtocolError is a WebSocket-level violation by the peer; it carries the
// close code chosen where it was detected.
type ProtocolError struct {
	Code   CloseCode
	Reason string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("websocket protocol error %d: %s", e.Code, e.Reason)
}

func protoErr(code CloseCode, reason string) *ProtocolError {
	return &ProtocolError{Code: code, Reason: reason}
}
