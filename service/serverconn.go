package service

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeplane/edgeplane/internal/serviceproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
	"github.com/edgeplane/edgeplane/poller"
)

// inboxSlots bounds the chunks waiting for a server connection's
// goroutine (InboxBytes bounds their bytes). The channel's buffer is
// allocated up front, 24 B a slot: 1,024 slots are 24 KiB per server
// connection (an app holds five per hub), where 4,096 made a node in
// service mode cost ~20 B more per client at 19,000 clients.
const inboxSlots = 1024

// Server connection states.
const (
	scHandshake uint32 = iota // upgraded, waiting for the HandshakeRequest
	scOpen                    // handshake answered: in its hub
	scClosed
)

// serverConn is one app server connection: a conn.ServerSession. The
// event loop parses its WebSocket frames and queues their payloads (the
// service-protocol byte stream) to the connection's goroutine, which
// splits, parses and dispatches the messages: a broadcast to many
// clients never holds an event loop, and the app's messages are handled
// in order. One goroutine per server connection: an app server has five
// per hub.
type serverConn struct {
	s        *Service
	h        *hub
	pc       poller.Conn
	serverID string
	cid      string
	typ      serviceproto.ConnectionType

	state    atomic.Uint32
	opened   time.Time
	lastRecv atomic.Int64 // unix nanoseconds
	lastPing atomic.Int64
	draining atomic.Bool  // the app server shuts down: no new clients
	hosted   atomic.Int64 // clients it hosts
	slot     uint8        // its index in hub.slots (0: none); set in join

	// Event loop only.
	partial []byte // an incomplete frame

	inbox  chan []byte
	queued atomic.Int64 // bytes in inbox

	outMu        sync.Mutex
	backlog      [][]byte // frames waiting for room in the poller's queue
	backlogBytes int
	kick         chan struct{} // the backlog became non-empty
	split        serviceproto.Splitter
	done         chan struct{}
	once         sync.Once
	why          atomic.Pointer[string] // why the service closed it
}

// Start implements conn.ServerSession.
func (sc *serverConn) Start(pc poller.Conn) {
	sc.pc = pc
	sc.opened = time.Now()
	sc.lastRecv.Store(sc.opened.UnixNano())
	sc.split.MaxMessageBytes = sc.s.cfg.MaxMessageBytes
	sc.s.track(sc, true)
	sc.s.wg.Add(1)
	go sc.run()
}

// OnData implements poller.Session: WebSocket frames in; their payloads,
// whatever the message boundaries, are the service-protocol stream.
func (sc *serverConn) OnData(data []byte) {
	if sc.state.Load() == scClosed {
		return
	}
	sc.lastRecv.Store(time.Now().UnixNano())
	buf := data
	if len(sc.partial) > 0 {
		sc.partial = append(sc.partial, data...)
		buf = sc.partial
	}
	n, err := sc.frames(buf)
	if err != nil {
		var pe *wsframe.ProtocolError
		code, text := wsframe.CloseProtocolError, err.Error()
		if errors.As(err, &pe) {
			code, text = pe.Code, pe.Reason
		}
		sc.fail("protocol_error", code, text)
		sc.partial = nil
		return
	}
	rest := buf[n:]
	switch {
	case len(rest) == 0:
		sc.partial = nil
	case len(sc.partial) > 0:
		sc.partial = sc.partial[:copy(sc.partial, rest)]
	default:
		sc.partial = append([]byte(nil), rest...)
	}
}

// frames consumes the complete frames at the start of b.
func (sc *serverConn) frames(b []byte) (int, error) {
	max := int64(2 * sc.s.cfg.MaxMessageBytes)
	off := 0
	for off < len(b) && sc.state.Load() != scClosed {
		h, hn, err := wsframe.ParseHeader(b[off:], max)
		if err != nil {
			return off, err
		}
		if hn == 0 || int64(len(b)-off-hn) < h.Length {
			return off, nil
		}
		payload := b[off+hn : off+hn+int(h.Length)]
		wsframe.Unmask(payload, h.Mask)
		switch h.Op {
		case wsframe.OpBinary, wsframe.OpContinuation:
			if len(payload) > 0 && !sc.enqueue(payload) {
				return off, nil
			}
		case wsframe.OpText:
			return off, &wsframe.ProtocolError{Code: wsframe.CloseUnsupported, Reason: "the service protocol is binary"}
		case wsframe.OpPing:
			sc.pc.Send(wsframe.AppendFrame(nil, wsframe.OpPong, payload))
		case wsframe.OpClose:
			code, _, err := wsframe.ParseClosePayload(payload)
			if err != nil {
				return off, err
			}
			if code == wsframe.CloseNoStatus {
				code = wsframe.CloseNormal
			}
			sc.shutdown("app_close", wsframe.AppendCloseFrame(nil, code, ""))
			return len(b), nil
		}
		off += hn + int(h.Length)
	}
	return off, nil
}

// enqueue copies a payload to the goroutine's inbox; an app server more
// than InboxBytes ahead of its processing is closed.
func (sc *serverConn) enqueue(p []byte) bool {
	if sc.queued.Add(int64(len(p))) > int64(sc.s.cfg.InboxBytes) {
		sc.fail("inbox_full", wsframe.ClosePolicyViolation, "the app server sends faster than the service processes")
		return false
	}
	select {
	case sc.inbox <- append([]byte(nil), p...):
		return true
	default:
		sc.fail("inbox_full", wsframe.ClosePolicyViolation, "the app server sends faster than the service processes")
		return false
	}
}

// run processes the stream until the connection closes, and drains the
// outbound backlog.
func (sc *serverConn) run() {
	defer sc.s.wg.Done()
	var retry <-chan time.Time
	for {
		select {
		case <-sc.done:
			return
		case <-sc.kick:
			retry = time.After(time.Millisecond)
		case <-retry:
			retry = nil
			if sc.flushBacklog() {
				retry = time.After(5 * time.Millisecond)
			}
		case b := <-sc.inbox:
			sc.queued.Add(-int64(len(b)))
			if sc.state.Load() == scClosed {
				continue
			}
			if err := sc.split.Feed(b, sc.handle); err != nil {
				var ce *closeError
				if errors.As(err, &ce) {
					sc.fail(ce.label, ce.code, ce.text)
				} else {
					sc.fail("protocol_error", wsframe.CloseProtocolError, err.Error())
				}
			}
		}
	}
}

// closeError ends a connection from handle.
type closeError struct {
	label string
	code  wsframe.CloseCode
	text  string
}

func (e *closeError) Error() string { return e.text }

// handle parses one message and dispatches it. A message that does not
// parse closes the connection (1002): its stream can no longer be
// trusted.
func (sc *serverConn) handle(body []byte) error {
	m, err := serviceproto.Parse(body)
	if err != nil {
		return err
	}
	sc.s.M.messageIn(m.Type())
	if sc.state.Load() == scHandshake {
		return sc.handshake(m)
	}
	sc.dispatch(m)
	return nil
}

// handshake answers the HandshakeRequest: version 1, a known connection
// type. The connection then joins its hub.
func (sc *serverConn) handshake(m serviceproto.Message) error {
	req, ok := m.(*serviceproto.HandshakeRequest)
	if !ok {
		sc.s.M.handshakes("bad_request").Inc()
		return &closeError{"handshake_error", wsframe.CloseProtocolError, fmt.Sprintf("%s received before the HandshakeRequest", m.Type())}
	}
	var refuse string
	switch {
	case req.Version != serviceproto.Version:
		refuse = fmt.Sprintf("Protocol version %d is not supported, only %d.", req.Version, serviceproto.Version)
	case req.ConnectionType < serviceproto.ConnectionDefault || req.ConnectionType > serviceproto.ConnectionWeak:
		refuse = fmt.Sprintf("Connection type %d is not supported.", req.ConnectionType)
	}
	if refuse != "" {
		sc.s.M.handshakes("refused").Inc()
		sc.send(&serviceproto.HandshakeResponse{ErrorMessage: refuse})
		return &closeError{"handshake_error", wsframe.CloseNormal, refuse}
	}
	sc.typ = req.ConnectionType
	sc.send(&serviceproto.HandshakeResponse{})
	if !sc.state.CompareAndSwap(scHandshake, scOpen) {
		return nil
	}
	sc.lastPing.Store(time.Now().UnixNano())
	sc.h.join(sc)
	sc.s.M.handshakes("ok").Inc()
	sc.s.log.Debug("app server connected", "hub", sc.h.name, "server", sc.serverID, "type", req.ConnectionType, "cid", sc.cid)
	return nil
}

// tick runs on the service's ticker: the handshake deadline, the
// keep-alive Ping, the silence time-out.
func (sc *serverConn) tick(now time.Time) {
	cfg := &sc.s.cfg
	switch sc.state.Load() {
	case scHandshake:
		if now.Sub(sc.opened) > cfg.HandshakeTimeout {
			sc.s.M.handshakes("timeout").Inc()
			sc.fail("handshake_timeout", wsframe.ClosePolicyViolation, "no HandshakeRequest in time")
		}
	case scOpen:
		if now.Sub(time.Unix(0, sc.lastRecv.Load())) > cfg.ServerTimeout {
			sc.fail("timeout", wsframe.CloseNormal, "the app server sent nothing for too long")
			return
		}
		if now.Sub(time.Unix(0, sc.lastPing.Load())) >= cfg.PingInterval {
			sc.lastPing.Store(now.UnixNano())
			sc.sendFrame(pingFrame)
		}
	}
}

// pingFrame is the service's keep-alive Ping ([3]), framed once.
var pingFrame = wsframe.BinaryFrame(serviceproto.Frame(&serviceproto.Ping{}))

// send queues one message.
func (sc *serverConn) send(m serviceproto.Message) bool {
	return sc.sendFrame(wsframe.BinaryFrame(serviceproto.Frame(m)))
}

// sendMany queues messages in one WebSocket frame.
func (sc *serverConn) sendMany(ms ...serviceproto.Message) bool {
	var b []byte
	for _, m := range ms {
		b = serviceproto.AppendFrame(b, m)
	}
	return sc.sendFrame(wsframe.BinaryFrame(b))
}

// sendFrame queues a WebSocket frame. A server connection carries many
// clients' traffic, so a full poller queue (sized for one client) does
// not close it at once: frames wait in the connection's backlog, in
// order, up to BacklogBytes, and the connection's goroutine moves them
// to the socket as it drains. An app server that lets the backlog fill
// does not read, and is closed: it would hold every client it hosts.
func (sc *serverConn) sendFrame(f []byte) bool {
	sc.outMu.Lock()
	defer sc.outMu.Unlock()
	if len(sc.backlog) == 0 {
		err := sc.pc.Send(f)
		if err == nil {
			sc.s.M.bytesOut.Add(len(f))
			return true
		}
		if !errors.Is(err, poller.ErrQueueFull) {
			return false
		}
	}
	if sc.backlogBytes+len(f) > sc.s.cfg.BacklogBytes {
		sc.backlog, sc.backlogBytes = nil, 0
		sc.fail("slow_server", wsframe.ClosePolicyViolation, "the app server does not read")
		return false
	}
	sc.backlog = append(sc.backlog, f)
	sc.backlogBytes += len(f)
	if len(sc.backlog) == 1 {
		select {
		case sc.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// flushBacklog moves backlogged frames to the socket while its queue has
// room; it reports whether frames are left.
func (sc *serverConn) flushBacklog() bool {
	sc.outMu.Lock()
	defer sc.outMu.Unlock()
	for len(sc.backlog) > 0 {
		f := sc.backlog[0]
		if err := sc.pc.Send(f); err != nil {
			if errors.Is(err, poller.ErrQueueFull) {
				return true
			}
			sc.backlog, sc.backlogBytes = nil, 0 // closed
			return false
		}
		sc.s.M.bytesOut.Add(len(f))
		sc.backlog[0] = nil
		sc.backlog = sc.backlog[1:]
		sc.backlogBytes -= len(f)
	}
	sc.backlog = nil
	return false
}

// fail closes the connection for a reason the service decided.
func (sc *serverConn) fail(label string, code wsframe.CloseCode, text string) {
	sc.shutdown(label, wsframe.AppendCloseFrame(nil, code, text))
}

// shutdown closes the connection after final (once); OnClose follows.
func (sc *serverConn) shutdown(label string, final []byte) {
	for {
		st := sc.state.Load()
		if st == scClosed {
			return
		}
		if sc.state.CompareAndSwap(st, scClosed) {
			break
		}
	}
	sc.why.Store(&label)
	sc.s.log.Info("app server connection closed", "hub", sc.h.name, "server", sc.serverID, "reason", label)
	sc.pc.Shutdown(final)
}

// OnClose implements poller.Session: the connection is gone. Its clients
// are closed (their app server is gone; they reconnect through the app's
// negotiate), its hub forgets it.
func (sc *serverConn) OnClose(err error) {
	if sc.pc == nil {
		return // closed before Start: nothing began
	}
	sc.once.Do(func() { // once: Service.Close may end it too
		sc.state.Store(scClosed)
		close(sc.done)
		sc.s.track(sc, false)
		label := "peer_gone"
		if w := sc.why.Load(); w != nil {
			label = *w
		}
		sc.s.M.serverClosed(label).Inc()
		sc.h.leave(sc)
	})
}
