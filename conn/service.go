package conn

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gobwas/ws"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
	"github.com/edgeplane/edgeplane/poller"
)

// Service mode (Azure SignalR Service compatibility): the seam between
// client policy and the service package. conn parses the HTTP of every
// connection on the client port; with Config.Service set it routes two
// more paths there, as Azure SignalR Service lays them out:
//
//   - GET /server/?hub=HUB: an app server's connection. Once the Service
//     accepts the request, conn answers the upgrade and hands the
//     connection over: every byte after it goes to the Service's
//     ServerSession, which speaks the service protocol. conn keeps
//     nothing but the connection's state word.
//   - POST /client/negotiate?hub=HUB and GET /client/?hub=HUB: a client
//     the app's negotiate redirected here. Negotiate and the upgrade are
//     the ones of /{hub} (tokens, limits, the access token with the
//     Azure client audience); then the client is relayed: its handshake
//     request and every message after it go to the Service, which sends
//     them to the app server hosting the client; the app answers the
//     handshake. The connection joins its hub (fanout: broadcasts, groups,
//     users) when the app's handshake response has been sent
//     (RelayAccept), as a /{hub} connection does when conn answers it.
//
// A relayed connection costs nothing more per connection than a /{hub}
// one: three flag bits and a byte of padding (RelayTag); the Service
// keeps its own state.

// relayContextBytes is the least context a relayed connection keeps for
// its OpenConnection: the SDK's tokens are at most 4096 characters, so
// the claims fit with room for the headers.
const relayContextBytes = 16 << 10

// Service is service mode as conn sees it; the service package
// implements it.
type Service interface {
	// AcceptServer checks an app server's upgrade request for hub (the
	// hub query parameter as sent: the Service matches it to a hub ignoring
	// case, or learns it): a *RejectError says which status to answer.
	// The session it returns gets the connection after the 101.
	AcceptServer(req *http.Request, hub string) (ServerSession, error)
	// RelayOpen starts relaying a /client/ connection once its handshake
	// request arrived: handshake is the request's bytes as sent, ctx the
	// upgrade request's context (headers without credentials, query
	// without access_token and id, claims). An error is sent to the
	// client as its handshake error.
	RelayOpen(c *Conn, h hubproto.Handshake, handshake []byte, ctx *backplane.ConnectContext) error
	// RelayData hands over a client WebSocket data message after the
	// handshake. It runs on the connection's event loop: no blocking.
	RelayData(c *Conn, msg []byte)
	// RelayClosed tells that a connection RelayOpen accepted is gone.
	RelayClosed(c *Conn, reason string)
}

// ServerSession is an app server connection after its upgrade.
type ServerSession interface {
	// Start is called once the 101 is queued on pc.
	Start(pc poller.Conn)
	// OnData and OnClose are the poller's, for this connection.
	poller.Session
}

// RejectError refuses a service-mode request with an HTTP status; Reason
// goes in ErrorHeader.
type RejectError struct {
	Status int
	Reason string
}

func (e *RejectError) Error() string { return e.Reason }

// hubFold returns the hub named name, or one whose name matches it
// ignoring case (the SDK lower-cases hub names), or nil.
func (s *Server) hubFold(name string) *fanout.Hub {
	if h := s.router.Hub(name); h != nil || name == "" {
		return h
	}
	var found *fanout.Hub
	s.router.Hubs(func(h *fanout.Hub) {
		if strings.EqualFold(h.Name(), name) {
			found = h
		}
	})
	return found
}

// serviceRoute handles /client/… and /server/… (kind), rest being what
// follows in the path.
func (c *Conn) serviceRoute(req *http.Request, head []byte, kind, rest string) {
	route := "service_" + kind
	name := req.URL.Query().Get("hub")
	if kind == "server" && rest == "" {
		c.serverUpgrade(req, head, name) // the Service may learn the hub
		return
	}
	h := c.srv.hubFold(name)
	if h == nil {
		c.httpError(req, route, http.StatusNotFound, "unknown hub (the hub query parameter)")
		return
	}
	switch {
	case kind == "client" && rest == "negotiate":
		switch req.Method {
		case http.MethodPost:
			if c.admitRate(req) {
				c.negotiate(req, h.Name())
			}
		case http.MethodOptions:
			c.respond(route, http.StatusNoContent, "", nil, c.corsHeaders(req, true))
		default:
			c.httpError(req, route, http.StatusMethodNotAllowed, "negotiate takes POST")
		}
	case kind == "client" && rest == "":
		c.flags.Or(flRelay)
		c.upgrade(req, head, h.Name())
	default:
		c.httpError(req, route, http.StatusNotFound, "unknown path")
	}
}

// serverUpgrade answers an app server's upgrade and hands the connection
// to the Service.
func (c *Conn) serverUpgrade(req *http.Request, head []byte, hub string) {
	const route = "service_server"
	if req.Method != http.MethodGet || !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		c.httpError(req, route, http.StatusBadRequest, "WebSocket upgrade required")
		return
	}
	sess, err := c.srv.cfg.Service.AcceptServer(req, hub)
	if err != nil {
		code := http.StatusBadRequest
		var rej *RejectError
		if errors.As(err, &rej) {
			code = rej.Status
		}
		if code == http.StatusUnauthorized {
			c.srv.M.Rejected("unauthorized")
			c.respond(route, code, "", nil, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n"+errorHeader(err.Error()))
			return
		}
		c.httpError(req, route, code, err.Error())
		return
	}
	var out bytes.Buffer
	rw := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(head), &out}
	if _, err := (&ws.Upgrader{}).Upgrade(rw); err != nil {
		c.httpError(req, route, http.StatusBadRequest, "WebSocket upgrade failed: "+err.Error())
		return
	}
	if !c.state.CompareAndSwap(stHTTP, stServer) {
		return // closed meanwhile (handshake deadline)
	}
	c.srv.foreign.Store(c, sess)
	c.srv.wheel.remove(c) // the session keeps its own time
	c.srv.M.httpReqs(route, http.StatusSwitchingProtocols).Inc()
	if err := c.pc.Send(out.Bytes()); err != nil {
		c.pc.Close()
		return
	}
	sess.Start(c.pc)
}

// foreignSession is the ServerSession of a connection in stServer.
func (s *Server) foreignSession(c *Conn) ServerSession {
	v, _ := s.foreign.Load(c)
	sess, _ := v.(ServerSession)
	return sess
}

// relayMessage handles a relayed connection's WebSocket data message:
// its handshake request, then messages for the Service. A text
// protocol's messages must be UTF-8, as on /{hub}; a binary protocol's
// (flRelayBin) are the app's to judge.
func (c *Conn) relayMessage(op wsframe.OpCode, msg []byte) error {
	if !c.has(flRelayBin) || c.state.Load() == stHandshake {
		if err := checkUTF8(op, msg); err != nil {
			return err
		}
	}
	if c.state.Load() == stHandshake {
		return c.relayHandshake(msg)
	}
	c.touchRead()
	if err := c.countInbound(); err != nil {
		return err
	}
	c.srv.cfg.Service.RelayData(c, msg)
	return nil
}

// relayHandshake handles a relayed connection's handshake request: the
// Service opens the relay; the app answers the handshake.
func (c *Conn) relayHandshake(msg []byte) error {
	h, rest, err := hubproto.ParseHandshake(msg)
	if err != nil {
		c.handshakeFailed(err.Error())
		return nil
	}
	if c.srv.draining.Load() {
		c.closeWith(causeShutdown)
		return nil
	}
	// What conn itself sends the client from now on (keep-alive Pings, a
	// Close, fanout's frames) is in the protocol it asked for.
	c.setProto(h.Protocol.ID())
	if err := c.srv.cfg.Service.RelayOpen(c, h, msg[:len(msg)-len(rest)], c.takeConnectContext()); err != nil {
		c.handshakeFailed(err.Error())
		return nil
	}
	c.flags.Or(flRelayOpen)
	if h.Protocol.Binary() {
		c.flags.Or(flRelayBin)
	}
	if !c.state.CompareAndSwap(stHandshake, stOpen) {
		return nil // closed meanwhile: OnClose tells the Service
	}
	c.touchRead()
	if len(rest) > 0 {
		c.srv.cfg.Service.RelayData(c, rest)
	}
	return nil
}

// ID is the connection's id.
func (c *Conn) ID() string { return c.entry.ID() }

// UserID is the connection's user id ("" if anonymous).
func (c *Conn) UserID() string { return c.entry.User() }

// Hub is the name of the connection's hub.
func (c *Conn) Hub() string { return c.hub.Name() }

// SetRelayTag stores a small number the Service keeps for a relayed
// connection (its server connection's slot), in the connection itself:
// no table of its own per client. Set it in RelayOpen, before the
// connection is visible to other goroutines (it is not atomic).
func (c *Conn) SetRelayTag(tag uint8) { c.rslot = tag }

// RelayTag is what SetRelayTag stored (0 if nothing).
func (c *Conn) RelayTag() uint8 { return c.rslot }

// RelayBinary reports whether a relayed connection speaks a binary hub
// protocol (MessagePack).
func (c *Conn) RelayBinary() bool { return c.has(flRelayBin) }

// RelaySend queues a frame for a relayed connection; a full queue closes
// it as a slow client. It reports whether the frame was queued.
func (c *Conn) RelaySend(frame []byte) bool {
	if err := c.pc.Send(frame); err != nil {
		if errors.Is(err, poller.ErrQueueFull) {
			c.slow()
		}
		return false
	}
	c.touchWrite()
	return true
}

// RelayAccept makes a relayed connection a member of its hub once the
// app's handshake response has been queued to it: from now on fanout
// delivers to it. It reports false if the connection is gone or its id
// is taken. The app may answer before relayHandshake, on the event loop,
// has moved the connection from stHandshake to stOpen after RelayOpen
// returned: the connection is accepted in either state, else it would
// never join its hub (no broadcasts, its group joins NotFound).
func (c *Conn) RelayAccept() bool {
	if st := c.state.Load(); st != stOpen && st != stHandshake {
		return false
	}
	if !c.hub.Insert(&c.entry) {
		c.closeWith(causeDuplicate)
		return false
	}
	c.flags.Or(flRegistered)
	if c.state.Load() == stClosed { // closed while joining: OnClose may have missed it
		c.hub.Remove(&c.entry)
		return false
	}
	return true
}

// RelayClose closes a relayed connection for the app (its CloseConnection,
// or its server connection gone): a SignalR Close with text, if any, and
// WebSocket 1000.
func (c *Conn) RelayClose(text string, reconnect bool) {
	k := causeServerClose.withText(text)
	k.reconnect = reconnect
	c.closeWith(k)
}

// closeRelayed tells the Service a relayed connection is gone.
func (c *Conn) closeRelayed(reason string) {
	if c.has(flRelayOpen) {
		c.srv.cfg.Service.RelayClosed(c, reason)
	}
}
