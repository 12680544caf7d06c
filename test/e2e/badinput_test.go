package e2e

import (
	"bufio"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBadInput sends each kind of bad input on its own connection and
// checks the answer, while a bystander connection keeps receiving.
func TestBadInput(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, "--hub", "chat", "--max-message-bytes", "1024")
		bystander := n.connect(t, "/chat")

		closeCases := []struct {
			name   string
			frames [][]byte
			code   int
			reason string // close reason metric
		}{
			{"oversized message", [][]byte{textFrame(strings.Repeat("a", 2000))}, 1009, "too_big"},
			{"oversized fragmented", [][]byte{frame(0x01, []byte(strings.Repeat("a", 800)), true), frame(0x80, []byte(strings.Repeat("a", 800)), true)}, 1009, "too_big"},
			{"invalid utf-8", [][]byte{frame(0x81, []byte{'{', 0xff, 0xfe, '}', 0x1e}, true)}, 1007, "invalid_utf8"},
			{"unmasked frame", [][]byte{frame(0x81, []byte(`{"type":6}`+"\x1e"), false)}, 1002, "protocol_error"},
			{"reserved bits", [][]byte{frame(0xC1, []byte(`{"type":6}`+"\x1e"), true)}, 1002, "protocol_error"},
			{"bad opcode", [][]byte{frame(0x83, []byte("x"), true)}, 1002, "protocol_error"},
			{"fragmented control", [][]byte{frame(0x09, []byte("x"), true)}, 1002, "protocol_error"},
			{"continuation without start", [][]byte{frame(0x80, []byte("x"), true)}, 1002, "protocol_error"},
			{"invalid hub message", [][]byte{textFrame("{not json\x1e")}, 1002, "protocol_error"},
		}
		for _, tc := range closeCases {
			t.Run(tc.name, func(t *testing.T) {
				before := n.metric(`edgeplane_closed_total{reason="` + tc.reason + `"}`)
				r := n.connect(t, "/chat")
				for _, f := range tc.frames {
					r.write(f)
				}
				code, _ := r.expectClose(5 * time.Second)
				if code != tc.code {
					t.Fatalf("close code %d, want %d", code, tc.code)
				}
				r.expectEOF(5 * time.Second)
				testutil.WaitUntil(t, 5*time.Second, "close reason counted", func() bool {
					return n.metric(`edgeplane_closed_total{reason="`+tc.reason+`"}`) == before+1
				})
			})
		}

		t.Run("handshake errors", func(t *testing.T) {
			for _, hs := range []struct{ body, want string }{
				{`{"protocol":"msgpack","version":1}` + "\x1e", "The protocol 'msgpack' is not supported."},
				{`{"protocol":"messagepack","version":3}` + "\x1e", "does not support version 3 of the 'messagepack' protocol"},
				{`{"protocol":"json","version":7}` + "\x1e", "does not support version 7"},
				{`{nope` + "\x1e", "Error parsing handshake request"},
				{`{"protocol":"json","version":1}`, "not terminated"},
			} {
				r := dialRaw(t, n.client)
				if code := r.upgrade("/chat"); code != 101 {
					t.Fatalf("upgrade: %d", code)
				}
				r.sendText(hs.body)
				code, before := r.expectClose(5 * time.Second)
				if !strings.Contains(before, `"error":`) || !strings.Contains(before, hs.want) {
					t.Fatalf("handshake %q: got %q, want error containing %q", hs.body, before, hs.want)
				}
				if code != 1002 {
					t.Fatalf("close code %d", code)
				}
			}
		})

		// A MessagePack record that does not decode closes its connection
		// (a SignalR Close carrying the error, in MessagePack, then 1002)
		// and is counted; another connection is unaffected.
		t.Run("invalid MessagePack", func(t *testing.T) {
			before := n.metric(`edgeplane_closed_total{reason="protocol_error"}`)
			other := n.connect(t, "/chat")
			r := dialRaw(t, n.client)
			if code := r.upgrade("/chat"); code != 101 {
				t.Fatalf("upgrade: %d", code)
			}
			r.sendText(`{"protocol":"messagepack","version":1}` + "\x1e")
			if f, err := r.readFrame(5 * time.Second); err != nil || f.op != 0x2 || string(f.payload) != "{}\x1e" {
				t.Fatalf("handshake response op %x %q, %v; want {}␞ in a binary frame", f.op, f.payload, err)
			}
			r.write(frame(0x82, []byte{0x03, 0x93, 0x01, 0x80}, true)) // an Invocation of 3 items
			code, seen := r.expectClose(5 * time.Second)
			if code != 1002 || len(seen) < 3 || seen[1:3] != "\x93\x07" || !strings.Contains(seen, "Invocation has 3 items") || !strings.HasSuffix(seen, "\xc2") {
				t.Fatalf("close %d after %q, want 1002 after a MessagePack Close [7, error, false]", code, seen)
			}
			r.expectEOF(5 * time.Second)
			testutil.WaitUntil(t, 5*time.Second, "protocol error counted", func() bool {
				return n.metric(`edgeplane_closed_total{reason="protocol_error"}`) == before+1
			})
			other.sendText(`{"type":6}` + "\x1e")
			if _, err := other.readFrame(300 * time.Millisecond); err == nil {
				t.Fatal("the other connection got a frame")
			}
		})

		t.Run("http", func(t *testing.T) {
			cases := []struct {
				name, req string
				code      int
			}{
				{"malformed request line", "BLAH\r\n\r\n", 400},
				{"garbage header", "GET /chat HTTP/1.1\r\nHost x\r\n\r\n", 400},
				{"unknown hub negotiate", "POST /nope/negotiate HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 404},
				{"unknown hub connect", "GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 404},
				{"not an upgrade", "GET /chat HTTP/1.1\r\nHost: x\r\n\r\n", 400},
				{"bad websocket key", "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
				{"negotiate GET", "GET /chat/negotiate HTTP/1.1\r\nHost: x\r\n\r\n", 405},
				{"chunked body", "POST /chat/negotiate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411},
				{"huge header", "GET /chat HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 10000) + "\r\n\r\n", 431},
			}
			for _, tc := range cases {
				r := dialRaw(t, n.client)
				r.write([]byte(tc.req))
				resp, err := http.ReadResponse(bufio.NewReader(r.br), nil)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if resp.StatusCode != tc.code {
					t.Fatalf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.code)
				}
			}
		})

		t.Run("connection tokens", func(t *testing.T) {
			neg := n.negotiate(t, "chat", "")
			bad := neg.ConnectionToken[:len(neg.ConnectionToken)-2] + "AA"
			if code := dialRaw(t, n.client).upgrade("/chat?id=" + bad); code != 404 {
				t.Fatalf("tampered token: %d, want 404", code)
			}
			if code := dialRaw(t, n.client).upgrade("/chat?id=nonsense"); code != 404 {
				t.Fatalf("garbage token: %d, want 404", code)
			}
			r := n.connect(t, "/chat?id="+neg.ConnectionToken)
			if code := dialRaw(t, n.client).upgrade("/chat?id=" + neg.ConnectionToken); code != 409 {
				t.Fatalf("reused live token: %d, want 409", code)
			}
			r.c.Close()
			testutil.WaitUntil(t, 5*time.Second, "connection gone", func() bool {
				c, _ := n.api("HEAD", "/api/hubs/chat/connections/"+neg.ConnectionID, "", "")
				return c == 404
			})
			if code := dialRaw(t, n.client).upgrade("/chat?id=" + neg.ConnectionToken); code != 409 {
				t.Fatalf("reused token after disconnect: %d, want 409", code)
			}
		})

		// The bystander saw none of it and still receives.
		if c, body := n.api("POST", "/api/hubs/chat/:send", `{"target":"still","arguments":["here"]}`, ""); c != 202 {
			t.Fatalf("send: %d %s", c, body)
		}
		bystander.expectRecord(`"target":"still"`, 5*time.Second)
	})
}

func TestAccessKey(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		const key = "test-access-key-0123456789-abcdef"
		n := startNode(t, backend, "--access-key", key)
		if c := dialRaw(t, n.client).upgrade("/chat"); c != 401 {
			t.Fatalf("no token: %d, want 401", c)
		}
		wrong := clientToken(t, "other-key-0123456789-0123456789-x", n, "chat", map[string]any{"nameid": "alice"})
		if c := dialRaw(t, n.client).upgrade("/chat?access_token=" + wrong); c != 401 {
			t.Fatalf("wrong key: %d, want 401", c)
		}
		expired := clientToken(t, key, n, "chat", map[string]any{"nameid": "alice", "exp": time.Now().Add(-time.Hour).Unix()})
		if c := dialRaw(t, n.client).upgrade("/chat", "Authorization: Bearer "+expired); c != 401 {
			t.Fatalf("expired: %d, want 401", c)
		}
		noExp := token(t, key, map[string]any{"nameid": "alice", "aud": "http://" + n.client + "/chat", "exp": nil})
		if c := dialRaw(t, n.client).upgrade("/chat?access_token=" + noExp); c != 401 {
			t.Fatalf("no exp: %d, want 401", c)
		}
		good := clientToken(t, key, n, "chat", map[string]any{"nameid": "alice"})
		r := n.connect(t, "/chat?access_token="+good)
		r2 := n.connect(t, "/chat", "Authorization: Bearer "+clientToken(t, key, n, "chat", map[string]any{"sub": "alice"}))

		if c, _ := n.api("POST", "/api/hubs/chat/users/alice/:send", `{"target":"u","arguments":[]}`, ""); c != 401 {
			t.Fatalf("REST without token: %d, want 401", c)
		}
		if c, _ := n.api("POST", "/api/hubs/chat/users/alice/:send", `{"target":"u","arguments":[]}`, wrong); c != 401 {
			t.Fatalf("REST wrong token: %d, want 401", c)
		}
		// A client's access token is not a REST token (its audience is the hub).
		if c, b := n.api("POST", "/api/hubs/chat/users/alice/:send", `{"target":"u","arguments":[1]}`, good); c != 401 || !strings.Contains(b, "audience") {
			t.Fatalf("REST with a client token: %d %s, want 401", c, b)
		}
		if c, b := n.restAPI("POST", "/api/hubs/chat/users/alice/:send", `{"target":"u","arguments":[1]}`, key); c != 202 {
			t.Fatalf("REST: %d %s", c, b)
		}
		r.expectRecord(`"target":"u"`, 5*time.Second)
		r2.expectRecord(`"target":"u"`, 5*time.Second)
		if c, _ := n.restAPI("HEAD", "/api/hubs/chat/users/alice", "", key); c != 200 {
			t.Fatalf("HEAD user: %d", c)
		}
	})
}
