package sdkfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/serviceproto"
)

// client is a client connection as the app sees it through the service
// (ClientConnectionContext and the HubConnectionHandler running on it).
type client struct {
	hr         *hubRuntime
	sc         *serverConn // the server connection it came on: its writes go there
	id         string
	userID     string
	protocol   string // OpenConnection's ext protocol
	instanceID string // Asrs-Instance-Id header
	open       *serviceproto.OpenConnection

	mu         sync.Mutex // guards buf, handshaken
	buf        []byte
	handshaken bool

	inbox    chan record   // invocations, run one at a time
	done     chan struct{} // closed by end
	ended    sync.Once
	notify   atomic.Bool  // tell the service (CloseConnection) when the hub is done
	endErr   atomic.Value // error passed to end, for OnDisconnected
	started  atomic.Bool  // the hub goroutine runs
	lastRecv atomic.Int64
	lastSend atomic.Int64
	ctx      *Context
}

// openClient handles OpenConnection (OnClientConnectedAsync): the client
// is registered; its handshake comes as its first ConnectionData. As in
// current SDKs, a client whose OpenConnection has no protocol is never
// served: DefaultHubProtocolResolver.GetProtocol(null) throws.
func (hr *hubRuntime) openClient(sc *serverConn, m *serviceproto.OpenConnection) {
	if sc.hr.app.cfg.ConnectionType == serviceproto.ConnectionWeak {
		return // a weak connection hosts no clients
	}
	c := &client{hr: hr, sc: sc, id: m.ConnectionID, protocol: m.Ext.Protocol, open: m,
		inbox: make(chan record, hr.app.cfg.ClientInbox), done: make(chan struct{})}
	for _, cl := range m.Claims {
		if cl.Type == serviceproto.ClaimUserID && c.userID == "" {
			c.userID = cl.Value
		}
	}
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, "Asrs-Instance-Id") && len(h.Values) > 0 {
			c.instanceID = h.Values[0]
		}
	}
	now := time.Now().UnixNano()
	c.lastRecv.Store(now)
	c.lastSend.Store(now)
	c.ctx = &Context{ConnectionID: c.id, UserID: c.userID, Protocol: c.protocol, Claims: userClaimsOf(m.Claims),
		Headers: m.Headers, Query: m.QueryString, c: c, Hub: &HubContext{hr: hr, scope: sc}}
	hr.mu.Lock()
	hr.clients[c.id] = c
	hr.mu.Unlock()
	sc.mu.Lock()
	sc.clients[c.id] = c
	sc.mu.Unlock()
	if m.Ext.Has&serviceproto.ExtProtocol == 0 {
		hr.app.log.Warn("sdkfake: OpenConnection without a protocol: client never served (GetProtocol(null) throws)", "conn", c.id)
		hr.protocolMissing.Add(1)
	}
}

// userClaimsOf is what the app's Context.User holds
// (ClaimsUtility.GetUserPrincipal): no asrs.s.* or reserved claims,
// asrs.u.* un-prefixed.
func userClaimsOf(in []serviceproto.Claim) []serviceproto.Claim {
	var out []serviceproto.Claim
	for _, c := range in {
		switch {
		case strings.HasPrefix(c.Type, serviceproto.ClaimPrefixUser):
			c.Type = c.Type[len(serviceproto.ClaimPrefixUser):]
		case strings.HasPrefix(c.Type, serviceproto.ClaimPrefixSystem) || reservedClaims[c.Type]:
			continue
		}
		out = append(out, c)
	}
	return out
}

// received takes the client's bytes from a ConnectionData: first its
// handshake, then records. Completions are handled here at once (a hub
// method may be waiting for one); invocations go to the client's hub
// goroutine, one at a time.
func (c *client) received(payload []byte) {
	if c.protocol == "" {
		return // never served
	}
	c.lastRecv.Store(time.Now().UnixNano())
	c.mu.Lock()
	c.buf = append(c.buf, payload...)
	if !c.handshaken {
		i := strings.IndexByte(string(c.buf), hubproto.RecordSeparator)
		if i < 0 {
			c.mu.Unlock()
			return
		}
		hs := c.buf[:i]
		c.buf = append([]byte(nil), c.buf[i+1:]...)
		c.handshaken = true
		c.mu.Unlock()
		if !c.handshake(hs) {
			return
		}
		c.mu.Lock()
	}
	recs, rest, err := splitRecords(c.protocol, c.buf)
	var own [][]byte
	for _, r := range recs {
		own = append(own, append([]byte(nil), r...))
	}
	c.buf = append(c.buf[:0], rest...)
	c.mu.Unlock()
	if err != nil {
		c.end(err, true)
		return
	}
	for _, raw := range own {
		r, err := parseRecord(c.protocol, raw)
		if err != nil {
			c.end(fmt.Errorf("invalid message: %w", err), true)
			return
		}
		switch r.Type {
		case hubproto.TypeInvocation, hubproto.TypeStreamInvocation:
			select {
			case c.inbox <- r:
			case <-c.done:
				return
			}
		case hubproto.TypeCompletion:
			c.hr.results.clientCompleted(c, r, raw)
		case hubproto.TypeClose:
			c.end(nil, true)
		}
	}
}

// handshake answers the client's handshake request (HubConnectionHandler)
// and starts its hub goroutine.
func (c *client) handshake(req []byte) bool {
	var h struct {
		Protocol string `json:"protocol"`
		Version  *int   `json:"version"`
	}
	errMsg := ""
	switch err := json.Unmarshal(req, &h); {
	case err != nil || h.Protocol == "" || h.Version == nil:
		errMsg = "Handshake request could not be parsed."
	case protocolOf(h.Protocol) == nil || !c.hr.app.supports(h.Protocol):
		errMsg = fmt.Sprintf("The protocol '%s' is not supported.", h.Protocol)
	case h.Protocol != c.protocol:
		errMsg = fmt.Sprintf("The protocol '%s' does not match the connection's '%s'.", h.Protocol, c.protocol)
	}
	if errMsg != "" {
		b := hubproto.AppendHandshakeError(nil, errMsg)
		c.send(b, serviceproto.DataHandshake)
		c.end(errors.New(errMsg), true)
		return false
	}
	c.send(hubproto.HandshakeOK, serviceproto.DataHandshake)
	c.started.Store(true)
	c.hr.app.wg.Add(1)
	go c.run()
	return true
}

func (a *App) supports(p string) bool {
	for _, x := range a.cfg.Protocols {
		if x == p {
			return true
		}
	}
	return false
}

// run is the client's hub: OnConnected, its invocations in order,
// OnDisconnected, then CloseConnection if the app ended it.
func (c *client) run() {
	defer c.hr.app.wg.Done()
	h := c.hr.hub
	var connErr error
	if h.OnConnected != nil {
		connErr = h.OnConnected(c.ctx)
	}
	if connErr != nil {
		c.end(connErr, true)
	}
	for connErr == nil {
		select {
		case <-c.done:
			connErr = errDone
		case r := <-c.inbox:
			c.invoke(r)
		}
	}
	var err error
	if e, ok := c.endErr.Load().(error); ok && e != errNone {
		err = e
	}
	if h.OnDisconnected != nil {
		h.OnDisconnected(c.ctx, err)
	}
	if c.notify.Load() {
		c.sendClose(err)
	}
}

var (
	errDone = errors.New("done")
	errNone = errors.New("none")
)

// invoke runs one hub method and answers with a Completion when the
// client waits for one (DefaultHubDispatcher).
func (c *client) invoke(r record) {
	m := c.hr.hub.Methods[r.Target]
	var result any
	var err error
	switch {
	case r.Type == hubproto.TypeStreamInvocation:
		err = &HubError{Message: "streaming is not supported by sdkfake"}
	case m == nil:
		err = &HubError{Message: fmt.Sprintf("Unknown hub method '%s'", r.Target)}
	default:
		result, err = m(c.ctx, r.Args)
	}
	if r.InvocationID == "" {
		return
	}
	var b []byte
	if err != nil {
		msg := fmt.Sprintf("An unexpected error occurred invoking '%s' on the server.", r.Target)
		var he *HubError
		if errors.As(err, &he) {
			msg = he.Message
		}
		b, _ = appendCompletion(c.protocol, r.InvocationID, nil, msg)
	} else {
		var js []byte
		if result != nil {
			if js, err = json.Marshal(result); err != nil {
				js = nil
			}
		}
		b, _ = appendCompletion(c.protocol, r.InvocationID, js, "")
	}
	c.send(b, serviceproto.DataInvocation)
}

// send writes one record to the client as ConnectionData on its server
// connection, typed as current SDKs type it (none with LegacyRawData).
func (c *client) send(rec []byte, t serviceproto.DataMessageType) error {
	m := &serviceproto.ConnectionData{ConnectionID: c.id, Payload: rec}
	if !c.hr.app.cfg.LegacyRawData {
		m.Ext.DataType = t
	}
	c.lastSend.Store(time.Now().UnixNano())
	return c.sc.write(m)
}

// sendClose tells the service the app is done with the client
// (ProcessClientConnectionAsync, AbortOnClose): errorMessage nil for a
// normal end.
func (c *client) sendClose(err error) {
	m := &serviceproto.CloseConnection{ConnectionID: c.id}
	if err != nil {
		m.ErrorMessage = serviceproto.Str(err.Error())
	}
	if c.sc.write(m) != nil {
		c.hr.app.Hub(c.hr.hub.Name).write(nil, m) // its connection is gone: any other
	}
}

// end ends the client once: removed from the app, its hub goroutine stops
// and runs OnDisconnected. notify: the app ended it and the service must
// be told (CloseConnection after OnDisconnected); false when the service
// closed it or its server connection dropped.
func (c *client) end(err error, notify bool) {
	c.ended.Do(func() {
		if err == nil {
			err = errNone
		}
		c.endErr.Store(err)
		c.notify.Store(notify)
		c.hr.mu.Lock()
		delete(c.hr.clients, c.id)
		c.hr.mu.Unlock()
		c.sc.mu.Lock()
		delete(c.sc.clients, c.id)
		c.sc.mu.Unlock()
		c.hr.results.connectionGone(c.id)
		close(c.done)
		if !c.started.Load() && notify {
			var e error
			if err != errNone {
				e = err
			}
			c.sendClose(e)
		}
	})
}

// tick sends the hub's keep-alive Ping to a client that got nothing for
// ClientKeepAlive and aborts one silent for ClientTimeout.
func (c *client) tick(now time.Time) {
	if !c.started.Load() {
		return
	}
	cfg := &c.hr.app.cfg
	if now.Sub(time.Unix(0, c.lastRecv.Load())) > cfg.ClientTimeout {
		c.end(errors.New("Server timeout elapsed without receiving a message from the client."), true)
		return
	}
	if now.Sub(time.Unix(0, c.lastSend.Load())) >= cfg.ClientKeepAlive {
		c.send(protocolOf(c.protocol).Ping(), serviceproto.DataOther)
	}
}
