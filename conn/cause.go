package conn

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/edgeplane/edgeplane/internal/hubproto"
)

// cause is why a connection closed. One value carries everything the close
// needs: the metric label of edgeplane_closed_total (also the reason given
// upstream), the WebSocket close code, the text the client is told (the
// SignalR Close message's error and the WebSocket close reason) and
// whether the client may reconnect (SignalR allowReconnect).
type cause struct {
	label     string
	code      CloseCode
	text      string
	reconnect bool
	idx       uint32 // position in causes + 1, stored in Conn.flags
	// closeFrames: the SignalR Close for this cause per protocol,
	// precompiled for the predeclared causes (protocol.go); nil for a
	// cause with a text of its own.
	closeFrames *[hubproto.NumIDs][]byte
}

// withText returns the cause with another text for the client, as valid
// UTF-8 (clientText).
func (k *cause) withText(text string) *cause {
	c := *k
	c.text, c.closeFrames = clientText(text), nil
	return &c
}

// clientText makes a text that may come from outside (a REST close
// reason, an error quoting input) valid UTF-8: it goes to the client as
// the WebSocket close reason and the SignalR Close error, and invalid
// UTF-8 in either makes browsers and Node fail the connection instead of
// reading why it closed.
func clientText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// The causes a connection can close for. A close decided by the node
// carries one of them (with another text where the detail matters); a
// socket that simply went away is causePeerGone.
var (
	causeClientClose      = &cause{label: "client_close", code: CloseNormal}
	causePeerGone         = &cause{label: "peer_gone"}
	causeSlowClient       = &cause{label: "slow_client", code: ClosePolicyViolation, text: "slow client: outbound queue full", reconnect: true}
	causeTimeout          = &cause{label: "timeout", code: CloseNormal, text: "Server timeout elapsed without receiving a message from the client.", reconnect: true}
	causeHandshakeTimeout = &cause{label: "handshake_timeout", code: ClosePolicyViolation, text: "handshake timed out"}
	causeProtocolError    = &cause{label: "protocol_error", code: CloseProtocolError}
	causeTooBig           = &cause{label: "too_big", code: CloseTooBig}
	causeInvalidUTF8      = &cause{label: "invalid_utf8", code: CloseInvalidPayload}
	causeHandshakeError   = &cause{label: "handshake_error", code: CloseProtocolError, text: "handshake failed"}
	causeHTTPDone         = &cause{label: "http_done"}
	causeHTTPError        = &cause{label: "http_error"}
	causeServerClose      = &cause{label: "server_close", code: CloseNormal, text: "closed by the server", reconnect: true}
	causeShutdown         = &cause{label: "shutdown", code: CloseServiceRestart, text: "server is restarting", reconnect: true}
	causeDuplicate        = &cause{label: "duplicate_id", code: ClosePolicyViolation, text: "connection id already connected"}
	causeRateLimited      = &cause{label: "rate_limited", code: ClosePolicyViolation, text: "message rate limit exceeded"}
	causeAuthExpired      = &cause{label: "auth_expired", code: CloseNormal, text: "authentication expired", reconnect: true} // the token's asrs.s.coae (client_endpoint_claims.go)
	// Stateful reconnect (resume.go).
	causeReconnectExpired    = &cause{label: "reconnect_expired"} // the socket went away and no reconnect came within --reconnect-window
	causeReconnectBufferFull = &cause{label: "reconnect_buffer_full", code: ClosePolicyViolation, text: "stateful reconnect buffer full: too much unacknowledged data", reconnect: true}
)

// causes is the one list of causes: metric labels and the index stored in
// Conn.flags come from it.
var causes = func() []*cause {
	all := []*cause{
		causeClientClose, causePeerGone, causeSlowClient, causeTimeout,
		causeHandshakeTimeout, causeProtocolError, causeTooBig, causeInvalidUTF8,
		causeHandshakeError, causeHTTPDone, causeHTTPError, causeServerClose,
		causeShutdown, causeDuplicate, causeRateLimited,
		causeReconnectExpired, causeReconnectBufferFull, causeAuthExpired,
	}
	for i, c := range all {
		c.idx = uint32(i + 1)
	}
	return all
}()

// causeOf is the cause of an input error: the close code chosen where the
// error was detected picks it, the error's text is what the client is told.
func causeOf(err error) *cause {
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		return causeProtocolError.withText(err.Error())
	}
	k := causeProtocolError
	switch pe.Code {
	case ClosePolicyViolation:
		k = causeRateLimited
	case CloseTooBig:
		k = causeTooBig
	case CloseInvalidPayload:
		k = causeInvalidUTF8
	}
	c := *k
	c.code, c.text, c.closeFrames = pe.Code, clientText(pe.Reason), nil
	return &c
}

// disconnectReason is the reason given upstream for a disconnect: "" for a
// normal close by the client, the label of the cause the node chose, or
// peer_gone (with the I/O error, if any) when the socket just went away.
func disconnectReason(idx uint32, err error) string {
	if idx > 0 && int(idx) <= len(causes) {
		if k := causes[idx-1]; k != causeClientClose {
			return k.label
		}
		return ""
	}
	if err != nil {
		return causePeerGone.label + ": " + err.Error()
	}
	return causePeerGone.label
}
