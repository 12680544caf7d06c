package sdkfake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgeplane/edgeplane/internal/serviceproto"
)

// ErrNotActive is the SDK's ServiceConnectionNotActiveException: no
// connected server connection to write on.
var ErrNotActive = errors.New("sdkfake: the connection is not active, data cannot be sent to the service")

// serverConn is one server connection (ServiceConnectionBase +
// ServiceConnection): one slot of its hub, reconnected by run.
type serverConn struct {
	hr   *hubRuntime
	slot int
	cid  string // the connection id in its URL (a GUID per attempt)

	ws     *websocket.Conn
	split  serviceproto.Splitter // the service's stream, from the handshake on
	early  [][]byte              // bodies that came with the handshake response
	out    chan []byte           // framed messages for the writer
	done   chan struct{}
	closed sync.Once

	connected atomic.Bool
	errMsg    atomic.Pointer[string] // a ServiceError stops writes
	lastRecv  atomic.Int64           // unix nanos
	lastPing  atomic.Int64           // unix nanos of the last ping sent
	pinging   atomic.Bool

	mu      sync.Mutex
	clients map[string]*client // clients this connection hosts
	// Stats for tests.
	Sent, Received atomic.Int64
}

// run keeps slot connected until the app stops: connect, serve, clean up
// the clients, wait the back-off, again.
func (hr *hubRuntime) run(slot int) {
	defer hr.app.wg.Done()
	ctx := hr.app.ctx
	for attempt := 0; ctx.Err() == nil; {
		sc := &serverConn{hr: hr, slot: slot, cid: newGUID(), out: make(chan []byte, 4096),
			done: make(chan struct{}), clients: map[string]*client{}}
		err := sc.connect(ctx)
		if err == nil {
			attempt = 0
			hr.setSlot(slot, sc)
			sc.serve(ctx)
			hr.setSlot(slot, nil)
		} else if ctx.Err() == nil {
			hr.app.log.Info("sdkfake: server connection failed", "hub", hr.name, "slot", slot, "err", err)
		}
		if ctx.Err() != nil {
			return
		}
		d := hr.app.cfg.RetryDelay(attempt)
		attempt++
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// connect dials the service and completes the handshake
// (ServiceConnectionBase.EstablishConnectionAsync, HandshakeAsync).
func (sc *serverConn) connect(ctx context.Context) error {
	a := sc.hr.app
	h := http.Header{}
	h.Set("Authorization", "Bearer "+a.signToken(a.audience("server", sc.hr.name),
		[]serviceproto.Claim{{Type: serviceproto.ClaimNameIdentifier, Value: a.cfg.ServerID}}, time.Now()))
	h.Set("X-ASRS-Server-Id", a.cfg.ServerID)
	h.Set("Asrs-User-Agent", "Microsoft.Azure.SignalR/1.34.0 (sdkfake; Go)")
	h.Set("X-Requested-With", "XMLHttpRequest")
	dctx, cancel := context.WithTimeout(ctx, a.cfg.HandshakeTimeout)
	defer cancel()
	ws, resp, err := websocket.DefaultDialer.DialContext(dctx, a.serverURL(sc.hr.name, sc.cid), h)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("connect: %w (HTTP %d)", err, resp.StatusCode)
		}
		return fmt.Errorf("connect: %w", err)
	}
	sc.ws = ws
	req := &serviceproto.HandshakeRequest{Version: serviceproto.Version, ConnectionType: a.cfg.ConnectionType,
		MigrationLevel: a.cfg.MigrationLevel, AllowStatefulReconnects: a.cfg.AllowStatefulReconnects}
	if err := ws.WriteMessage(websocket.BinaryMessage, serviceproto.Frame(req)); err != nil {
		ws.Close()
		return fmt.Errorf("send handshake: %w", err)
	}
	// The response is read from the stream; what follows it in the same
	// WebSocket message is kept for serve.
	ws.SetReadDeadline(time.Now().Add(a.cfg.HandshakeTimeout))
	var first serviceproto.Message
	for first == nil {
		_, data, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return fmt.Errorf("waiting for the handshake response: %w", err)
		}
		if err := sc.split.Feed(data, func(body []byte) error {
			if first != nil {
				sc.early = append(sc.early, bytes.Clone(body))
				return nil
			}
			m, err := serviceproto.Parse(body)
			first = m
			return err
		}); err != nil {
			ws.Close()
			return fmt.Errorf("handshake: %w", err)
		}
	}
	hs, ok := first.(*serviceproto.HandshakeResponse)
	if !ok {
		ws.Close()
		return fmt.Errorf("handshake: %s received when waiting for handshake response", first.Type())
	}
	if hs.ErrorMessage != "" {
		ws.Close()
		return fmt.Errorf("handshake failed: %s", hs.ErrorMessage)
	}
	ws.SetReadDeadline(time.Time{})
	return nil
}

// serve runs the connection until it drops or the app stops, then drops
// its clients (CleanupClientConnections: the service does the same).
func (sc *serverConn) serve(ctx context.Context) {
	a := sc.hr.app
	now := time.Now().UnixNano()
	sc.lastRecv.Store(now)
	sc.lastPing.Store(now)
	sc.connected.Store(true)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sc.writeLoop() }()
	go func() { defer wg.Done(); sc.keepAlive(ctx) }()
	sc.readLoop()
	sc.connected.Store(false)
	sc.close()
	wg.Wait()
	sc.mu.Lock()
	clients := sc.clients
	sc.clients = map[string]*client{}
	sc.mu.Unlock()
	for _, c := range clients {
		c.end(nil, false) // the service drops them too: nothing to tell it
	}
	a.log.Debug("sdkfake: server connection closed", "hub", sc.hr.name, "slot", sc.slot)
}

func (sc *serverConn) close() {
	sc.closed.Do(func() {
		close(sc.done)
		sc.ws.Close()
	})
}

// Kill closes the connection's socket at once, as a crashed process or
// a cut network would.
func (sc *serverConn) Kill() { sc.close() }

// readLoop parses the service's stream and dispatches each message in
// order (ProcessIncomingAsync). Anything received counts as life, and
// triggers the app's ping if its last was KeepAliveInterval ago.
func (sc *serverConn) readLoop() {
	for _, body := range sc.early {
		if sc.handle(body) != nil {
			return
		}
	}
	sc.early = nil
	for {
		_, data, err := sc.ws.ReadMessage()
		if err != nil {
			return
		}
		sc.lastRecv.Store(time.Now().UnixNano())
		sc.trySendPing()
		if err := sc.split.Feed(data, sc.handle); err != nil {
			return
		}
	}
}

// handle parses and dispatches one message body. A message that does not
// parse is logged and skipped: the SDK logs ErrorProcessingMessages and
// reads on (the parser has already moved past it).
func (sc *serverConn) handle(body []byte) error {
	m, err := serviceproto.Parse(body)
	if err != nil {
		sc.hr.app.log.Warn("sdkfake: bad data from the service", "hub", sc.hr.name, "err", err)
		sc.hr.badMessages.Add(1)
		return nil
	}
	sc.Received.Add(1)
	sc.dispatch(m)
	return nil
}

// keepAlive drops the connection when nothing was received for
// ServiceTimeout (checked every KeepAliveInterval).
func (sc *serverConn) keepAlive(ctx context.Context) {
	a := sc.hr.app
	t := time.NewTicker(a.cfg.KeepAliveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sc.close()
			return
		case <-sc.done:
			return
		case <-t.C:
			if time.Since(time.Unix(0, sc.lastRecv.Load())) > a.cfg.ServiceTimeout {
				a.log.Info("sdkfake: service timeout", "hub", sc.hr.name, "slot", sc.slot)
				sc.close()
				return
			}
		}
	}
}

// trySendPing sends the app's keep-alive with its client counts when the
// last one went KeepAliveInterval ago (TrySendPingAsync; the ASP.NET Core
// SDK's ping is ["#clientInHub", n, "#client", m]).
func (sc *serverConn) trySendPing() {
	if time.Since(time.Unix(0, sc.lastPing.Load())) <= sc.hr.app.cfg.KeepAliveInterval {
		return
	}
	sc.lastPing.Store(time.Now().UnixNano())
	sc.mu.Lock()
	mine := len(sc.clients)
	sc.mu.Unlock()
	sc.writeFrame(serviceproto.Frame(&serviceproto.Ping{Messages: []string{
		serviceproto.PingClientsInHub, fmt.Sprint(sc.hr.clientCount()),
		serviceproto.PingClientsOnConnection, fmt.Sprint(mine)}}))
}

// write sends m (SafeWriteAsync): an error when the connection is not
// connected or a ServiceError stopped it.
func (sc *serverConn) write(m serviceproto.Message) error {
	if !sc.connected.Load() || sc.errMsg.Load() != nil {
		return ErrNotActive
	}
	if !sc.writeFrame(serviceproto.Frame(m)) {
		return ErrNotActive
	}
	return nil
}

func (sc *serverConn) writeFrame(f []byte) bool {
	select {
	case sc.out <- f:
		sc.Sent.Add(1)
		return true
	case <-sc.done:
		return false
	}
}

// writeLoop writes what is queued, batched as a pipe would flush it, cut
// into WebSocket messages of WriteChunk bytes if set.
func (sc *serverConn) writeLoop() {
	chunk := sc.hr.app.cfg.WriteChunk
	var buf []byte
	for {
		select {
		case <-sc.done:
			return
		case f := <-sc.out:
			buf = append(buf[:0], f...)
		more:
			for len(buf) < 64<<10 {
				select {
				case f := <-sc.out:
					buf = append(buf, f...)
				default:
					break more
				}
			}
			for off := 0; off < len(buf); {
				end := len(buf)
				if chunk > 0 {
					end = min(off+chunk, len(buf))
				}
				if err := sc.ws.WriteMessage(websocket.BinaryMessage, buf[off:end]); err != nil {
					sc.close()
					return
				}
				off = end
			}
		}
	}
}

// dispatch handles one message from the service (DispatchMessageAsync of
// ServiceConnection and ServiceConnectionBase).
func (sc *serverConn) dispatch(m serviceproto.Message) {
	hr := sc.hr
	switch m := m.(type) {
	case *serviceproto.OpenConnection:
		hr.openClient(sc, m)
	case *serviceproto.CloseConnection:
		if c := hr.client(m.ConnectionID); c != nil {
			c.end(nil, false) // the service closed it: no CloseConnection back
		}
	case *serviceproto.ConnectionData:
		if c := hr.client(m.ConnectionID); c != nil {
			c.received(m.Payload)
		}
	case *serviceproto.Ping:
		sc.onPing(m)
	case *serviceproto.Ack:
		hr.acks.trigger(m.AckID, m.Status)
	case *serviceproto.ServiceError:
		if m.ErrorMessage != "" {
			msg := m.ErrorMessage
			sc.errMsg.Store(&msg)
			sc.connected.Store(false)
		}
	case *serviceproto.ClientInvocation:
		hr.results.route(m.InvocationID, m.ConnectionID, m.CallerServerID)
	case *serviceproto.ClientCompletion:
		hr.results.completeRouted(m)
	case *serviceproto.ErrorCompletion:
		hr.results.fail(m.InvocationID, m.Error)
	case *serviceproto.ServiceMapping:
		hr.results.mapped(m.InvocationID, m.InstanceID)
	case *serviceproto.ServiceEvent:
		hr.app.log.Info("sdkfake: service event", "type", m.ObjectType, "id", m.ID, "kind", m.Kind, "message", m.Message)
	}
	hr.record(m)
}

// onPing answers the pings the SDK answers (OnPingMessageAsync): echo is
// written back; offline drops the clients of that instance; the rest is
// recorded.
func (sc *serverConn) onPing(p *serviceproto.Ping) {
	if _, ok := p.Get(serviceproto.PingEcho); ok {
		sc.write(p)
		return
	}
	if inst, ok := p.Get(serviceproto.PingOffline); ok {
		sc.hr.results.offline(inst)
		sc.mu.Lock()
		var gone []*client
		for _, c := range sc.clients {
			if c.instanceID == inst {
				gone = append(gone, c)
			}
		}
		sc.mu.Unlock()
		for _, c := range gone {
			c.end(nil, false)
		}
	}
}
