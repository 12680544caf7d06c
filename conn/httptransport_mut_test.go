package conn

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tests of the HTTP transports (SSE, Long Polling, their POST, the
// keep-alive sockets) in package conn, for what mutation testing
// (docs/MUTATION.md, issue 19) found pinned down only by internal/node and
// test/e2e: answers, what is delivered and when, what ends a connection,
// and the deadlines on the (stopped) wheel.

// htCfg has every HTTP deadline different, to tell them apart on the
// wheel: handshake 15 s, keep-alive 10 s, client time-out 30 s, reconnect
// window 40 s, poll time-out 20 s.
var htCfg = Config{
	HandshakeTimeout:  15 * time.Second,
	KeepAliveInterval: 10 * time.Second,
	ClientTimeout:     30 * time.Second,
	ReconnectWindow:   40 * time.Second,
	PollTimeout:       20 * time.Second,
}

// htDue is the second c is scheduled for on s's stopped wheel, 0 if it is
// not on it.
func htDue(s *Server, c *Conn) int64 {
	s.wheel.mu.Lock()
	defer s.wheel.mu.Unlock()
	sl := int64(c.wslot)
	if sl == 0 || sl == slotTicking {
		return 0
	}
	for at := s.wheel.swept + 1; at < s.wheel.swept+wheelSlots; at++ {
		if at%wheelSlots == sl-1 {
			return at
		}
	}
	return 0
}

// htConn is a connection on an HTTP transport as a test drives it.
type htConn struct {
	s      *Server
	tok    string // the negotiated connection token
	target string // the hub path with ?id=
	lc     *Conn  // the logical connection, once the first GET made it
}

// htNegotiate negotiates a connection of s.
func htNegotiate(t *testing.T, s *Server) *htConn {
	t.Helper()
	resp, body := exchange(t, s, negotiateReq("/chat/negotiate?negotiateVersion=1", ""))
	var n struct{ ConnectionToken string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &n) != nil {
		t.Fatalf("negotiate: %d %q", resp.StatusCode, body)
	}
	return &htConn{s: s, tok: n.ConnectionToken, target: "/chat?id=" + n.ConnectionToken}
}

// find looks the logical connection up by its token.
func (h *htConn) find(t *testing.T) *Conn {
	t.Helper()
	ti, err := h.s.signer.open("chat", h.tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return h.s.httpConns.get(encodeID(ti.id))
}

func (h *htConn) get() string { return "GET " + h.target + " HTTP/1.1\r\nHost: x\r\n\r\n" }

func (h *htConn) post(body string) string {
	return "POST " + h.target + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func (h *htConn) del() string { return "DELETE " + h.target + " HTTP/1.1\r\nHost: x\r\n\r\n" }

const htHandshake = `{"protocol":"json","version":1}` + "\x1e"

// htLongPoll opens a long-polling connection: first poll, and with
// handshake the handshake POST and the poll that gets its answer.
func htLongPoll(t *testing.T, s *Server, handshake bool) *htConn {
	t.Helper()
	h := htNegotiate(t, s)
	if resp, _ := exchange(t, s, h.get()); resp.StatusCode != http.StatusOK {
		t.Fatalf("first poll: %d", resp.StatusCode)
	}
	if h.lc = h.find(t); h.lc == nil {
		t.Fatal("no connection after the first poll")
	}
	if !handshake {
		return h
	}
	if resp, _ := exchange(t, s, h.post(htHandshake)); resp.StatusCode != http.StatusOK {
		t.Fatalf("handshake POST: %d", resp.StatusCode)
	}
	if resp, body := exchange(t, s, h.get()); resp.StatusCode != http.StatusOK || body != "{}\x1e" {
		t.Fatalf("poll after the handshake: %d %q", resp.StatusCode, body)
	}
	if h.lc.state.Load() != stOpen {
		t.Fatalf("state %d after the handshake", h.lc.state.Load())
	}
	return h
}

// htSSE opens an SSE connection; its stream is on the returned socket.
func htSSE(t *testing.T, s *Server) (*htConn, *pollSocket) {
	t.Helper()
	h := htNegotiate(t, s)
	p := openPollSocket(t, s)
	p.poll("GET " + h.target + " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	if !bytes.HasPrefix(p.fc.output(), []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")) {
		t.Fatalf("SSE GET: %q", p.fc.output())
	}
	if h.lc = h.find(t); h.lc == nil || !h.lc.has(flSSE) {
		t.Fatal("no SSE connection after the GET")
	}
	return h, p
}

// closeRecordOf is the JSON Close record the client reads for cause c.
func closeRecordOf(c *cause) string {
	return `{"type":7,"error":"` + c.text + `","allowReconnect":` + strconv.FormatBool(c.reconnect) + "}\x1e"
}

// TestHTTPTransportsNotServed: with --transports ws, a GET on a hub's path
// (a poll, or an SSE stream by its Accept) is 404 naming the transport, and
// the transport names are read case-blind, each once.
func TestHTTPTransportsNotServed(t *testing.T) {
	s := newTestServer(t, Config{Transports: []string{"ws"}})
	for _, tc := range []struct{ accept, name string }{{"", "LongPolling"}, {"Accept: text/event-stream\r\n", "ServerSentEvents"}} {
		resp, _ := exchange(t, s, "GET /chat?id=x HTTP/1.1\r\nHost: x\r\n"+tc.accept+"\r\n")
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get(ErrorHeader) != tc.name+" transport is not served here (--transports)" {
			t.Errorf("GET for %s: %d %q", tc.name, resp.StatusCode, resp.Header.Get(ErrorHeader))
		}
	}
	set, err := parseTransports([]string{"sse", "SSE", " lp", "ServerSentEvents"})
	if err != nil || !slices.Equal(set, transportSet{tSSE, tLongPoll}) {
		t.Fatalf("parseTransports: %q %v", set, err)
	}
	if set.has(tWebSockets) || !set.has(tLongPoll) {
		t.Fatalf("%q.has: WebSockets %v, LongPolling %v", set, set.has(tWebSockets), set.has(tLongPoll))
	}
}

// TestNegotiateSSEOnlyForText: negotiate offers ServerSentEvents (Text
// only) when a text protocol is served, and not with MessagePack alone.
func TestNegotiateSSEOnlyForText(t *testing.T) {
	for _, tc := range []struct {
		protocols []string
		want      string
	}{
		{nil, "WebSockets:Text,Binary ServerSentEvents:Text LongPolling:Text,Binary"},
		{[]string{"messagepack"}, "WebSockets:Binary LongPolling:Binary"},
	} {
		s := newTestServer(t, Config{Protocols: tc.protocols})
		_, body := exchange(t, s, negotiateReq("/chat/negotiate?negotiateVersion=1", ""))
		var n struct {
			AvailableTransports []struct {
				Transport       string
				TransferFormats []string
			}
		}
		if err := json.Unmarshal([]byte(body), &n); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tr := range n.AvailableTransports {
			got = append(got, tr.Transport+":"+strings.Join(tr.TransferFormats, ","))
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("protocols %q: transports %q, want %q", tc.protocols, got, tc.want)
		}
	}
}
