package conn

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// TestCausesAreOneList: every cause has its own label and index, and the
// closed-connections counter has a series per cause.
func TestCausesAreOneList(t *testing.T) {
	seen := map[string]bool{}
	for i, k := range causes {
		if k.idx != uint32(i+1) {
			t.Errorf("cause %q has idx %d, want %d", k.label, k.idx, i+1)
		}
		if k.label == "" || seen[k.label] {
			t.Errorf("cause %d: label %q empty or repeated", i, k.label)
		}
		seen[k.label] = true
	}
	s := newTestServer(t, Config{})
	for _, k := range causes {
		if s.M.closed[k.idx] == nil {
			t.Errorf("no edgeplane_closed_total series for %q", k.label)
		}
	}
}

// TestCauseOfInputErrors: the close code chosen where an input error was
// detected picks the cause (and stays the code sent); its text is what the
// client is told.
func TestCauseOfInputErrors(t *testing.T) {
	for _, tc := range []struct {
		err   error
		label string
		code  CloseCode
		text  string
	}{
		{wsframe.ErrInvalidUTF8, "invalid_utf8", CloseInvalidPayload, wsframe.ErrInvalidUTF8.Reason},
		{wsframe.ErrTooBig, "too_big", CloseTooBig, wsframe.ErrTooBig.Reason},
		{protoErr(ClosePolicyViolation, "message rate limit exceeded"), "rate_limited", ClosePolicyViolation, "message rate limit exceeded"},
		{wsframe.ErrUnmasked, "protocol_error", CloseProtocolError, wsframe.ErrUnmasked.Reason},
		{protoErr(CloseUnsupported, "odd"), "protocol_error", CloseUnsupported, "odd"},
		{fmt.Errorf("record: %w", errors.New("bad json")), "protocol_error", CloseProtocolError, "record: bad json"},
	} {
		k := causeOf(tc.err)
		if k.label != tc.label || k.code != tc.code || k.text != tc.text || k.reconnect || k.idx == 0 {
			t.Errorf("causeOf(%v) = %+v, want %s %d %q", tc.err, *k, tc.label, tc.code, tc.text)
		}
	}
}

// TestNodeClosesTellTheClient: for each close the node decides on an open
// SignalR connection, the client receives a SignalR Close record (error
// text, allowReconnect) and then a WebSocket close frame with the cause's
// code and text, the connection leaves its hub, and the cause is counted
// and given upstream.
func TestNodeClosesTellTheClient(t *testing.T) {
	for _, tc := range []struct {
		name      string
		close     func(c *Conn)
		code      CloseCode
		text      string
		reconnect bool
		label     string
	}{
		{"slow client", func(c *Conn) { c.slow() }, ClosePolicyViolation, "slow client: outbound queue full", true, "slow_client"},
		{"client timeout", func(c *Conn) { c.closeWith(causeTimeout) }, CloseNormal, "Server timeout elapsed without receiving a message from the client.", true, "timeout"},
		{"drain", func(c *Conn) { c.closeWith(causeShutdown) }, CloseServiceRestart, "server is restarting", true, "shutdown"},
		{"REST close", func(c *Conn) {
			if !c.srv.CloseConnection("chat", c.entry.ID(), "bye now") {
				panic("CloseConnection did not find the connection")
			}
		}, CloseNormal, "bye now", true, "server_close"},
		{"rate limit", func(c *Conn) { c.fail(protoErr(causeRateLimited.code, causeRateLimited.text)) }, ClosePolicyViolation, "message rate limit exceeded", false, "rate_limited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c, fc := openConn(t)
			before := s.M.closed[indexOf(tc.label)].Get()
			tc.close(c)
			ops, payloads := serverFrames(t, fc.output())
			if len(ops) != 2 || ops[0] != 0x81 || ops[1] != 0x88 {
				t.Fatalf("got ops %x %q, want a text frame (SignalR Close) then a close frame", ops, payloads)
			}
			var rec struct {
				Type           int    `json:"type"`
				Error          string `json:"error"`
				AllowReconnect bool   `json:"allowReconnect"`
			}
			if len(payloads[0]) == 0 || payloads[0][len(payloads[0])-1] != 0x1e || json.Unmarshal([]byte(payloads[0][:len(payloads[0])-1]), &rec) != nil {
				t.Fatalf("SignalR Close record %q", payloads[0])
			}
			if rec.Type != 7 || rec.Error != tc.text || rec.AllowReconnect != tc.reconnect {
				t.Errorf("SignalR Close %+v, want error %q allowReconnect %v", rec, tc.text, tc.reconnect)
			}
			if code := CloseCode(binary.BigEndian.Uint16([]byte(payloads[1][:2]))); code != tc.code || payloads[1][2:] != tc.text {
				t.Errorf("close frame %d %q, want %d %q", code, payloads[1][2:], tc.code, tc.text)
			}
			if s.router.Hub("chat").Len() != 0 {
				t.Error("closed connection still registered")
			}
			if got := s.M.closed[indexOf(tc.label)].Get(); got != before+1 {
				t.Errorf("edgeplane_closed_total{reason=%q} = %d, want %d", tc.label, got, before+1)
			}
			if got := disconnectReason(c.cause(), nil); got != tc.label {
				t.Errorf("upstream disconnect reason %q, want %q", got, tc.label)
			}
		})
	}
}

func indexOf(label string) uint32 {
	for _, k := range causes {
		if k.label == label {
			return k.idx
		}
	}
	panic("no cause " + label)
}

// openConn upgrades and handshakes a fake connection and clears its output.
func openConn(t *testing.T) (*Server, *Conn, *fakeConn) {
	t.Helper()
	s := newTestServer(t, Config{})
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	sess.OnData([]byte("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	sess.OnData(clientFrame(0x81, []byte(`{"protocol":"json","version":1}`+"\x1e")))
	if s.router.Hub("chat").Len() != 1 {
		t.Fatalf("handshake did not register the connection: %q", fc.output())
	}
	fc.mu.Lock()
	fc.out.Reset()
	fc.mu.Unlock()
	return s, sess.(*Conn), fc
}
