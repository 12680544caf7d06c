package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/node"
)

// Helpers shared by the contract test and the Management-SDK-shaped
// client test: real SignalR clients (negotiate, WebSocket, JSON
// handshake) on a running node, with access tokens from the REST API's
// :generateToken.

// restURL is the node's REST base URL.
func restURL(n *node.Node) string { return "http://" + n.AdminAddr().String() }

// restRequest makes a REST request signed for its URL with key (none
// without a key).
func restRequest(t *testing.T, key, method, u, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if key != "" {
		pu, _ := url.Parse(u)
		tok, err := auth.Sign(map[string]any{"aud": "http://" + pu.Host + pu.Path, "exp": time.Now().Add(time.Minute).Unix()}, []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// client is a SignalR client connected to a node.
type client struct {
	t      *testing.T
	ws     *websocket.Conn
	id     string
	user   string
	binary bool // MessagePack hub protocol

	mu     sync.Mutex
	got    []string // invocation targets + arguments, "target:args" (MessagePack arguments as JSON)
	raw    []string // the invocation records as received (MessagePack: without the VarInt length)
	closed string   // the Close message's error, once received
	done   chan struct{}
}

// connect opens a SignalR connection to hub on n as user ("" anonymous),
// with an access token from :generateToken signed with key.
func connect(t *testing.T, n *node.Node, key, hub, user string) *client {
	t.Helper()
	return connectWith(t, n, key, hub, user, "json", false)
}

// connectWith is connect with a hub protocol ("json", "messagepack") and,
// with clientEndpoint, through Azure's client endpoints
// (/client/negotiate?hub=, /client/?hub=) rather than the hub's path.
func connectWith(t *testing.T, n *node.Node, key, hub, user, protocol string, clientEndpoint bool) *client {
	t.Helper()
	q := url.Values{"api-version": {"2023-07-01"}}
	if user != "" {
		q.Set("userId", user)
	}
	resp, body := restRequest(t, key, "POST", restURL(n)+"/api/hubs/"+hub+"/:generateToken?"+q.Encode(), "", nil)
	var tok struct{ Token string }
	if resp.StatusCode != 200 || json.Unmarshal(body, &tok) != nil {
		t.Fatalf(":generateToken: %d %s", resp.StatusCode, body)
	}
	hdr := http.Header{"Authorization": {"Bearer " + tok.Token}}
	negotiateURL, connectURL := "/"+hub+"/negotiate?negotiateVersion=1", "/"+hub+"?"
	if clientEndpoint {
		h := url.QueryEscape(strings.ToLower(hub))
		negotiateURL, connectURL = "/client/negotiate?hub="+h+"&negotiateVersion=1", "/client/?hub="+h+"&"
	}
	req, _ := http.NewRequest("POST", "http://"+n.Addr().String()+negotiateURL, nil)
	req.Header = hdr.Clone()
	nresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var neg struct{ ConnectionID, ConnectionToken string }
	err = json.NewDecoder(nresp.Body).Decode(&neg)
	nresp.Body.Close()
	if err != nil || neg.ConnectionToken == "" {
		t.Fatalf("negotiate: %d %v", nresp.StatusCode, err)
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.Addr().String()+connectURL+"id="+url.QueryEscape(neg.ConnectionToken), hdr)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"`+protocol+`","version":1}`+"\x1e")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "{}\x1e" {
		t.Fatalf("handshake: %q %v", msg, err)
	}
	ws.SetReadDeadline(time.Time{})
	c := &client{t: t, ws: ws, id: neg.ConnectionID, user: user, binary: protocol == "messagepack", done: make(chan struct{})}
	go c.read()
	return c
}

func (c *client) read() {
	defer close(c.done)
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		if c.binary {
			hubproto.MessagePack.Split(msg, func(rec []byte) error {
				m, err := hubproto.MessagePack.Parse(rec)
				if err != nil {
					return nil
				}
				c.mu.Lock()
				defer c.mu.Unlock()
				switch m.Type {
				case hubproto.TypeInvocation:
					args, err := hubproto.MessagePackToJSON(nil, m.Arguments)
					if err != nil {
						args = []byte("!" + err.Error())
					}
					c.got = append(c.got, m.Target+":"+string(args))
					c.raw = append(c.raw, string(rec))
				case hubproto.TypeClose:
					c.closed = "(closed)"
				}
				return nil
			})
			continue
		}
		for _, rec := range strings.Split(strings.TrimSuffix(string(msg), "\x1e"), "\x1e") {
			var m struct {
				Type      int             `json:"type"`
				Target    string          `json:"target"`
				Arguments json.RawMessage `json:"arguments"`
				Error     string          `json:"error"`
			}
			if json.Unmarshal([]byte(rec), &m) != nil {
				continue
			}
			c.mu.Lock()
			switch m.Type {
			case 1:
				c.got = append(c.got, m.Target+":"+string(m.Arguments))
				c.raw = append(c.raw, rec+"\x1e")
			case 7:
				c.closed = m.Error
				if c.closed == "" {
					c.closed = "(no error)"
				}
			}
			c.mu.Unlock()
		}
	}
}

// records is what the client received of target: the invocation records
// as they came.
func (c *client) records(target string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i, g := range c.got {
		if strings.HasPrefix(g, target+":") {
			out = append(out, c.raw[i])
		}
	}
	return out
}

// has reports whether the client received an invocation target:args.
func (c *client) has(msg string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.got {
		if g == msg {
			return true
		}
	}
	return false
}

func (c *client) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

// closeReason is the Close message's error ("" before one arrived).
func (c *client) closeReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// gone reports whether the connection ended.
func (c *client) gone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}
