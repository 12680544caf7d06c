package service

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"unicode/utf8"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/serviceproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// relayClient is a /client/ connection and the server connection hosting
// it, in the hub's clientTable while the relay needs more than its
// connection: until the app accepted it, for a fleet relay, or when the
// server connection has no slot (hub.slots). An accepted client hosted
// here is then found through fanout (its id) and its server connection
// through the slot stored in the connection (conn.Conn.RelayTag): no
// state of its own per client (compact).
type relayClient struct {
	c        *conn.Conn
	sc       *serverConn
	x        *crossNode // relayed between nodes (fleet.go); nil when c and sc are both here
	binary   bool       // MessagePack: binary frames, length-prefixed records
	accepted atomic.Bool
}

// RelayOpen implements conn.Service: pick a server connection of the hub,
// send it OpenConnection (claims with .NET claim types, headers, query
// string, the hub protocol) and the client's handshake request as its
// first ConnectionData. The app answers the handshake.
func (s *Service) RelayOpen(c *conn.Conn, hs hubproto.Handshake, handshake []byte, ctx *backplane.ConnectContext) error {
	h := s.hub(c.Hub())
	if h == nil {
		return ErrNoServer
	}
	var raw []byte
	if ctx != nil {
		raw = ctx.Claims
	}
	claims, err := claimsOf(raw)
	if err != nil {
		return fmt.Errorf("access token claims: %w", err)
	}
	var sticky, mode string
	for _, cl := range claims {
		switch cl.Type {
		case serviceproto.ClaimServerName:
			sticky = cl.Value
		case serviceproto.ClaimServerSticky:
			mode = cl.Value
		}
	}
	open := &serviceproto.OpenConnection{ConnectionID: c.ID(), Claims: claims}
	open.Ext = open.Ext.WithProtocol(hs.Protocol.Name())
	if ctx != nil {
		open.Headers = headersOf(ctx)
		if ctx.Query != "" {
			open.QueryString = "?" + ctx.Query
		}
	}
	sc := h.pick(sticky, mode)
	if sc == nil && s.fl != nil {
		return s.fl.open(h, c, hs.Protocol.Binary(), open, handshake, sticky, mode)
	}
	if sc == nil {
		s.M.relayRefused.Inc()
		return ErrNoServer
	}
	rc := &relayClient{c: c, sc: sc, binary: hs.Protocol.Binary()}
	c.SetRelayTag(sc.slot) // before the table makes rc visible
	if !h.clients.add(c.ID(), rc) {
		return fmt.Errorf("connection id %s is already relayed", c.ID())
	}
	sc.hosted.Add(1)
	s.M.relayed.Inc()
	if !sc.sendMany(open, &serviceproto.ConnectionData{ConnectionID: c.ID(), Payload: handshake}) {
		h.clients.remove(c.ID())
		sc.hosted.Add(-1)
		return ErrNoServer
	}
	return nil
}

// headersOf lists the upgrade request's headers (credentials already
// left out by conn) sorted by name, and X-Forwarded-For with the client's
// address if the request had none: the SDK takes the remote address from
// it.
func headersOf(ctx *backplane.ConnectContext) []serviceproto.Header {
	out := make([]serviceproto.Header, 0, len(ctx.Headers)+1)
	fwd := false
	for name, vs := range ctx.Headers {
		out = append(out, serviceproto.Header{Name: name, Values: vs})
		fwd = fwd || name == "X-Forwarded-For"
	}
	if !fwd && ctx.RemoteAddr != "" {
		host, _, err := net.SplitHostPort(ctx.RemoteAddr)
		if err != nil {
			host = ctx.RemoteAddr
		}
		out = append(out, serviceproto.Header{Name: "X-Forwarded-For", Values: []string{host}})
	}
	slices.SortFunc(out, func(a, b serviceproto.Header) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// RelayData implements conn.Service: a client message goes to its app
// server as ConnectionData.
func (s *Service) RelayData(c *conn.Conn, msg []byte) {
	h := s.hub(c.Hub())
	if h == nil {
		return
	}
	var sc *serverConn
	if rc := h.client(c.ID()); rc != nil {
		if rc.sc == nil {
			s.M.toServer.Inc()
			s.fl.fromClient(h, rc, msg)
			return
		}
		sc = rc.sc
	} else if sc = h.slotConn(c.RelayTag()); sc == nil {
		return
	}
	s.M.toServer.Inc()
	sc.send(&serviceproto.ConnectionData{ConnectionID: c.ID(), Payload: msg})
}

// RelayClosed implements conn.Service: the app server hears of the
// client's end (CloseConnection, the reason as its error unless the
// client closed normally), and the client's pending invocations fail.
func (s *Service) RelayClosed(c *conn.Conn, reason string) {
	h := s.hub(c.Hub())
	if h == nil {
		return
	}
	h.dropPartial(c.ID())
	var sc *serverConn
	if rc := h.clients.remove(c.ID()); rc != nil {
		if rc.sc == nil {
			s.fl.clientClosed(h, rc, reason)
			return
		}
		sc = rc.sc
	} else if sc = h.slotConn(c.RelayTag()); sc == nil {
		return
	}
	sc.hosted.Add(-1)
	if sc.state.Load() == scOpen {
		m := &serviceproto.CloseConnection{ConnectionID: c.ID(), ErrorMessage: serviceproto.Str(reason)}
		sc.send(m)
	}
	h.inv.clientGone(h, c.ID())
}

// toClient delivers an app server's ConnectionData to its client: first
// the app's handshake response (after which the client joins its hub),
// then whole records, in one frame per message. Current SDKs send one
// record per ConnectionData; older ones sent raw chunks, whose
// incomplete last record waits for the next chunk (hub.partials). A JSON
// record that is not valid UTF-8 is dropped and counted: in a text frame
// it would fail the client. One writer at a time per client: the
// client's stripe of hub.partials is locked.
func (h *hub) toClient(id string, payload []byte) {
	p := h.partialsOf(id)
	p.mu.Lock()
	defer p.mu.Unlock()
	rc := h.client(id)
	var c *conn.Conn
	var binary bool
	switch {
	case rc != nil && rc.c == nil:
		h.s.fl.toPeer(h, rc, payload)
		return
	case rc != nil:
		c, binary = rc.c, rc.binary
	default:
		c = h.compact(id)
		if c == nil {
			h.s.M.dropped("unknown_connection").Inc()
			return
		}
		binary = c.RelayBinary()
	}
	data := payload
	if part := p.m[id]; len(part) > 0 {
		data = append(part, payload...)
	}
	if rc != nil && !rc.accepted.Load() {
		i := bytes.IndexByte(data, hubproto.RecordSeparator)
		if i < 0 {
			p.keep(id, data)
			return
		}
		resp := data[:i+1]
		// In the frame type of the client's protocol, as ASP.NET Core
		// writes it once the transfer format is set (clients take either).
		c.RelaySend(frameOf(bytes.Clone(resp), binary))
		if bytes.Contains(resp, []byte(`"error"`)) {
			h.s.M.dropped("handshake_refused_by_app").Inc()
			p.keep(id, nil)
			return // the app closes the client (CloseConnection)
		}
		rc.accepted.Store(true)
		if c.RelayAccept() {
			h.users.joined(c.UserID(), id)
			if rc.x == nil && c.RelayTag() != 0 {
				// Found through fanout from now on; RelayClosed or
				// leave ends it through its slot.
				h.clients.removeIf(id, rc)
			}
		}
		data = data[i+1:]
	}
	n := recordsEnd(data, binary)
	if n > 0 {
		recs := data[:n]
		var frame []byte
		if binary {
			frame = wsframe.BinaryFrame(recs)
		} else if utf8.Valid(recs) {
			frame = wsframe.TextFrame(recs)
		} else {
			h.s.M.dropped("invalid_utf8").Inc()
		}
		if frame != nil {
			h.s.M.toClient.Inc()
			c.RelaySend(frame)
		}
	}
	p.keep(id, data[n:])
}

// compact returns the accepted relayed connection id hosted here that
// has no relayClient (its server connection in its RelayTag), or nil.
func (h *hub) compact(id string) *conn.Conn {
	c, ok := h.fh.Member(id).(*conn.Conn)
	if !ok || c.RelayTag() == 0 {
		return nil
	}
	return c
}

// frameOf is records in the data frame of the client's protocol: binary
// for MessagePack, text for JSON.
func frameOf(records []byte, binary bool) []byte {
	if binary {
		return wsframe.BinaryFrame(records)
	}
	return wsframe.TextFrame(records)
}

// recordsEnd is the length of the whole records at the start of b: up to
// the last 0x1e for JSON, whole length-prefixed records for MessagePack.
func recordsEnd(b []byte, binary bool) int {
	if !binary {
		return bytes.LastIndexByte(b, hubproto.RecordSeparator) + 1
	}
	off := 0
	for off < len(b) {
		n, k, ok, err := serviceproto.ReadPrefix(b[off:])
		if err != nil || !ok || off+k+n > len(b) {
			break
		}
		off += k + n
	}
	return off
}
