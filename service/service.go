package service

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// Config configures service mode. The zero value works: open access, the
// SDK's timings.
type Config struct {
	// AccessKey verifies app servers' tokens (HS256 or HS512, aud
	// {scheme}://{host}/server/?hub=HUB, exp). Empty: any app server may
	// connect (an open node).
	AccessKey string
	// PingInterval is the service's keep-alive Ping to each server
	// connection. Default 5 s: the SDK drops a connection that received
	// nothing for 30 s and pings only when it receives.
	PingInterval time.Duration
	// ServerTimeout closes a server connection nothing arrived on for
	// this long. Default 30 s (the SDK pings at least every ~10 s while it
	// receives our pings).
	ServerTimeout time.Duration
	// HandshakeTimeout bounds the upgrade-to-HandshakeRequest time.
	// Default 15 s.
	HandshakeTimeout time.Duration
	// MaxMessageBytes bounds one service message (and a WebSocket frame
	// to twice it). Default serviceproto.DefaultMaxMessageBytes (4 MiB).
	MaxMessageBytes int
	// InboxBytes bounds what a server connection sent and the service has
	// not processed yet; beyond it the connection is closed. Default
	// 64 MiB.
	InboxBytes int
	// BacklogBytes bounds what waits for a server connection beyond the
	// poller's per-connection queue (sized for one client, while a server
	// connection carries many); an app server that lets it fill is
	// closed. Default 64 MiB.
	BacklogBytes int
	// GroupTimeout bounds a group change for a connection on another
	// node (backplane.RemoteGroup), under the SDK's 10 s ack time-out.
	// Default backplane.DefaultAckTimeout.
	GroupTimeout time.Duration
	// MaxHubs bounds the hubs learned from app servers (a hub an app
	// server names that the node was not started with, added when its
	// first server connection is accepted). Default 1000; negative: learn
	// none (only the configured hubs are served).
	MaxHubs int
	// Fleet configures the relay of clients between nodes (fleet.go),
	// on a backplane that carries it (Redis).
	Fleet FleetConfig
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultPingInterval     = 5 * time.Second
	DefaultServerTimeout    = 30 * time.Second
	DefaultHandshakeTimeout = 15 * time.Second
	DefaultInboxBytes       = 64 << 20
	DefaultMaxHubs          = 1000
)

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config {
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.ServerTimeout <= 0 {
		c.ServerTimeout = DefaultServerTimeout
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 4 << 20
	}
	if c.InboxBytes <= 0 {
		c.InboxBytes = DefaultInboxBytes
	}
	if c.BacklogBytes <= 0 {
		c.BacklogBytes = DefaultInboxBytes
	}
	if c.GroupTimeout <= 0 {
		c.GroupTimeout = backplane.DefaultAckTimeout
	}
	if c.MaxHubs == 0 {
		c.MaxHubs = DefaultMaxHubs
	}
	c.Fleet = c.Fleet.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Service is Azure SignalR Service's Default mode on a node: it
// implements conn.Service. App servers' connections are its sessions;
// /client/ connections are relayed to them; what the apps send to many
// clients goes through the backplane to every node's fanout.
type Service struct {
	cfg    Config
	log    *slog.Logger
	router *fanout.Router
	bp     backplane.Backplane
	M      *Metrics
	fl     *fleet // relay between nodes; nil on one node or when disabled

	hubsMu  sync.RWMutex
	hubs    map[string]*hub // by the hub's name, lower case
	learned int             // hubs added by app servers

	mu    sync.Mutex
	conns map[*serverConn]struct{} // every server connection not closed yet

	wg       sync.WaitGroup // server connections' goroutines and the ticker
	stop     chan struct{}
	stopOnce sync.Once
	closing  atomic.Bool
}

var _ conn.Service = (*Service)(nil)

// Sentinel errors.
var (
	// ErrNoServer: no app server connection can host a client of the
	// hub (none connected, or a sticky client's server is gone). The
	// client gets it as its handshake error.
	ErrNoServer = errors.New("no app server is connected for this hub")
	// ErrClosed: the service is closed.
	ErrClosed = errors.New("service: closed")
	// ErrHubName: an app server named a hub the node cannot serve (empty,
	// over 128 bytes, characters other than letters, digits, _ - ., or
	// api, client, server). 400.
	ErrHubName = errors.New("invalid hub name")
	// ErrHubLimit: the hub is new and the node learned MaxHubs already.
	// 404.
	ErrHubLimit = errors.New("unknown hub, and no more hubs can be learned (MaxHubs)")
)

// New builds the service for router's hubs, publishing through bp, and
// starts its ticker (pings, time-outs, user-group TTLs).
func New(cfg Config, router *fanout.Router, bp backplane.Backplane) *Service {
	cfg = cfg.WithDefaults()
	s := &Service{cfg: cfg, log: cfg.Logger, router: router, bp: bp, hubs: map[string]*hub{},
		conns: map[*serverConn]struct{}{}, stop: make(chan struct{})}
	s.M = newMetrics(s)
	for _, name := range router.HubNames() {
		s.addHub(name, router.Hub(name))
	}
	if rl, ok := bp.(backplane.Relay); ok && !cfg.Fleet.Disabled {
		s.fl = newFleet(s, rl, cfg.Fleet)
		go s.fl.run()
	}
	s.wg.Add(1)
	go s.ticker()
	return s
}

// Metrics are the service's metrics, for the node's registry.
func (s *Service) Metrics() *metricset.Set { return s.M.set }

// Close stops the ticker and waits for the server connections'
// goroutines: call it after the poller closed the connections.
func (s *Service) Close() error {
	s.closing.Store(true)
	s.stopOnce.Do(func() { close(s.stop) })
	s.mu.Lock()
	conns := make([]*serverConn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	s.mu.Unlock()
	for _, sc := range conns { // a backend may call OnClose from Close
		sc.pc.Close()
		sc.OnClose(ErrClosed) // and one closed already calls it no more
	}
	if s.fl != nil {
		s.fl.close()
	}
	s.wg.Wait()
	return nil
}

func (s *Service) hub(name string) *hub {
	s.hubsMu.RLock()
	defer s.hubsMu.RUnlock()
	return s.hubs[strings.ToLower(name)]
}

// addHub makes a fanout hub a service hub. s.hubsMu must not be held.
func (s *Service) addHub(name string, fh *fanout.Hub) *hub {
	s.hubsMu.Lock()
	defer s.hubsMu.Unlock()
	key := strings.ToLower(name)
	if h := s.hubs[key]; h != nil {
		return h
	}
	h := newHub(s, name, fh)
	s.hubs[key] = h
	s.M.declareHub(h)
	return h
}

// learn returns the hub an app server names, adding it to the node if
// it is new, valid, and under MaxHubs (ErrHubLimit, ErrHubName).
func (s *Service) learn(name string) (*hub, error) {
	if h := s.hub(name); h != nil {
		return h, nil
	}
	if h := s.router.Hub(name); h != nil { // configured, not seen yet
		return s.addHub(name, h), nil
	}
	if err := checkHubName(name); err != nil {
		return nil, err
	}
	name = strings.ToLower(name) // as the SDK writes it
	s.hubsMu.Lock()
	if s.cfg.MaxHubs < 0 || s.learned >= s.cfg.MaxHubs {
		s.hubsMu.Unlock()
		return nil, ErrHubLimit
	}
	s.learned++
	s.hubsMu.Unlock()
	s.log.Info("hub learned from an app server", "hub", name)
	return s.addHub(name, s.router.AddHub(name)), nil
}

// checkHubName accepts what the SDK sends: the hub class name in lower
// case, maybe with an application-name prefix and "_": letters, digits,
// "_", "-", "."; at most 128 bytes; not a path of the node's own.
func checkHubName(name string) error {
	if name == "" || len(name) > 128 {
		return ErrHubName
	}
	switch strings.ToLower(name) {
	case "api", "client", "server":
		return ErrHubName
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return ErrHubName
		}
	}
	return nil
}

// AcceptServer implements conn.Service: an app server's upgrade to
// /server/?hub=HUB&cid=… needs a token for the hub's server audience
// (Authorization: Bearer, or access_token), signed with the access key.
// The server's id is X-ASRS-Server-Id, else the token's nameid. A hub
// the node does not serve yet is learned (MaxHubs).
func (s *Service) AcceptServer(req *http.Request, hubName string) (conn.ServerSession, error) {
	if s.closing.Load() {
		return nil, &conn.RejectError{Status: http.StatusServiceUnavailable, Reason: "service is closing"}
	}
	serverID := req.Header.Get("X-ASRS-Server-Id")
	if key := s.cfg.AccessKey; key != "" {
		tok := auth.FromRequest(req.Header.Get("Authorization"), req.URL.Query().Get("access_token"))
		if tok == "" {
			s.M.handshakes("unauthorized").Inc()
			return nil, &conn.RejectError{Status: http.StatusUnauthorized, Reason: "no access token"}
		}
		cl, err := auth.Verify(tok, []byte(key), time.Now())
		if err == nil {
			err = cl.CheckServer(req.Host, req.URL.Query().Get("hub"))
		}
		if err != nil {
			s.M.handshakes("unauthorized").Inc()
			return nil, &conn.RejectError{Status: http.StatusUnauthorized, Reason: err.Error()}
		}
		if serverID == "" {
			serverID = cl.NameID
		}
	}
	if serverID == "" {
		serverID = "anonymous"
	}
	// Only an authenticated app server (or any, on an open node) makes
	// the node learn a hub.
	h, err := s.learn(hubName)
	if err != nil {
		status := http.StatusNotFound
		if errors.Is(err, ErrHubName) {
			status = http.StatusBadRequest
		}
		return nil, &conn.RejectError{Status: status, Reason: err.Error()}
	}
	sc := &serverConn{s: s, h: h, serverID: serverID, cid: req.URL.Query().Get("cid"),
		inbox: make(chan []byte, inboxSlots), done: make(chan struct{}), kick: make(chan struct{}, 1)}
	return sc, nil
}

// ticker pings the open server connections every PingInterval, closes
// silent ones and ones that never sent their handshake, and expires
// user-group memberships.
func (s *Service) ticker() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			conns := make([]*serverConn, 0, len(s.conns))
			for sc := range s.conns {
				conns = append(conns, sc)
			}
			s.mu.Unlock()
			for _, sc := range conns {
				sc.tick(now)
			}
			s.hubsMu.RLock()
			hubs := make([]*hub, 0, len(s.hubs))
			for _, h := range s.hubs {
				hubs = append(hubs, h)
			}
			s.hubsMu.RUnlock()
			for _, h := range hubs {
				h.users.expire(now)
			}
		}
	}
}

func (s *Service) track(sc *serverConn, on bool) {
	s.mu.Lock()
	if on {
		s.conns[sc] = struct{}{}
	} else {
		delete(s.conns, sc)
	}
	s.mu.Unlock()
}

// HubNames lists the hubs the service serves (the node's).
func (s *Service) HubNames() []string { return s.router.HubNames() }

// ServerConnections is the number of open server connections of a hub
// (handshake done), for tests and the admin port.
func (s *Service) ServerConnections(hub string) int {
	h := s.hub(hub)
	if h == nil {
		return 0
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.all)
}

func (s *Service) String() string {
	s.hubsMu.RLock()
	defer s.hubsMu.RUnlock()
	return fmt.Sprintf("service(%d hubs)", len(s.hubs))
}
