package conn

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/metricset"
	"github.com/edgeplane/edgeplane/poller"
)

// Config configures the client-facing protocol. The zero value works: open
// access, default limits. The hubs clients may connect to are the Router's.
type Config struct {
	// AccessKey, when set, makes client connections require an HS256 access
	// token signed with it (query access_token or Authorization: Bearer);
	// its nameid or sub claim becomes the user id. Empty: open access.
	AccessKey string
	// TokenKey signs connection tokens. Nodes of one fleet must share it so
	// negotiate and connect may land on different nodes. Default: derived
	// from AccessKey, or random per process if that is empty too.
	TokenKey string
	// TokenTTL is how long a negotiated connection token stays valid for
	// connecting. Default 60s.
	TokenTTL time.Duration
	// MaxMessageBytes bounds one client message (a whole, possibly
	// fragmented, WebSocket message). Larger → close 1009. Default 32 KiB.
	MaxMessageBytes int
	// MaxHeaderBytes bounds an HTTP request's head. Default 8 KiB.
	MaxHeaderBytes int
	// HandshakeTimeout bounds the HTTP request and the SignalR handshake
	// together. Default 15s.
	HandshakeTimeout time.Duration
	// KeepAliveInterval: a Ping is sent after this long without outbound
	// traffic. Default 15s.
	KeepAliveInterval time.Duration
	// ClientTimeout: a client silent this long is dropped. Default 30s.
	ClientTimeout time.Duration
	// TokenClaims, when set, makes connection-token reuse fleet-wide: an
	// upgrade claims its connection id there before it is answered (409 if
	// any node claimed it before). Redis down or slow: the upgrade goes
	// ahead on the local check alone, counted. Nil: the local check only.
	TokenClaims backplane.TokenClaimer
	// Upstream receives client invocations and lifecycle events. Nil: none
	// (invocations are counted and dropped; ones with an invocationId get
	// a Completion error).
	Upstream backplane.Upstream
	// AcceptRate limits new SignalR connections per second (token bucket)
	// so a reconnect storm cannot starve established connections; the
	// excess gets 503 with a jittered Retry-After. A negotiate spends a
	// token, and so does a skipNegotiation upgrade; the upgrade that follows
	// a negotiate (valid token) does not, so a client is never refused
	// halfway. Default 5000; negative disables.
	AcceptRate float64
	// AcceptBurst is the bucket size. Default: AcceptRate.
	AcceptBurst int
	// RetryAfter is the base of the jittered Retry-After (seconds, spread
	// over [base, 2*base]) sent with accept-rate and drain 503s. Default
	// DefaultRetryAfter.
	RetryAfter int
	// MaxConnsPerIP limits open connections per remote address. Default 0
	// (off: behind a load balancer without PROXY protocol every client has
	// the balancer's address).
	MaxConnsPerIP int
	// MaxMessageRate limits SignalR records a client may send per second;
	// more closes the connection with 1008. Default 100; negative disables.
	MaxMessageRate int
	// AllowedOrigins, if set, restricts browsers to these Origins (exact,
	// or patterns like "https://*.example.com"); others get 403. Requests
	// without an Origin header (non-browser clients) are not affected.
	// CORS answers reflect only these origins (with credentials); with
	// none set, no origin is reflected.
	AllowedOrigins []string
	// ContextMaxBytes bounds the connect request's context that the
	// upstream's connected event carries (backplane.ConnectContext:
	// headers, query string, claims): what does not fit is left out and
	// the event marked truncated. Default DefaultContextMaxBytes;
	// negative: no context.
	ContextMaxBytes int
	// ContextCookies puts the Cookie header in the connect context. Off by
	// default: cookies are credentials.
	ContextCookies bool
	// DisableStatefulReconnect stops negotiate from offering stateful
	// reconnect (useStatefulReconnect) to clients that ask for it.
	// Default: offered. Connections that negotiated it keep it.
	DisableStatefulReconnect bool
	// ReconnectWindow is how long a stateful-reconnect connection whose
	// socket dropped is kept (id, groups, user, messages sent meanwhile)
	// for the client to come back with its connection token. Default
	// 15s, ASP.NET Core's DisconnectTimeout.
	ReconnectWindow time.Duration
	// ReconnectBufferBytes bounds the bytes of messages a stateful
	// reconnect connection holds until the client acknowledges them;
	// past it the connection is closed (allowReconnect). Default 100000,
	// ASP.NET Core's StatefulReconnectBufferSize.
	ReconnectBufferBytes int
	// HubPaths gives hubs a path of their own on the client port, hub
	// name → path ("/hubs/chat": negotiate at /hubs/chat/negotiate), as
	// ASP.NET Core's MapHub does; paths match case-insensitively. A hub
	// without one is at "/" + its name.
	HubPaths map[string]string
	// Protocols are the hub protocols clients may choose at the
	// handshake: "json", "messagepack". Default both. Negotiate
	// advertises the Binary transfer format only when a binary protocol
	// (MessagePack) is among them.
	Protocols []string
	// Transports are the transports clients may use, in the order
	// negotiate lists them (the order clients try them): "WebSockets",
	// "ServerSentEvents", "LongPolling" (case-insensitive). Default all
	// three. ServerSentEvents carries text only: it is listed only with
	// the JSON protocol.
	Transports []string
	// PollTimeout is how long a long poll is held without data before it
	// is answered 200 with an empty body. Default 90s, ASP.NET Core's
	// LongPollingOptions.PollTimeout.
	PollTimeout time.Duration
	// HTTPQueueBytes bounds the messages a long-polling connection keeps
	// between polls; past it the connection is closed as a slow client.
	// Default 1 MiB (the poller's default outbound queue; the node sets
	// it to the poller's).
	HTTPQueueBytes int
	// Service, when set, serves Azure SignalR Service's /server/ and
	// /client/ paths (service mode, service.go): app server connections,
	// and clients relayed to the app server that hosts them. Nil: those
	// paths are unknown.
	Service Service
	// Returner, when set, takes client results back to whoever asked
	// (the backplane: Memory or Redis; results.go). Nil: a client's
	// Completion goes to the upstream only.
	Returner backplane.Returner
	// ResultTimeout bounds how long a client result is waited for at the
	// node that holds the connection; then the asker gets an error
	// Completion. Default DefaultResultTimeout.
	ResultTimeout time.Duration
	// MaxPendingResults bounds the client results a node waits for at
	// once; more are answered at once with an error Completion. Default
	// DefaultMaxPendingResults.
	MaxPendingResults int
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMaxMessageBytes      = 32 << 10
	DefaultMaxHeaderBytes       = 8 << 10
	DefaultHandshakeTimeout     = 15 * time.Second
	DefaultKeepAliveInterval    = 15 * time.Second
	DefaultClientTimeout        = 30 * time.Second
	DefaultTokenTTL             = 60 * time.Second
	DefaultAcceptRate           = 5000
	DefaultMaxMessageRate       = 100
	DefaultRetryAfter           = 2
	DefaultContextMaxBytes      = 4 << 10
	DefaultReconnectWindow      = 15 * time.Second
	DefaultReconnectBufferBytes = 100_000
	maxBodyBytes                = 4 << 10
	DefaultPollTimeout          = 90 * time.Second
	DefaultHTTPQueueBytes       = 1 << 20
)

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config {
	if c.TokenTTL <= 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.KeepAliveInterval <= 0 {
		c.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if c.ClientTimeout <= 0 {
		c.ClientTimeout = DefaultClientTimeout
	}
	if c.AcceptRate == 0 {
		c.AcceptRate = DefaultAcceptRate
	}
	if c.AcceptBurst <= 0 {
		c.AcceptBurst = int(max(c.AcceptRate, 1))
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.MaxMessageRate == 0 {
		c.MaxMessageRate = DefaultMaxMessageRate
	}
	if c.ContextMaxBytes == 0 {
		c.ContextMaxBytes = DefaultContextMaxBytes
	}
	if c.ReconnectWindow <= 0 {
		c.ReconnectWindow = DefaultReconnectWindow
	}
	if c.ReconnectBufferBytes <= 0 {
		c.ReconnectBufferBytes = DefaultReconnectBufferBytes
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.HTTPQueueBytes <= 0 {
		c.HTTPQueueBytes = DefaultHTTPQueueBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func secs(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// Server speaks HTTP, WebSocket and the SignalR JSON hub protocol to the
// connections a poller hands it. It implements poller.Handler. It registers
// connections in a fanout.Router and hands their invocations to the
// Upstream; it does not own either.
type Server struct {
	cfg    Config
	log    *slog.Logger
	router *fanout.Router
	signer tokenSigner
	wheel  *wheel[Conn, *Conn]
	M      *Metrics

	handshakeSec, keepAliveSec, timeoutSec, reconnectSec int64
	pollSec                                              int64         // Config.PollTimeout
	served                                               transportSet  // Config.Transports
	httpConns                                            httpConnTable // connections on the HTTP transports (httptransport.go)
	protocols                                            protocolSet   // Config.Protocols
	paths                                                hubPaths      // Config.HubPaths
	transports                                           []transport   // negotiate's availableTransports

	accept   acceptBucket
	perIP    perIP
	draining atomic.Bool
	closing  closingSet

	claims *claimer // fleet-wide token claims; nil without Config.TokenClaims

	foreign  sync.Map // *Conn → ServerSession: app server connections (service.go)
	policies sync.Map // *Conn → connPolicy: a client token's handshake time-out and expiry (client_endpoint_claims.go)

	usedMu sync.Mutex
	used   map[[idLen]byte]int64 // connection ids connected recently → token expiry (unix s)

	closeOnce sync.Once
	epoch     int64 // unix seconds at start; Conn.tokenExp is relative to it

	streams openStreams    // stream.go
	results results        // results.go
	returns chan returnJob // results.go
}

// New builds a Server that registers its connections in router (whose
// hubs are the ones clients may connect to) and starts its timing wheel.
func New(cfg Config, router *fanout.Router) (*Server, error) {
	if router == nil {
		return nil, errors.New("conn: New needs a fanout.Router")
	}
	cfg = cfg.WithDefaults()
	s := &Server{
		cfg:          cfg,
		log:          cfg.Logger,
		router:       router,
		wheel:        newWheel[Conn](),
		used:         make(map[[idLen]byte]int64),
		handshakeSec: secs(cfg.HandshakeTimeout),
		keepAliveSec: secs(cfg.KeepAliveInterval),
		timeoutSec:   secs(cfg.ClientTimeout),
		reconnectSec: secs(cfg.ReconnectWindow),
		pollSec:      secs(cfg.PollTimeout),
	}
	switch {
	case cfg.TokenKey != "":
		s.signer.key = []byte(cfg.TokenKey)
	case cfg.AccessKey != "":
		k := sha256.Sum256([]byte("edgeplane connection token\x00" + cfg.AccessKey))
		s.signer.key = k[:]
	default:
		s.signer.key = make([]byte, 32)
		if _, err := crand.Read(s.signer.key); err != nil {
			return nil, fmt.Errorf("conn: token key: %w", err)
		}
	}
	var err error
	if s.protocols, err = parseProtocols(cfg.Protocols); err != nil {
		return nil, err
	}
	if s.served, err = parseTransports(cfg.Transports); err != nil {
		return nil, err
	}
	s.transports = s.served.list(s.protocols)
	s.signer.ttl = cfg.TokenTTL
	s.epoch = time.Now().Unix()
	s.accept.rate, s.accept.burst = cfg.AcceptRate, float64(cfg.AcceptBurst)
	s.perIP.limit, s.perIP.n = cfg.MaxConnsPerIP, make(map[netip.Addr]int32)
	var bad error
	router.Hubs(func(h *fanout.Hub) {
		if name := h.Name(); name == "" || name == "api" {
			bad = fmt.Errorf("conn: invalid hub name %q", name)
		}
	})
	if bad != nil {
		return nil, bad
	}
	if s.paths, err = newHubPaths(router, cfg.HubPaths); err != nil {
		return nil, err
	}
	s.M = newMetrics(s)
	if cfg.TokenClaims != nil {
		s.claims = newClaimer(cfg.TokenClaims, s.log, s.M.set)
	}
	s.returns = make(chan returnJob, returnQueue)
	go s.wheel.run()
	go s.sweepUsed()
	if cfg.Returner != nil {
		go s.runReturner()
	}
	return s, nil
}

// Metrics are the Server's metrics, for the node's registry.
func (s *Server) Metrics() *metricset.Set { return s.M.set }

// Close stops the timing wheel. Connections are closed by the poller.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.wheel.close()
		if s.claims != nil {
			s.claims.close()
		}
	})
	return nil
}

// OnOpen implements poller.Handler.
func (s *Server) OnOpen(pc poller.Conn) poller.Session {
	c := &Conn{srv: s, pc: pc}
	switch {
	case s.draining.Load():
		return s.refuse(c, "draining", "server is restarting, retry later")
	case s.perIP.limit > 0:
		if !s.perIP.acquire(addrOf(pc.RemoteAddr())) {
			return s.refuse(c, "per_ip", "too many connections from your address")
		}
		c.flags.Or(flIPCounted)
	}
	now := s.wheel.Now()
	c.opened = int32(now)
	c.lastRead.Store(int32(now))
	c.lastWrite.Store(int32(now))
	s.M.accepted.Inc()
	s.wheel.add(c, now+min(s.handshakeSec, s.keepAliveSec))
	return c
}

// refuse answers a just-accepted connection with 503 and a jittered
// Retry-After and closes it; the returned session ignores everything.
func (s *Server) refuse(c *Conn, reason, msg string) poller.Session {
	s.M.Rejected(reason)
	c.state.Store(stClosed)
	c.pc.Shutdown(serviceUnavailable(jitteredRetryAfter(s.cfg.RetryAfter), "edgeplane: "+msg, ""))
	return c
}

// Drain closes every registered connection, paced over window in random
// order (so reconnects spread over the fleet), each with a SignalR Close
// (allowReconnect) and WebSocket close 1012 queued after what is already
// queued for it. New connections and handshakes are refused from now on.
// If ctx ends first the rest are closed at once.
func (s *Server) Drain(ctx context.Context, window time.Duration) {
	s.draining.Store(true)
	var all []*Conn
	s.router.Hubs(func(h *fanout.Hub) {
		h.Each(func(e *fanout.Entry) {
			if c, ok := e.Member().(*Conn); ok {
				all = append(all, c)
			}
		})
	})
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	s.log.Info("draining", "connections", len(all), "window", window.String())
	start := time.Now()
	for i, c := range all {
		at := start.Add(time.Duration(int64(window) * int64(i) / int64(len(all))))
		if d := time.Until(at); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		c.closeWith(causeShutdown)
	}
}

// CloseConnection closes a local connection (REST DELETE) with a SignalR
// Close carrying reason and WebSocket 1000. It reports whether the
// connection was local.
func (s *Server) CloseConnection(hub, id, reason string) bool {
	h := s.router.Hub(hub)
	if h == nil {
		return false
	}
	found, _ := h.Member(id).(*Conn)
	if found == nil {
		return false
	}
	found.closeWith(causeServerClose.withText(reason))
	return true
}

// wasUsed reports whether connection id connected and left within its
// token's lifetime (a reused token).
func (s *Server) wasUsed(id [idLen]byte) bool {
	s.usedMu.Lock()
	defer s.usedMu.Unlock()
	_, ok := s.used[id]
	return ok
}

// markUsed records that a negotiated connection id is gone, until its
// token expires (unix seconds), so the token cannot connect again.
func (s *Server) markUsed(id [idLen]byte, exp int64) {
	if exp < time.Now().Unix() {
		return
	}
	s.usedMu.Lock()
	s.used[id] = exp
	s.usedMu.Unlock()
}

func (s *Server) sweepUsed() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.wheel.stop:
			return
		case now := <-t.C:
			s.usedMu.Lock()
			for id, exp := range s.used {
				if exp < now.Unix() {
					delete(s.used, id)
				}
			}
			s.usedMu.Unlock()
		}
	}
}
