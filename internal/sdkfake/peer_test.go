package sdkfake

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgeplane/edgeplane/internal/serviceproto"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// peer is a minimal service for testing the fake: it accepts server
// connections, records their requests and messages, and answers only
// what a test tells it to.
type peer struct {
	t     *testing.T
	srv   *httptest.Server
	conns chan *peerConn
	mu    sync.Mutex
	// handshake is the answer to a HandshakeRequest; nil: none.
	handshake serviceproto.Message
}

func (p *peer) setHandshake(m serviceproto.Message) {
	p.mu.Lock()
	p.handshake = m
	p.mu.Unlock()
}

func (p *peer) handshakeAnswer() serviceproto.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.handshake
}

type peerConn struct {
	req *http.Request
	ws  *websocket.Conn
	raw [][]byte // WebSocket messages as received
	mu  sync.Mutex
	in  []serviceproto.Message
	wmu sync.Mutex
	// ready is closed once the handshake was answered.
	ready chan struct{}
}

func newPeer(t *testing.T) *peer {
	p := &peer{t: t, conns: make(chan *peerConn, 64), handshake: &serviceproto.HandshakeResponse{}}
	up := websocket.Upgrader{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		pc := &peerConn{req: r, ws: ws, ready: make(chan struct{})}
		p.conns <- pc
		var split serviceproto.Splitter
		first := true
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			pc.mu.Lock()
			pc.raw = append(pc.raw, bytes.Clone(data))
			pc.mu.Unlock()
			if err := split.Feed(data, func(body []byte) error {
				m, err := serviceproto.Parse(body)
				if err != nil {
					t.Errorf("peer: the fake sent a bad message: %v", err)
					return err
				}
				pc.mu.Lock()
				pc.in = append(pc.in, m)
				pc.mu.Unlock()
				if hs := p.handshakeAnswer(); first && hs != nil {
					pc.send(hs)
					close(pc.ready)
				}
				first = false
				return nil
			}); err != nil {
				return
			}
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (pc *peerConn) send(ms ...serviceproto.Message) {
	var b []byte
	for _, m := range ms {
		b = serviceproto.AppendFrame(b, m)
	}
	pc.wmu.Lock()
	defer pc.wmu.Unlock()
	pc.ws.WriteMessage(websocket.BinaryMessage, b)
}

func (pc *peerConn) messages() []serviceproto.Message {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return append([]serviceproto.Message(nil), pc.in...)
}

// wait waits for a message that match accepts, and returns it.
func (pc *peerConn) wait(t *testing.T, what string, match func(serviceproto.Message) bool) serviceproto.Message {
	t.Helper()
	var found serviceproto.Message
	testutil.WaitUntil(t, 5*time.Second, what, func() bool {
		for _, m := range pc.messages() {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

func (p *peer) accept(t *testing.T) *peerConn {
	t.Helper()
	select {
	case pc := <-p.conns:
		return pc
	case <-time.After(5 * time.Second):
		t.Fatal("no server connection came")
		return nil
	}
}

// ready accepts a connection and waits until its handshake is answered.
func (p *peer) ready(t *testing.T) *peerConn {
	t.Helper()
	pc := p.accept(t)
	select {
	case <-pc.ready:
	case <-time.After(5 * time.Second):
		t.Fatal("no handshake")
	}
	return pc
}

// fast shortens the SDK's timings for tests that wait on them.
func fast(c Config) Config {
	c.RetryDelay = func(int) time.Duration { return 20 * time.Millisecond }
	return c
}
