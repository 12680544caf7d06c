package conn

import (
	"errors"

	"github.com/edgeplane/edgeplane/internal/wsframe"
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
type CloseCode = wsframe.CloseCode

// Close codes edgeplane sends (RFC 6455 §7.4.1).
const (
	CloseNormal          = wsframe.CloseNormal
	CloseGoingAway       = wsframe.CloseGoingAway
	CloseProtocolError   = wsframe.CloseProtocolError
	CloseUnsupported     = wsframe.CloseUnsupported
	CloseInvalidPayload  = wsframe.CloseInvalidPayload // e.g. invalid UTF-8 in a text frame
	ClosePolicyViolation = wsframe.ClosePolicyViolation
	CloseTooBig          = wsframe.CloseTooBig
	CloseInternalError   = wsframe.CloseInternalError
	CloseServiceRestart  = wsframe.CloseServiceRestart
	CloseTryAgainLater   = wsframe.CloseTryAgainLater
)

// ProtocolError is a WebSocket-level violation by the peer; it carries the
// close code chosen where it was detected.
type ProtocolError = wsframe.ProtocolError

func protoErr(code CloseCode, reason string) *ProtocolError {
	return &ProtocolError{Code: code, Reason: reason}
}
