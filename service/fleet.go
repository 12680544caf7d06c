package service

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/serviceproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// A fleet: a client reaching a node none of whose server connections can
// host it is relayed to a node that has one, over the Redis backplane
// (backplane.Relay). The client's node (B) sends the host node (A) the
// OpenConnection and handshake it built, then the client's messages; A
// hands them to one of its server connections and sends the app's
// ConnectionData and CloseConnection for the client back to B. Each
// node sends to each other node through one link: one goroutine
// publishing what is queued, in order, in batches (one PUBLISH each), so
// a client's messages arrive in the order they were sent. A local server
// connection is always preferred.
//
// Presence: every node announces, every PresenceInterval, that it is
// alive and which hubs' app servers it has hosting connections of (a
// sorted set entry expiring after PresenceTTL). A node relays only to
// hosts the last announcement round showed alive; a node whose entry
// expired, or whose relay channel has no listener any more (a publish
// reached no one), is gone: the clients relayed to it or from it are
// closed (with allowReconnect on the client's side; CloseConnection to
// the app on the host's side).

// FleetConfig configures the relay between nodes. The zero value works.
type FleetConfig struct {
	// Disabled turns the relay off: a node refuses a client no local
	// server connection can host, as on a single node.
	Disabled bool
	// PresenceInterval is how often a node announces itself and reads
	// the fleet's presence. Default 1 s.
	PresenceInterval time.Duration
	// PresenceTTL is how long an announcement lasts: a node silent for
	// this long is gone. Default 5 s.
	PresenceTTL time.Duration
	// QueueBytes bounds what waits to be published to one other node;
	// beyond it a message is dropped (counted) and its client closed.
	// Default 16 MiB.
	QueueBytes int
}

// Fleet defaults.
const (
	DefaultPresenceInterval = time.Second
	DefaultPresenceTTL      = 5 * time.Second
	DefaultRelayQueueBytes  = 16 << 20
)

func (c FleetConfig) withDefaults() FleetConfig {
	if c.PresenceInterval <= 0 {
		c.PresenceInterval = DefaultPresenceInterval
	}
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = DefaultPresenceTTL
	}
	if c.PresenceTTL < 2*c.PresenceInterval {
		c.PresenceTTL = 2 * c.PresenceInterval
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultRelayQueueBytes
	}
	return c
}

// crossNode is what a relayClient relayed between nodes knows of the
// other end. On the client's node the relayClient has its conn and no
// server connection; on the host node a server connection and no conn.
type crossNode struct {
	peer  string    // the other node
	id    string    // the client's connection id
	since time.Time // client's node: when the open was sent
}

// hostsByHub is the last presence round: for each hub (lower case), the
// app servers' connections on other nodes alive.
type hostsByHub map[string][]backplane.RelayHost

// fleet is the service's relay between nodes.
type fleet struct {
	s    *Service
	rl   backplane.Relay
	name string
	cfg  FleetConfig

	hosts atomic.Pointer[hostsByHub]
	next  atomic.Uint32 // round-robin over a hub's hosting nodes

	mu    sync.Mutex
	links map[string]*link // by node

	queued  atomic.Int64 // bytes waiting in links
	remote  atomic.Int64 // clients here, hosted on another node
	proxied atomic.Int64 // clients of other nodes, hosted here

	stop chan struct{}
	done chan struct{}
	m    fleetMetrics
}

type fleetMetrics struct {
	sent, received func(op string) *metrics.Counter
	dropped        func(reason string) *metrics.Counter
	peersLost      *metrics.Counter
	presenceErrors *metrics.Counter
	batch          *metrics.PrometheusHistogram
	open           *metrics.PrometheusHistogram
	nodes          atomic.Int64
}

func newFleet(s *Service, rl backplane.Relay, cfg FleetConfig) *fleet {
	f := &fleet{s: s, rl: rl, name: rl.NodeName(), cfg: cfg, links: map[string]*link{},
		stop: make(chan struct{}), done: make(chan struct{})}
	f.hosts.Store(&hostsByHub{})
	set := s.M.set
	f.m = fleetMetrics{
		sent:           set.CounterVec("edgeplane_service_fleet_sent_total", "op", "Relay messages sent to other nodes (open, data, close, refuse)."),
		received:       set.CounterVec("edgeplane_service_fleet_received_total", "op", "Relay messages received from other nodes (open, data, close, refuse)."),
		dropped:        set.CounterVec("edgeplane_service_fleet_dropped_total", "reason", "Relay messages lost, by reason: queue_full, peer_gone (the other node left; its batch lost), malformed, unknown_connection."),
		peersLost:      set.Counter("edgeplane_service_fleet_peers_lost_total", "Other nodes found gone while clients were relayed to or from them (their clients closed)."),
		presenceErrors: set.Counter("edgeplane_service_fleet_presence_errors_total", "Presence rounds that failed (Redis unreachable)."),
		batch:          set.Histogram("edgeplane_service_fleet_batch_seconds", "Relay batches: from the first message queued to its PUBLISH answered, in seconds."),
		open:           set.Histogram("edgeplane_service_fleet_open_seconds", "Clients relayed to another node: from the open sent to the app's handshake answer arriving, in seconds."),
	}
	set.Gauge("edgeplane_service_fleet_queued_bytes", "Relay bytes queued for other nodes, not yet published (in flight).", func() float64 { return float64(f.queued.Load()) })
	set.Gauge(`edgeplane_service_fleet_clients{side="client"}`, "Clients relayed between nodes: side=client on this node with their app server's connection on another, side=host hosted here for another node.", func() float64 { return float64(f.remote.Load()) })
	set.Gauge(`edgeplane_service_fleet_clients{side="host"}`, "Clients relayed between nodes: side=client on this node with their app server's connection on another, side=host hosted here for another node.", func() float64 { return float64(f.proxied.Load()) })
	set.Gauge("edgeplane_service_fleet_nodes", "Service-mode nodes alive in the last presence round, this one included.", func() float64 { return float64(f.m.nodes.Load()) })
	rl.HandleRelay(f.receive)
	return f
}

// run announces presence every PresenceInterval until close.
func (f *fleet) run() {
	defer close(f.done)
	t := time.NewTicker(f.cfg.PresenceInterval)
	defer t.Stop()
	for {
		f.round()
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
	}
}

// round announces this node's hosts, reads the fleet's, learns the hubs
// other nodes host, and ends the relays of nodes gone.
func (f *fleet) round() {
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.PresenceInterval)
	p, err := f.rl.Announce(ctx, f.localHosts(), f.cfg.PresenceTTL)
	cancel()
	if err != nil {
		if !errors.Is(err, backplane.ErrClosed) {
			f.m.presenceErrors.Inc()
			f.s.log.Debug("service fleet presence", "err", err)
		}
		return
	}
	f.m.nodes.Store(int64(len(p.Nodes)))
	hh := hostsByHub{}
	for _, h := range p.Hosts {
		if h.Node == f.name {
			continue
		}
		if _, alive := p.Nodes[h.Node]; !alive {
			continue
		}
		key := strings.ToLower(h.Hub)
		if _, ok := hh[key]; !ok && f.s.hub(key) == nil {
			if _, err := f.s.learn(key); err != nil {
				f.s.log.Debug("hub hosted on another node not learned", "hub", key, "err", err)
				continue
			}
		}
		hh[key] = append(hh[key], h)
	}
	for _, hs := range hh {
		sort.Slice(hs, func(i, j int) bool { return hs[i].Node < hs[j].Node })
	}
	f.hosts.Store(&hh)
	f.mu.Lock()
	var gone []string
	for node := range f.links {
		if _, alive := p.Nodes[node]; !alive {
			gone = append(gone, node)
		}
	}
	f.mu.Unlock()
	for _, node := range gone {
		f.peerGone(node, "its presence expired")
	}
}

// localHosts lists the app servers with hosting connections here.
func (f *fleet) localHosts() []backplane.RelayHost {
	f.s.hubsMu.RLock()
	hubs := make([]*hub, 0, len(f.s.hubs))
	for _, h := range f.s.hubs {
		hubs = append(hubs, h)
	}
	f.s.hubsMu.RUnlock()
	var out []backplane.RelayHost
	for _, h := range hubs {
		h.mu.RLock()
		for _, sc := range h.hosts {
			if !sc.draining.Load() {
				out = append(out, backplane.RelayHost{Hub: strings.ToLower(h.name), Server: sc.serverID})
			}
		}
		h.mu.RUnlock()
	}
	return out
}

// pickNode chooses the node a client of h goes to: one with the sticky
// server's connections if the client names one (Required: only those),
// else round-robin over the nodes hosting the hub.
func (f *fleet) pickNode(h *hub, sticky, mode string) string {
	hs := (*f.hosts.Load())[strings.ToLower(h.name)]
	if len(hs) == 0 {
		return ""
	}
	if sticky != "" && mode != "" && mode != "Disabled" {
		for _, x := range hs {
			if x.Server == sticky {
				return x.Node
			}
		}
		if mode == "Required" {
			return ""
		}
	}
	var nodes []string
	for _, x := range hs {
		if len(nodes) == 0 || nodes[len(nodes)-1] != x.Node {
			nodes = append(nodes, x.Node)
		}
	}
	return nodes[int(f.next.Add(1))%len(nodes)]
}

// open relays a client no local server connection can host to a node
// whose can (the client's node's side of RelayOpen).
func (f *fleet) open(h *hub, c *conn.Conn, binary bool, open *serviceproto.OpenConnection, handshake []byte, sticky, mode string) error {
	node := f.pickNode(h, sticky, mode)
	if node == "" {
		f.s.M.relayRefused.Inc()
		return ErrNoServer
	}
	rc := &relayClient{c: c, binary: binary, x: &crossNode{peer: node, id: c.ID(), since: time.Now()}}
	if !h.clients.add(c.ID(), rc) {
		return fmt.Errorf("connection id %s is already relayed", c.ID())
	}
	f.remote.Add(1)
	frames := serviceproto.AppendFrame(nil, open)
	frames = serviceproto.AppendFrame(frames, &serviceproto.ConnectionData{ConnectionID: c.ID(), Payload: handshake})
	f.s.M.relayed.Inc()
	if !f.send(node, &relayMsg{op: opOpen, hub: h.name, conn: c.ID(), payload: frames, text: sticky, aux: mode, flag: binary}, false) {
		h.clients.remove(c.ID())
		f.remote.Add(-1)
		return ErrNoServer
	}
	return nil
}

// fromClient relays a client's message to its host node.
func (f *fleet) fromClient(h *hub, rc *relayClient, msg []byte) {
	if !f.send(rc.x.peer, &relayMsg{op: opData, hub: h.name, conn: rc.x.id, payload: msg}, false) {
		rc.c.RelayClose("The relay to the app server's node is full.", true)
	}
}

// clientClosed tells the host node that a client relayed to it left
// (RelayClosed, after the client was removed).
func (f *fleet) clientClosed(h *hub, rc *relayClient, reason string) {
	f.remote.Add(-1)
	f.send(rc.x.peer, &relayMsg{op: opClose, hub: h.name, conn: rc.x.id, text: reason}, true)
}

// toPeer sends the app's data for a client of another node there (the
// host's side of toClient).
func (f *fleet) toPeer(h *hub, rc *relayClient, payload []byte) {
	rc.accepted.Store(true)
	if !f.send(rc.x.peer, &relayMsg{op: opData, hub: h.name, conn: rc.x.id, payload: payload}, false) {
		f.closePeer(h, rc, "The relay to the client's node is full.", true)
	}
}

// closePeer asks the client's node to close a client hosted here; its
// close comes back (opClose) and ends it here, as a local client's
// RelayClosed does.
func (f *fleet) closePeer(h *hub, rc *relayClient, reason string, reconnect bool) {
	f.send(rc.x.peer, &relayMsg{op: opClose, hub: h.name, conn: rc.x.id, text: reason, flag: reconnect}, true)
}

// hostGone ends a client hosted here whose server connection closed:
// the client's node closes it, allowed to reconnect.
func (f *fleet) hostGone(h *hub, rc *relayClient) {
	if h.clients.remove(rc.x.id) != rc {
		return
	}
	f.proxied.Add(-1)
	rc.sc.hosted.Add(-1)
	h.s.M.clientsDropped.Inc()
	f.closePeer(h, rc, "The app server's connection to the service was lost.", true)
}

// endHosted ends a client hosted here for another node: the app hears
// of it (CloseConnection), its pending invocations fail.
func (f *fleet) endHosted(h *hub, rc *relayClient, reason string) {
	if h.clients.remove(rc.x.id) != rc {
		return
	}
	f.proxied.Add(-1)
	rc.sc.hosted.Add(-1)
	if rc.sc.state.Load() == scOpen {
		rc.sc.send(&serviceproto.CloseConnection{ConnectionID: rc.x.id, ErrorMessage: serviceproto.Str(reason)})
	}
	h.inv.clientGone(h, rc.x.id)
}

// receive handles a batch from another node (the backplane's receive
// path: nothing here blocks).
func (f *fleet) receive(b []byte) {
	err := readBatch(b, func(from string, m *relayMsg) {
		f.m.received(m.op.String()).Inc()
		f.handle(from, m)
	})
	if err != nil {
		f.m.dropped("malformed").Inc()
		f.s.log.Warn("malformed relay batch dropped", "err", err)
	}
}

func (f *fleet) handle(from string, m *relayMsg) {
	h := f.s.hub(m.hub)
	if h == nil {
		f.m.dropped("unknown_connection").Inc()
		if m.op == opOpen {
			f.send(from, &relayMsg{op: opRefuse, hub: m.hub, conn: m.conn, text: ErrNoServer.Error()}, true)
		}
		return
	}
	rc := h.client(m.conn)
	switch m.op {
	case opOpen: // host side
		f.link(from) // watched from now on, even if the app never answers
		sc := h.pick(m.text, m.aux)
		if sc == nil || rc != nil {
			f.s.M.relayRefused.Inc()
			f.send(from, &relayMsg{op: opRefuse, hub: m.hub, conn: m.conn, text: ErrNoServer.Error()}, true)
			return
		}
		rc = &relayClient{sc: sc, binary: m.flag, x: &crossNode{peer: from, id: m.conn}}
		if !h.clients.add(m.conn, rc) {
			return
		}
		f.proxied.Add(1)
		sc.hosted.Add(1)
		if !sc.sendFrame(wsframe.BinaryFrame(m.payload)) {
			f.endHosted(h, rc, "")
			f.send(from, &relayMsg{op: opRefuse, hub: m.hub, conn: m.conn, text: ErrNoServer.Error()}, true)
		}
	case opData:
		switch {
		case rc == nil || rc.x == nil || rc.x.peer != from:
			f.m.dropped("unknown_connection").Inc()
		case rc.c == nil: // host side: the client's message for the app
			f.s.M.toServer.Inc()
			rc.sc.send(&serviceproto.ConnectionData{ConnectionID: m.conn, Payload: m.payload})
		default: // client side: the app's data for the client
			if !rc.accepted.Load() {
				f.m.open.UpdateDuration(rc.x.since)
			}
			h.toClient(m.conn, m.payload)
		}
	case opClose:
		switch {
		case rc == nil || rc.x == nil || rc.x.peer != from:
			// Closed on both sides already.
		case rc.c == nil: // host side: the client left
			f.endHosted(h, rc, m.text)
		default: // client side: the app closed it, or lost its host
			if m.flag {
				h.s.M.clientsDropped.Inc()
			} else {
				h.s.M.clientsClosed.Inc()
			}
			rc.c.RelayClose(m.text, m.flag)
		}
	case opRefuse:
		if rc == nil || rc.c == nil || rc.x == nil || rc.x.peer != from {
			return
		}
		f.s.M.relayRefused.Inc()
		if h.clients.remove(m.conn) == rc {
			f.remote.Add(-1)
		}
		rc.c.RelaySend(wsframe.TextFrame(hubproto.AppendHandshakeError(nil, m.text)))
		rc.c.RelayClose(m.text, false)
	}
}

// peerGone ends every relay to and from node: it left the fleet.
func (f *fleet) peerGone(node, why string) {
	f.mu.Lock()
	l := f.links[node]
	delete(f.links, node)
	f.mu.Unlock()
	if l != nil {
		l.close()
	}
	f.s.hubsMu.RLock()
	hubs := make([]*hub, 0, len(f.s.hubs))
	for _, h := range f.s.hubs {
		hubs = append(hubs, h)
	}
	f.s.hubsMu.RUnlock()
	n := 0
	for _, h := range hubs {
		var mine []*relayClient
		h.clients.each(func(rc *relayClient) {
			if rc.x != nil && rc.x.peer == node {
				mine = append(mine, rc)
			}
		})
		for _, rc := range mine {
			n++
			if rc.c == nil {
				f.endHosted(h, rc, "The client's node left the fleet.")
				continue
			}
			if h.clients.remove(rc.x.id) == rc {
				f.remote.Add(-1)
			}
			h.s.M.clientsDropped.Inc()
			rc.c.RelayClose("The app server's node left the fleet.", true)
		}
	}
	if n > 0 {
		f.m.peersLost.Inc()
		f.s.log.Warn("service fleet: node gone, its relayed clients closed", "node", node, "why", why, "clients", n)
	}
}

// link returns the link to node, started if new.
func (f *fleet) link(node string) *link {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.links[node]
	if l == nil {
		l = &link{f: f, node: node, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
		f.links[node] = l
		go l.run()
	}
	return l
}

// send queues m for node; force ignores the byte bound (for closes:
// small, at most one per client). It reports false when m was dropped.
func (f *fleet) send(node string, m *relayMsg, force bool) bool {
	if node == f.name {
		return false
	}
	if !f.link(node).enqueue(m, force) {
		f.m.dropped("queue_full").Inc()
		return false
	}
	f.m.sent(m.op.String()).Inc()
	return true
}

// close withdraws this node's presence, asks the nodes of the clients
// hosted here to close them, and flushes the links (briefly).
func (f *fleet) close() {
	close(f.stop)
	<-f.done
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := f.rl.Withdraw(ctx); err != nil && !errors.Is(err, backplane.ErrClosed) {
		f.s.log.Debug("service fleet: withdraw presence", "err", err)
	}
	f.s.hubsMu.RLock()
	for _, h := range f.s.hubs {
		h.clients.each(func(rc *relayClient) {
			if rc.x != nil && rc.c == nil {
				f.closePeer(h, rc, "The app server's node is shutting down.", true)
			}
		})
	}
	f.s.hubsMu.RUnlock()
	f.mu.Lock()
	links := make([]*link, 0, len(f.links))
	for _, l := range f.links {
		links = append(links, l)
	}
	f.links = map[string]*link{}
	f.mu.Unlock()
	for _, l := range links {
		l.flush(ctx)
		l.close()
	}
}

// link is the one publisher of this node's relay messages to another
// node: what is queued leaves in order, in batches.
type link struct {
	f    *fleet
	node string

	mu    sync.Mutex
	buf   []byte // encoded messages
	n     int
	first time.Time // when the oldest queued message was queued
	spare []byte
	busy  bool // a batch is being published

	kick       chan struct{}
	stop, done chan struct{}
	once       sync.Once
}

func (l *link) enqueue(m *relayMsg, force bool) bool {
	l.mu.Lock()
	before := len(l.buf)
	if !force && before > 0 && before+len(m.payload)+64 > l.f.cfg.QueueBytes {
		l.mu.Unlock()
		return false
	}
	if l.n == 0 {
		l.first = time.Now()
	}
	l.buf = appendRelayMsg(l.buf, m)
	l.n++
	l.f.queued.Add(int64(len(l.buf) - before))
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return true
}

// run publishes what is queued until the link closes; a batch that
// reaches no node means the node is gone.
func (l *link) run() {
	defer close(l.done)
	var out []byte
	for {
		select {
		case <-l.stop:
			return
		case <-l.kick:
		}
		for {
			l.mu.Lock()
			if l.n == 0 {
				l.mu.Unlock()
				break
			}
			buf, n, first := l.buf, l.n, l.first
			l.buf, l.n, l.spare, l.busy = l.spare[:0], 0, nil, true
			l.mu.Unlock()
			out = appendBatchHeader(out[:0], l.f.name, n)
			out = append(out, buf...)
			l.f.queued.Add(-int64(len(buf)))
			err := l.f.rl.SendRelay(context.Background(), l.node, out)
			l.f.m.batch.UpdateDuration(first)
			l.mu.Lock()
			l.busy = false
			if cap(buf) <= 1<<20 {
				l.spare = buf[:0]
			}
			l.mu.Unlock()
			if cap(out) > 1<<20 {
				out = nil
			}
			if err != nil {
				l.f.m.dropped("peer_gone").Add(n)
				if !errors.Is(err, backplane.ErrClosed) {
					go l.f.peerGone(l.node, err.Error())
				}
				return
			}
		}
	}
}

// flush waits until nothing is queued (or ctx ends).
func (l *link) flush(ctx context.Context) {
	for ctx.Err() == nil {
		l.mu.Lock()
		n, busy := l.n, l.busy
		l.mu.Unlock()
		if n == 0 && !busy {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// close stops the link; what is still queued is lost.
func (l *link) close() {
	l.once.Do(func() { close(l.stop) })
	l.mu.Lock()
	l.f.queued.Add(-int64(len(l.buf)))
	l.buf, l.n = nil, 0
	l.mu.Unlock()
}

// FleetHosts lists the other nodes the last presence round showed
// hosting hub's app servers (for tests and the admin port); nil on one
// node.
func (s *Service) FleetHosts(hub string) []string {
	if s.fl == nil {
		return nil
	}
	var out []string
	for _, h := range (*s.fl.hosts.Load())[strings.ToLower(hub)] {
		if len(out) == 0 || out[len(out)-1] != h.Node {
			out = append(out, h.Node)
		}
	}
	return out
}
