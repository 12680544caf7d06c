package sdkfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeplane/edgeplane/internal/serviceproto"
)

// Hub is a hub class: its methods as Go funcs.
type Hub struct {
	// Name is the class name ("ChatHub"); the service sees it lower-cased
	// and the negotiate path is /{Name}/negotiate.
	Name string
	// Methods by name. A method gets the arguments as JSON and returns a
	// result (nil: void) or an error (a *HubError's text reaches the
	// client; any other is "An unexpected error occurred invoking …").
	Methods map[string]Method
	// OnConnected runs after the client's handshake; an error aborts it.
	OnConnected func(c *Context) error
	// OnDisconnected runs when the client is gone, with the error that
	// ended it, if any.
	OnDisconnected func(c *Context, err error)
}

// Method is a hub method.
type Method func(c *Context, args []json.RawMessage) (any, error)

// HubError is HubException: its message is sent to the client.
type HubError struct{ Message string }

func (e *HubError) Error() string { return e.Message }

// Context is a hub method's Context and Clients for one client.
type Context struct {
	ConnectionID string
	UserID       string // UserIdentifier: the asrs.s.uid claim
	Protocol     string
	Claims       []serviceproto.Claim // Context.User's claims
	Headers      []serviceproto.Header
	Query        string
	// Hub sends and manages groups scoped to the client's server
	// connection (ClientConnectionScope), as in a hub method.
	Hub *HubContext
	c   *client
}

// Claim returns the value of the first claim of type t (FindFirst).
func (c *Context) Claim(t string) string {
	for _, x := range c.Claims {
		if x.Type == t {
			return x.Value
		}
	}
	return ""
}

// Caller is Clients.Caller.
func (c *Context) Caller() Target { return c.Hub.Client(c.ConnectionID) }

// Others is Clients.Others.
func (c *Context) Others() Target { return c.Hub.AllExcept(c.ConnectionID) }

// OthersInGroup is Clients.OthersInGroup.
func (c *Context) OthersInGroup(group string) Target {
	return c.Hub.GroupExcept(group, c.ConnectionID)
}

// Abort is Context.Abort(): the client is disconnected.
func (c *Context) Abort() { c.c.end(nil, true) }

// Target is an IClientProxy.
type Target struct {
	send func(target string, args []byte) error
}

// Send is SendAsync: args are marshalled to JSON, then serialized for
// every protocol the app speaks.
func (t Target) Send(target string, args ...any) error {
	if args == nil {
		args = []any{}
	}
	js, err := json.Marshal(args)
	if err != nil {
		return err
	}
	return t.send(target, js)
}

// HubContext is IHubContext<T>: sends and group management from outside
// a hub method (scope nil: a random connection each time) or inside one.
type HubContext struct {
	hr    *hubRuntime
	scope *serverConn
}

func (h *HubContext) payloads(target string, args []byte, invocationID string) (serviceproto.Payloads, error) {
	var p serviceproto.Payloads
	for _, proto := range h.hr.app.cfg.Protocols {
		b, err := appendInvocation(proto, invocationID, target, args)
		if err != nil {
			return nil, err
		}
		p = append(p, serviceproto.Payload{Protocol: proto, Data: b})
	}
	return p, nil
}

func (h *HubContext) multicast(build func(p serviceproto.Payloads) serviceproto.Message) Target {
	return Target{send: func(target string, args []byte) error {
		p, err := h.payloads(target, args, "")
		if err != nil {
			return err
		}
		return h.write(h.scope, build(p))
	}}
}

// All is Clients.All (BroadcastData).
func (h *HubContext) All() Target {
	return h.multicast(func(p serviceproto.Payloads) serviceproto.Message { return &serviceproto.BroadcastData{Payloads: p} })
}

// AllExcept is Clients.AllExcept.
func (h *HubContext) AllExcept(ids ...string) Target {
	return h.multicast(func(p serviceproto.Payloads) serviceproto.Message {
		return &serviceproto.BroadcastData{Excluded: ids, Payloads: p}
	})
}

// Client is Clients.Client: a client this app hosts gets a payload in
// its protocol only, written on its own server connection
// (ServiceLifetimeManager.SendConnectionAsync); any other all protocols.
func (h *HubContext) Client(id string) Target {
	return Target{send: func(target string, args []byte) error {
		if c := h.hr.client(id); c != nil && c.protocol != "" {
			b, err := appendInvocation(c.protocol, "", target, args)
			if err != nil {
				return err
			}
			m := &serviceproto.MultiConnectionData{ConnectionIDs: []string{id},
				Payloads: serviceproto.Payloads{{Protocol: c.protocol, Data: b}}}
			if c.sc.write(m) == nil {
				return nil
			}
			return h.write(nil, m)
		}
		p, err := h.payloads(target, args, "")
		if err != nil {
			return err
		}
		return h.write(h.scope, &serviceproto.MultiConnectionData{ConnectionIDs: []string{id}, Payloads: p})
	}}
}

// Clients is Clients.Clients.
func (h *HubContext) Clients(ids ...string) Target {
	return h.multicast(func(p serviceproto.Payloads) serviceproto.Message {
		return &serviceproto.MultiConnectionData{ConnectionIDs: ids, Payloads: p}
	})
}

// Group is Clients.Group.
func (h *HubContext) Group(g string) Target { return h.GroupExcept(g) }

// GroupExcept is Clients.GroupExcept.
func (h *HubContext) GroupExcept(g string, ids ...string) Target {
	return h.multicast(func(p serviceproto.Payloads) serviceproto.Message {
		return &serviceproto.GroupBroadcastData{Group: g, Excluded: ids, Payloads: p}
	})
}

// Groups is Clients.Groups.
func (h *HubContext) Groups(gs ...string) Target {
	return h.multicast(func(p serviceproto.Payloads) serviceproto.Message {
		return &serviceproto.MultiGroupBroadcastData{Groups: gs, Payloads: p}
	})
}

// User is Clients.User.
func (h *HubContext) User(u string) Target {
	return h.multicast(func(p serviceproto.Payloads) serviceproto.Message {
		return &serviceproto.UserData{UserID: u, Payloads: p}
	})
}

// Users is Clients.Users.
func (h *HubContext) Users(us ...string) Target {
	return h.multicast(func(p serviceproto.Payloads) serviceproto.Message {
		return &serviceproto.MultiUserData{UserIDs: us, Payloads: p}
	})
}

// AddToGroup is Groups.AddToGroupAsync (JoinGroupWithAck). ok is the
// ack: true for Ok, false for NotFound; a time-out is an error.
func (h *HubContext) AddToGroup(ctx context.Context, connID, group string) (bool, error) {
	return h.ackable(ctx, &serviceproto.JoinGroupWithAck{ConnectionID: connID, Group: group})
}

// RemoveFromGroup is Groups.RemoveFromGroupAsync (LeaveGroupWithAck).
func (h *HubContext) RemoveFromGroup(ctx context.Context, connID, group string) (bool, error) {
	return h.ackable(ctx, &serviceproto.LeaveGroupWithAck{ConnectionID: connID, Group: serviceproto.Str(group)})
}

// AddUserToGroup is UserGroups.AddToGroupAsync (UserJoinGroupWithAck),
// with a TTL if ttl > 0.
func (h *HubContext) AddUserToGroup(ctx context.Context, user, group string, ttl time.Duration) (bool, error) {
	m := &serviceproto.UserJoinGroupWithAck{UserID: user, Group: group}
	if ttl > 0 {
		m.Ext = m.Ext.WithTTL(int32(ttl / time.Second))
	}
	return h.ackable(ctx, m)
}

// RemoveUserFromGroup is UserGroups.RemoveFromGroupAsync.
func (h *HubContext) RemoveUserFromGroup(ctx context.Context, user, group string) (bool, error) {
	return h.ackable(ctx, &serviceproto.UserLeaveGroupWithAck{UserID: user, Group: serviceproto.Str(group)})
}

// RemoveUserFromAllGroups is UserGroups.RemoveFromAllGroupsAsync (group nil).
func (h *HubContext) RemoveUserFromAllGroups(ctx context.Context, user string) (bool, error) {
	return h.ackable(ctx, &serviceproto.UserLeaveGroupWithAck{UserID: user})
}

// IsUserInGroup is UserGroups.IsUserInGroup.
func (h *HubContext) IsUserInGroup(ctx context.Context, user, group string) (bool, error) {
	return h.ackable(ctx, &serviceproto.CheckUserInGroupWithAck{UserID: user, Group: group})
}

// ConnectionExists, UserExists and GroupExists are the Management SDK's
// existence checks.
func (h *HubContext) ConnectionExists(ctx context.Context, id string) (bool, error) {
	return h.ackable(ctx, &serviceproto.CheckConnectionExistenceWithAck{ConnectionID: id})
}

func (h *HubContext) UserExists(ctx context.Context, user string) (bool, error) {
	return h.ackable(ctx, &serviceproto.CheckUserExistenceWithAck{UserID: user})
}

func (h *HubContext) GroupExists(ctx context.Context, group string) (bool, error) {
	return h.ackable(ctx, &serviceproto.CheckGroupExistenceWithAck{Group: group})
}

// CloseConnection is ClientManager.CloseConnectionAsync: a
// CloseConnection for a client, from any connection.
func (h *HubContext) CloseConnection(id, reason string) error {
	m := &serviceproto.CloseConnection{ConnectionID: id}
	if reason != "" {
		m.ErrorMessage = serviceproto.Str(reason)
	}
	return h.write(h.scope, m)
}

// CloseUserConnections and CloseGroupConnections close with an ack.
func (h *HubContext) CloseUserConnections(ctx context.Context, user, reason string, excluded ...string) (bool, error) {
	return h.ackable(ctx, &serviceproto.CloseUserConnectionsWithAck{UserID: user, Reason: serviceproto.Str(reason), Excluded: excluded})
}

func (h *HubContext) CloseGroupConnections(ctx context.Context, group, reason string, excluded ...string) (bool, error) {
	return h.ackable(ctx, &serviceproto.CloseGroupConnectionsWithAck{Group: group, Reason: serviceproto.Str(reason), Excluded: excluded})
}

// InvokeClient is Clients.Client(id).InvokeAsync<T> (client results):
// ClientInvocation to the service, then the client's result, routed back
// to this server whichever server hosts the client.
func (h *HubContext) InvokeClient(ctx context.Context, connID, target string, args ...any) (json.RawMessage, error) {
	if args == nil {
		args = []any{}
	}
	js, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	r := h.hr.results
	id := fmt.Sprintf("%s-%s-%d", connID, r.managerID, r.next.Add(1))
	p, err := h.payloads(target, js, id)
	if err != nil {
		return nil, err
	}
	ch := r.add(id, connID)
	if err := h.write(h.scope, &serviceproto.ClientInvocation{InvocationID: id, ConnectionID: connID,
		CallerServerID: h.hr.app.cfg.ServerID, Payloads: p}); err != nil {
		r.remove(id)
		return nil, err
	}
	select {
	case res := <-ch:
		return res.result, res.err
	case <-ctx.Done():
		r.remove(id)
		return nil, ctx.Err()
	}
}

// write is WriteToScopedOrRandomAvailableConnection: the scope's
// connection if it is connected, else the hub's connections from a
// random one on.
func (h *HubContext) write(scope *serverConn, m serviceproto.Message) error {
	if scope != nil && scope.write(m) == nil {
		return nil
	}
	conns := h.hr.live()
	if len(conns) == 0 {
		return ErrNotActive
	}
	start := rand.IntN(len(conns))
	for i := range conns {
		if conns[(start+i)%len(conns)].write(m) == nil {
			return nil
		}
	}
	return ErrNotActive
}

// ackable is WriteAckableMessageAsync: an ack id from the hub's handler
// (shared by its connections), the message on one connection, then the
// Ack: Ok → true, NotFound → false, Timeout (no ack within AckTimeout) or
// another status → error.
func (h *HubContext) ackable(ctx context.Context, m serviceproto.Message) (bool, error) {
	id, ch := h.hr.acks.create()
	setAckID(m, id)
	if err := h.write(h.scope, m); err != nil {
		h.hr.acks.drop(id)
		return false, err
	}
	select {
	case st := <-ch:
		switch st {
		case serviceproto.AckOk:
			return true, nil
		case serviceproto.AckNotFound:
			return false, nil
		case serviceproto.AckTimeout, serviceproto.AckInternalServerError:
			return false, fmt.Errorf("%w: ack-able message %s (ackId: %d) timed out", ErrAckTimeout, m.Type(), id)
		}
		return false, fmt.Errorf("sdkfake: ack-able message %s (ackId: %d) gets error ack status %d", m.Type(), id, st)
	case <-ctx.Done():
		h.hr.acks.drop(id)
		return false, ctx.Err()
	}
}

// ErrAckTimeout is the SDK's TimeoutException for an ack.
var ErrAckTimeout = errors.New("sdkfake: ack timed out")

func setAckID(m serviceproto.Message, id int32) {
	switch m := m.(type) {
	case *serviceproto.JoinGroupWithAck:
		m.AckID = id
	case *serviceproto.LeaveGroupWithAck:
		m.AckID = id
	case *serviceproto.UserJoinGroupWithAck:
		m.AckID = id
	case *serviceproto.UserLeaveGroupWithAck:
		m.AckID = id
	case *serviceproto.CheckUserInGroupWithAck:
		m.AckID = id
	case *serviceproto.CheckConnectionExistenceWithAck:
		m.AckID = id
	case *serviceproto.CheckUserExistenceWithAck:
		m.AckID = id
	case *serviceproto.CheckGroupExistenceWithAck:
		m.AckID = id
	case *serviceproto.CloseUserConnectionsWithAck:
		m.AckID = id
	case *serviceproto.CloseGroupConnectionsWithAck:
		m.AckID = id
	}
}

// hubRuntime is one hub's container (StrongServiceConnectionContainer):
// its connection slots, clients, acks and client results.
type hubRuntime struct {
	app  *App
	hub  *Hub
	name string // as the service sees it

	mu      sync.Mutex
	slots   []*serverConn
	clients map[string]*client

	acks    ackHandler
	results *resultsManager

	stopTick        chan struct{}
	protocolMissing atomic.Int64
	badMessages     atomic.Int64
	recMu           sync.Mutex
	received        []serviceproto.Message
}

func newHubRuntime(a *App, h *Hub, name string) *hubRuntime {
	hr := &hubRuntime{app: a, hub: h, name: name, slots: make([]*serverConn, a.cfg.ConnectionsPerHub),
		clients: map[string]*client{}, stopTick: make(chan struct{})}
	hr.acks.init(a.cfg.AckTimeout)
	hr.results = &resultsManager{hr: hr, managerID: newGUID()[:8], caller: map[string]*pending{}, router: map[string]routed{}}
	return hr
}

func (hr *hubRuntime) start() {
	for i := range hr.slots {
		hr.app.wg.Add(1)
		go hr.run(i)
	}
	hr.app.wg.Add(1)
	go hr.ticker()
}

func (hr *hubRuntime) stop() {}

// ticker checks acks every AckCheckInterval, sends the status ping every
// StatusPingInterval and runs the clients' keep-alive once a second.
func (hr *hubRuntime) ticker() {
	defer hr.app.wg.Done()
	cfg := &hr.app.cfg
	sec := time.NewTicker(time.Second)
	defer sec.Stop()
	lastAck, lastStatus := time.Now(), time.Now()
	for {
		select {
		case <-hr.app.ctx.Done():
			hr.acks.timeoutAll()
			return
		case now := <-sec.C:
			if now.Sub(lastAck) >= cfg.AckCheckInterval {
				lastAck = now
				hr.acks.check(now)
			}
			if now.Sub(lastStatus) >= cfg.StatusPingInterval {
				lastStatus = now
				(&HubContext{hr: hr}).write(nil, &serviceproto.Ping{Messages: []string{serviceproto.PingStatus, "1"}})
			}
			hr.mu.Lock()
			cs := make([]*client, 0, len(hr.clients))
			for _, c := range hr.clients {
				cs = append(cs, c)
			}
			hr.mu.Unlock()
			for _, c := range cs {
				c.tick(now)
			}
		}
	}
}

func (hr *hubRuntime) setSlot(i int, sc *serverConn) {
	hr.mu.Lock()
	hr.slots[i] = sc
	hr.mu.Unlock()
}

// live lists the connected connections.
func (hr *hubRuntime) live() []*serverConn {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	var out []*serverConn
	for _, sc := range hr.slots {
		if sc != nil && sc.connected.Load() {
			out = append(out, sc)
		}
	}
	return out
}

func (hr *hubRuntime) connected() int { return len(hr.live()) }

func (hr *hubRuntime) client(id string) *client {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	return hr.clients[id]
}

func (hr *hubRuntime) clientCount() int {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	return len(hr.clients)
}

// record keeps what the service sent, pings aside, for tests (the last
// 10,000).
func (hr *hubRuntime) record(m serviceproto.Message) {
	if _, ok := m.(*serviceproto.Ping); ok {
		return
	}
	hr.recMu.Lock()
	if len(hr.received) >= 10000 {
		hr.received = hr.received[1:]
	}
	hr.received = append(hr.received, m)
	hr.recMu.Unlock()
}

// ackHandler is AckHandler: ids from 1, one per ack-able message, shared
// by the hub's connections; an ack not received within the time-out
// completes as AckTimeout (checked every AckCheckInterval).
type ackHandler struct {
	mu      sync.Mutex
	next    int32
	timeout time.Duration
	waiting map[int32]ackWait
}

type ackWait struct {
	ch chan serviceproto.AckStatus
	at time.Time
}

func (a *ackHandler) init(timeout time.Duration) {
	a.timeout, a.waiting = timeout, map[int32]ackWait{}
}

func (a *ackHandler) create() (int32, chan serviceproto.AckStatus) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.next++
	ch := make(chan serviceproto.AckStatus, 1)
	a.waiting[a.next] = ackWait{ch: ch, at: time.Now().Add(a.timeout)}
	return a.next, ch
}

func (a *ackHandler) trigger(id int32, st serviceproto.AckStatus) {
	a.mu.Lock()
	w, ok := a.waiting[id]
	delete(a.waiting, id)
	a.mu.Unlock()
	if ok {
		w.ch <- st
	}
}

func (a *ackHandler) drop(id int32) {
	a.mu.Lock()
	delete(a.waiting, id)
	a.mu.Unlock()
}

func (a *ackHandler) check(now time.Time) {
	a.mu.Lock()
	var late []ackWait
	for id, w := range a.waiting {
		if now.After(w.at) {
			late = append(late, w)
			delete(a.waiting, id)
		}
	}
	a.mu.Unlock()
	for _, w := range late {
		w.ch <- serviceproto.AckTimeout
	}
}

func (a *ackHandler) timeoutAll() { a.check(time.Now().Add(24 * time.Hour)) }

// Stats are counters for tests.
type Stats struct {
	Connected       int   // server connections that completed the handshake
	Clients         int   // clients hosted
	ProtocolMissing int64 // OpenConnections without a protocol (never served)
	BadMessages     int64 // messages from the service that did not parse
}

// Stats returns a hub's counters by class name.
func (a *App) Stats(hub string) Stats {
	for _, hr := range a.order {
		if hr.hub.Name == hub {
			return Stats{Connected: hr.connected(), Clients: hr.clientCount(),
				ProtocolMissing: hr.protocolMissing.Load(), BadMessages: hr.badMessages.Load()}
		}
	}
	return Stats{}
}

// Received returns the messages (pings aside) the service sent a hub's
// connections, oldest first.
func (a *App) Received(hub string) []serviceproto.Message {
	for _, hr := range a.order {
		if hr.hub.Name == hub {
			hr.recMu.Lock()
			defer hr.recMu.Unlock()
			return append([]serviceproto.Message(nil), hr.received...)
		}
	}
	return nil
}

// Kill closes one of a hub's server connections at once (slot i), as a
// crash or a cut cable would; the slot reconnects after the back-off.
// It reports whether the slot was connected.
func (a *App) Kill(hub string, slot int) bool {
	for _, hr := range a.order {
		if hr.hub.Name == hub {
			hr.mu.Lock()
			sc := hr.slots[slot]
			hr.mu.Unlock()
			if sc == nil {
				return false
			}
			sc.Kill()
			return true
		}
	}
	return false
}

// HostOf returns the slot of the server connection hosting a client, or
// -1.
func (a *App) HostOf(hub, connID string) int {
	for _, hr := range a.order {
		if hr.hub.Name == hub {
			if c := hr.client(connID); c != nil {
				return c.sc.slot
			}
		}
	}
	return -1
}
