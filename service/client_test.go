package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/sdkfake"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/service"
)

func TestMain(m *testing.M) { testutil.Main(m) }

const key = "service-test-access-key-0123456789abcdef"

// startNode starts a node in service mode with hub "chathub" (the SDK's
// name for a ChatHub class).
func startNode(t *testing.T, sc service.Config) *node.Node {
	t.Helper()
	return startNodeConn(t, sc, conn.Config{})
}

func startNodeConn(t *testing.T, sc service.Config, cc conn.Config) *node.Node {
	t.Helper()
	cc.AccessKey = key
	return nodetest.Start(t, node.Config{Hubs: []node.Hub{{Name: "chathub"}}, Service: &sc, Conn: cc})
}

// startApp starts a fake app server on n and waits for its connections.
func startApp(t testing.TB, n *node.Node, c sdkfake.Config) (*sdkfake.App, string) {
	t.Helper()
	c.Endpoint = "http://" + n.Addr().String()
	if c.AccessKey == "" {
		c.AccessKey = key
	}
	a, err := sdkfake.Start(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := c.ConnectionsPerHub
	if want == 0 {
		want = 5
	}
	if err := a.WaitConnected(ctx, want); err != nil {
		t.Fatal(err)
	}
	base, err := a.ListenNegotiate("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return a, base
}

// client is a SignalR JSON client doing what @microsoft/signalr does
// with a negotiate redirect: negotiate with the app, then with the URL
// and token it got, then the WebSocket.
type client struct {
	t     *testing.T
	ws    *websocket.Conn
	id    string
	mu    sync.Mutex
	recs  []map[string]any
	done  chan struct{}
	close *websocket.CloseError
	next  int
}

var hc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func post(t testing.TB, u, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// connect connects a client of hub (class name) through the app's
// negotiate at base, as user.
func connect(t *testing.T, base, hub, user string) *client {
	t.Helper()
	u, tok, id := redirect(t, base, hub, user, nil)
	return dial(t, u, tok, id)
}

// redirect negotiates with the app at base as user, then with the node,
// and returns the WebSocket URL, the access token and the connection id.
// A non-nil at gets the app's redirect instead of the node it names (as a
// balanced endpoint would send it): the token names the app's node's
// host, which is the same 127.0.0.1.
func redirect(t testing.TB, base, hub, user string, at *node.Node) (string, string, string) {
	t.Helper()
	code, body := post(t, base+"/"+hub+"/negotiate?negotiateVersion=1&user="+url.QueryEscape(user), "")
	var r struct {
		URL         string `json:"url"`
		AccessToken string `json:"accessToken"`
	}
	if err := json.Unmarshal(body, &r); err != nil || code != 200 || r.URL == "" {
		t.Fatalf("app negotiate: %d %s", code, body)
	}
	u, _ := url.Parse(r.URL)
	if at != nil {
		u.Host = at.Addr().String()
	}
	nu := *u
	nu.Path += "negotiate"
	code, body = post(t, nu.String(), r.AccessToken)
	var neg struct {
		ConnectionID    string `json:"connectionId"`
		ConnectionToken string `json:"connectionToken"`
	}
	if err := json.Unmarshal(body, &neg); err != nil || code != 200 {
		t.Fatalf("edge negotiate %s: %d %s", nu.String(), code, body)
	}
	wu := *u
	wu.Scheme = "ws"
	wu.RawQuery += "&id=" + url.QueryEscape(neg.ConnectionToken)
	return wu.String(), r.AccessToken, neg.ConnectionID
}

// dialWS opens the WebSocket at u with the access token tok.
func dialWS(t testing.TB, u, tok string) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		if resp != nil {
			t.Fatalf("dial %s: %v (HTTP %d %s)", u, err, resp.StatusCode, resp.Header.Get(conn.ErrorHeader))
		}
		t.Fatalf("dial %s: %v", u, err)
	}
	return ws
}

// dial opens the WebSocket and does the JSON handshake.
func dial(t *testing.T, u, tok, id string) *client {
	t.Helper()
	ws := dialWS(t, u, tok)
	c := &client{t: t, ws: ws, id: id, done: make(chan struct{})}
	t.Cleanup(func() { ws.Close(); <-c.done })
	ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e"))
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, hs, err := ws.ReadMessage()
	if err != nil || string(hs) != "{}\x1e" {
		t.Fatalf("handshake response %q, %v", hs, err)
	}
	ws.SetReadDeadline(time.Time{})
	go c.read()
	return c
}

// ended keeps the close frame, if err is one, of a client whose read
// failed.
func (c *client) ended(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ce, ok := err.(*websocket.CloseError); ok {
		c.close = ce
	}
}

func (c *client) read() {
	defer close(c.done)
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			c.ended(err)
			return
		}
		for _, rec := range bytes.Split(msg, []byte{0x1e}) {
			if len(rec) == 0 {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(rec, &m); err != nil {
				c.t.Errorf("client %s: bad record %q", c.id, rec)
				continue
			}
			c.mu.Lock()
			c.recs = append(c.recs, m)
			c.mu.Unlock()
		}
	}
}

func (c *client) send(rec string) {
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(rec+"\x1e")); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// invoke calls a hub method and waits for its completion.
func (c *client) invoke(target string, args ...any) map[string]any {
	c.t.Helper()
	c.mu.Lock()
	c.next++
	id := fmt.Sprint(c.next)
	c.mu.Unlock()
	a, _ := json.Marshal(args)
	if args == nil {
		a = []byte("[]")
	}
	c.send(fmt.Sprintf(`{"type":1,"invocationId":%q,"target":%q,"arguments":%s}`, id, target, a))
	return c.wait("completion "+id, func(m map[string]any) bool { return m["type"] == 3.0 && m["invocationId"] == id })
}

// wait waits for a record match accepts.
func (c *client) wait(what string, match func(map[string]any) bool) map[string]any {
	c.t.Helper()
	var found map[string]any
	testutil.WaitUntil(c.t, 10*time.Second, what, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, m := range c.recs {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// messages lists the first arguments of the invocations of target
// received, in order.
func (c *client) messages(target string) []any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []any
	for _, m := range c.recs {
		if m["type"] == 1.0 && m["target"] == target {
			args, _ := m["arguments"].([]any)
			if len(args) > 0 {
				out = append(out, args[0])
			} else {
				out = append(out, nil)
			}
		}
	}
	return out
}

func (c *client) closed() *websocket.CloseError {
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatal("client not closed")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.close
}
