package conn

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/poller"
)

// Config configures the client-facing protocol. The zero value works: one
// hub named "chat", open access, default limits.
type Config struct {
	// Hubs are the hub names clients may connect to. Default ["chat"].
	Hubs []string
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
	// Backplane carries messages between nodes. Default: in-memory.
	Backplane backplane.Backplane
	// Upstream receives client invocations and lifecycle events. Nil: none
	// (invocations are counted and dropped; ones with an invocationId get
	// a Completion error).
	Upstream backplane.Upstream
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMaxMessageBytes   = 32 << 10
	DefaultMaxHeaderBytes    = 8 << 10
	DefaultHandshakeTimeout  = 15 * time.Second
	DefaultKeepAliveInterval = 15 * time.Second
	DefaultClientTimeout     = 30 * time.Second
	DefaultTokenTTL          = 60 * time.Second
	maxBodyBytes             = 4 << 10
)

func (c Config) withDefaults() Config {
	if len(c.Hubs) == 0 {
		c.Hubs = []string{"chat"}
	}
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
	if c.Backplane == nil {
		c.Backplane = backplane.NewMemory()
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
// connections a poller hands it. It implements poller.Handler.
type Server struct {
	cfg    Config
	log    *slog.Logger
	router *fanout.Router
	bp     backplane.Backplane
	signer tokenSigner
	wheel  *wheel
	M      *Metrics

	handshakeSec, keepAliveSec, timeoutSec int64

	usedMu sync.Mutex
	used   map[[idLen]byte]int64 // connection ids connected recently → token expiry (unix s)

	closeOnce sync.Once
}

// New builds a Server and starts its backplane and timing wheel.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:          cfg,
		log:          cfg.Logger,
		bp:           cfg.Backplane,
		wheel:        newWheel(),
		used:         make(map[[idLen]byte]int64),
		handshakeSec: secs(cfg.HandshakeTimeout),
		keepAliveSec: secs(cfg.KeepAliveInterval),
		timeoutSec:   secs(cfg.ClientTimeout),
	}
	switch {
	case cfg.TokenKey != "":
		s.signer.key = []byte(cfg.TokenKey)
	case cfg.AccessKey != "":
		k := sha256.Sum256([]byte("edgeplane connection token\x00" + cfg.AccessKey))
		s.signer.key = k[:]
	default:
		s.signer.key = make([]byte, 32)
		if _, err := rand.Read(s.signer.key); err != nil {
			return nil, fmt.Errorf("conn: token key: %w", err)
		}
	}
	s.signer.ttl = cfg.TokenTTL
	for _, h := range cfg.Hubs {
		if h == "" || h == "api" {
			return nil, fmt.Errorf("conn: invalid hub name %q", h)
		}
	}
	s.router = fanout.NewRouter(cfg.Hubs, s.bp)
	s.M = newMetrics(s)
	if err := s.bp.Start(s.router); err != nil {
		s.M.unregister()
		return nil, fmt.Errorf("conn: start backplane: %w", err)
	}
	go s.wheel.run()
	go s.sweepUsed()
	return s, nil
}

// Router is the node's local registry and delivery path.
func (s *Server) Router() *fanout.Router { return s.router }

// Backplane is the node's backplane.
func (s *Server) Backplane() backplane.Backplane { return s.bp }

// AccessKey is the configured access key ("" when open).
func (s *Server) AccessKey() string { return s.cfg.AccessKey }

// Hubs lists the configured hub names.
func (s *Server) Hubs() []string { return s.cfg.Hubs }

// Close stops the timing wheel and the backplane. Connections are closed by
// the poller.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.wheel.close()
		err = s.bp.Close()
		s.M.unregister()
	})
	return err
}

// OnOpen implements poller.Handler.
func (s *Server) OnOpen(pc poller.Conn) poller.Session {
	c := &Conn{srv: s, pc: pc}
	now := s.wheel.Now()
	c.opened = int32(now)
	c.lastRead.Store(int32(now))
	c.lastWrite.Store(int32(now))
	s.M.accepted.Inc()
	s.wheel.add(c, now+s.handshakeSec)
	return c
}

// Publish sends a message through the backplane to every node.
func (s *Server) Publish(ctx context.Context, m *backplane.Message) error {
	if s.router.Hub(m.Hub) == nil {
		return fmt.Errorf("%w %q", ErrUnknownHub, m.Hub)
	}
	return s.bp.Publish(ctx, m)
}

// CloseConnection closes a local connection (REST DELETE). It reports
// whether the connection was local.
func (s *Server) CloseConnection(hub, id, reason string) bool {
	h := s.router.Hub(hub)
	if h == nil {
		return false
	}
	var found *Conn
	h.Each(func(e *fanout.Entry) {
		if e.ID() == id {
			found, _ = e.Member().(*Conn)
		}
	})
	if found == nil {
		return false
	}
	found.closeWith(reasonServerClose, CloseNormal, reason, true)
	return true
}

// markUsed records that connection id connected; it reports false if it
// already did within the token's lifetime (a reused token).
func (s *Server) markUsed(id [idLen]byte, exp time.Time) bool {
	s.usedMu.Lock()
	defer s.usedMu.Unlock()
	if _, ok := s.used[id]; ok {
		return false
	}
	s.used[id] = exp.Unix()
	return true
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

var errShutdown = errors.New("server shutting down")
