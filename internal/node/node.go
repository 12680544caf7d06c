package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/edgeplane/edgeplane/admin"
	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/metricset"
	"github.com/edgeplane/edgeplane/poller"
	"github.com/edgeplane/edgeplane/service"
	"github.com/edgeplane/edgeplane/webhook"
)

// Hub is a hub clients may connect to.
type Hub struct {
	// Name is the hub's path on the client port (/{name}, /{name}/negotiate)
	// and in the REST API.
	Name string
	// Prefix is its backplane channel prefix. Empty: the name. Set it to
	// the .NET hub type's full name to share an ASP.NET Core app's Redis
	// backplane.
	Prefix string
	// Path is its path on the client port, one or more segments
	// ("/hubs/chat": negotiate at /hubs/chat/negotiate), matched
	// case-insensitively as ASP.NET Core's MapHub does. Empty: "/" + Name.
	Path string
}

// Config is a node's configuration. The zero value works: client port
// 127.0.0.1:8080, admin port 127.0.0.1:9090, hub "chat", epoll backend,
// in-memory backplane. WithDefaults says each default.
type Config struct {
	// Listen is the client address. Default 127.0.0.1:8080.
	Listen string
	// Admin is the admin/REST address. Default 127.0.0.1:9090.
	Admin string
	// Poller is the backend name. Default "epoll" (our own loop: ~7× denser
	// than "netpoll" at 19,000 idle connections, see BENCHMARKS.md).
	Poller string
	// Hubs clients may connect to. Default: one hub, "chat".
	Hubs []Hub
	// PollerConfig: admission and queue limits.
	PollerConfig poller.Config
	// Conn: keys, limits, upstream.
	Conn conn.Config
	// Redis, when set, makes the node use the Redis backplane (and its
	// stream upstream, unless Conn.Upstream is set) instead of the in-memory
	// one. Its Hubs are filled from Hubs.
	Redis *backplane.RedisConfig
	// RetryAfter is the one Retry-After base (seconds) of every 503 the
	// node sends: poller admission and descriptor shedding, accept rate,
	// drain. Default conn.DefaultRetryAfter.
	RetryAfter int
	// RemoteGroupTimeout is the one bound on a group change for a
	// connection on another node and on a REST group add's subscription.
	// Default backplane.DefaultAckTimeout.
	RemoteGroupTimeout time.Duration
	// Webhook, when set, posts client events to HTTP upstreams in Azure
	// SignalR's upstream format (its Settings choose hubs and events),
	// besides the Redis stream upstream. The node fills in AccessKeys,
	// Deliver and Logger.
	Webhook *webhook.Config
	// StreamHubs are the hubs whose events go to the Redis stream upstream
	// (with Redis, when Conn.Upstream is not set): "*" or empty: every
	// hub; otherwise the hubs named (StreamHubsNone: none).
	StreamHubs []string
	// SecondaryAccessKey is accepted besides Conn.AccessKey for REST API
	// tokens, to rotate the access key without downtime (Azure SignalR's
	// secondary key). It needs Conn.AccessKey.
	SecondaryAccessKey string
	// Service, when set, turns on service mode: Azure SignalR Service's
	// /server/ (app server connections) and /client/ (clients they host)
	// on the client port, Default mode. Its AccessKey defaults to
	// Conn.AccessKey. Nil: off.
	Service *service.Config
	// NoTrim disables returning freed memory to the OS after connection
	// bursts (see trim.go).
	NoTrim bool
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns c with every unset field at its default and the
// shared knobs (logger, retry-after, remote-group timeout, hub prefixes)
// copied into the parts' configurations.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.Admin == "" {
		c.Admin = "127.0.0.1:9090"
	}
	if c.Poller == "" {
		c.Poller = "epoll"
	}
	if len(c.Hubs) == 0 {
		c.Hubs = []Hub{{Name: "chat"}}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = conn.DefaultRetryAfter
	}
	if c.RemoteGroupTimeout <= 0 {
		c.RemoteGroupTimeout = backplane.DefaultAckTimeout
	}
	c.Conn.Logger = c.Logger
	c.Conn.RetryAfter = c.RetryAfter
	for _, h := range c.Hubs {
		if h.Path != "" {
			if c.Conn.HubPaths == nil {
				c.Conn.HubPaths = make(map[string]string, len(c.Hubs))
			}
			c.Conn.HubPaths[h.Name] = h.Path
		}
	}
	if c.Service != nil {
		sc := *c.Service
		if sc.AccessKey == "" {
			sc.AccessKey = c.Conn.AccessKey
		}
		if sc.Logger == nil {
			sc.Logger = c.Logger
		}
		if sc.GroupTimeout <= 0 {
			sc.GroupTimeout = c.RemoteGroupTimeout
		}
		c.Service = &sc
	}
	c.PollerConfig.RetryAfter = c.RetryAfter
	if c.Redis != nil {
		rc := *c.Redis
		if rc.Logger == nil {
			rc.Logger = c.Logger
		}
		rc.AckTimeout = c.RemoteGroupTimeout
		rc.Hubs = make(map[string]string, len(c.Hubs))
		for _, h := range c.Hubs {
			rc.Hubs[h.Name] = h.Prefix
		}
		c.Redis = &rc
	}
	return c
}

// Node is a running node. It owns every part and is the only place that
// wires them together.
type Node struct {
	cfg     Config
	log     *slog.Logger
	bp      backplane.Backplane
	router  *fanout.Router
	svc     *service.Service // nil unless service mode
	srv     *conn.Server
	poll    poller.Poller
	metrics *metricset.Registry
	admin   *admin.Handler
	recv    *resultsReceiver // results.go
	fleet   *admin.Fleet
	webhook *webhook.Upstream
	adminLn net.Listener
	http    *http.Server

	keys     *tokenKeys // token-key agreement; nil when a key was given or without Redis
	stopKeys sync.Once

	trimStop, trimDone chan struct{}
	stopTrim           sync.Once
}

// Start assembles and starts a node: backplane, fanout router, connection
// server, poller on the client port, admin on its port. Close takes them
// down in the opposite order.
func Start(cfg Config) (*Node, error) {
	cfg = cfg.WithDefaults()
	if err := checkKeys(cfg.Conn, cfg.SecondaryAccessKey); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, metrics: metricset.NewRegistry()}
	// Undo whatever was started if a later step fails.
	var (
		err     error
		undo    []func()
		started bool
	)
	defer func() {
		if !started {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	names := make([]string, len(cfg.Hubs))
	for i, h := range cfg.Hubs {
		names[i] = h.Name
	}
	var proposal string // a token key to agree on with the fleet
	var userGroups backplane.UserGroupStore
	if cfg.Redis != nil {
		rb, err := backplane.NewRedis(*cfg.Redis)
		if err != nil {
			return nil, fmt.Errorf("redis backplane: %w", err)
		}
		n.bp = rb
		userGroups = rb.UserGroups()
		if cfg.Conn.Upstream == nil {
			cfg.Conn.Upstream = streamHubs(rb.Upstream(), cfg.StreamHubs)
		}
		if cfg.Conn.TokenClaims == nil {
			cfg.Conn.TokenClaims = rb
		}
		if cfg.Conn.TokenKey == "" && cfg.Conn.AccessKey == "" {
			proposal = newTokenKey()
			cfg.Conn.TokenKey = proposal
		}
	} else {
		n.bp = backplane.NewMemory()
	}
	undo = append(undo, func() { n.bp.Close() })
	n.router = fanout.NewRouter(names, n.bp)
	n.router.MaxFrameBytes = cfg.PollerConfig.WithDefaults().MaxQueueBytes
	// The REST API's fleet commands and user groups: its handler is set on
	// the backplane before it starts, and it watches connections arrive
	// (a user's connections join the user's groups).
	n.fleet, err = admin.NewFleet(admin.FleetConfig{
		Router:     n.router,
		Backplane:  n.bp,
		UserGroups: userGroups,
		Conns: admin.ConnCloserFunc(func(hub, id, reason string) bool {
			return n.srv.CloseConnection(hub, id, reason)
		}),
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	undo = append(undo, n.fleet.Close)
	if cfg.Webhook != nil {
		wc := *cfg.Webhook
		for _, k := range []string{cfg.Conn.AccessKey, cfg.SecondaryAccessKey} {
			if k != "" {
				wc.AccessKeys = append(wc.AccessKeys, k)
			}
		}
		if wc.Logger == nil {
			wc.Logger = cfg.Logger
		}
		// An invocation's answer goes to its connection, which is on this
		// node (the event came from it): a MessagePack client gets the
		// MessagePack record as the upstream wrote it.
		wc.Deliver = func(hub, connID string, rec, messagePack []byte) {
			n.router.Deliver(&backplane.Message{Hub: hub, Kind: backplane.Connection, Name: connID, Payload: rec, MessagePack: messagePack})
		}
		if n.webhook, err = webhook.New(wc); err != nil {
			return nil, err
		}
		undo = append(undo, n.webhook.Close)
		cfg.Conn.Upstream = both(cfg.Conn.Upstream, n.webhook)
	}
	if cfg.Conn.Upstream == nil && cfg.Conn.ContextMaxBytes == 0 {
		// Nobody reads a connect context: do not build one per connection
		// for the Fleet's wrapper, which only needs the user id.
		cfg.Conn.ContextMaxBytes = -1
	}
	cfg.Conn.Upstream = n.fleet.Upstream(cfg.Conn.Upstream)
	if cfg.Service != nil {
		for _, name := range names {
			if strings.EqualFold(name, "client") || strings.EqualFold(name, "server") {
				return nil, fmt.Errorf("hub %q: in service mode /client/ and /server/ are Azure SignalR's paths", name)
			}
		}
		n.svc = service.New(*cfg.Service, n.router, n.bp)
		cfg.Conn.Service = n.svc
		undo = append(undo, func() { n.svc.Close() })
	}
	if ret, ok := n.bp.(backplane.Returner); ok && cfg.Conn.Returner == nil {
		cfg.Conn.Returner = ret
	}
	if cfg.Conn.HTTPQueueBytes <= 0 {
		// A long-polling connection's queue between polls: the same
		// bound as a socket's.
		cfg.Conn.HTTPQueueBytes = cfg.PollerConfig.WithDefaults().MaxQueueBytes
	}
	if n.srv, err = conn.New(cfg.Conn, n.router); err != nil {
		return nil, err
	}
	undo = append(undo, func() { n.srv.Close() })
	n.recv = &resultsReceiver{Router: n.router, srv: n.srv}
	if err := n.bp.Start(n.recv); err != nil {
		return nil, fmt.Errorf("start backplane: %w", err)
	}
	n.registerMetrics()
	if proposal != "" {
		// Agree before serving when Redis answers; else in the background.
		n.keys = newTokenKeys(n.bp.(backplane.TokenKeyAgreer), n.bp.Ready, n.srv, proposal, cfg.Logger)
		n.metrics.Register(n.keys.metrics())
		if err := n.keys.check(); err != nil {
			return nil, fmt.Errorf("connection-token key: %w", err)
		}
		if !n.keys.agreed.Load() {
			n.log.Warn("connection-token key not agreed with the fleet yet (Redis unreachable); retrying in the background", "redis_key", backplane.TokenKeyName)
		}
		go n.keys.run()
		undo = append(undo, n.keys.close)
	}

	userReject := cfg.PollerConfig.OnReject
	cfg.PollerConfig.OnReject = func(r poller.RejectReason) {
		n.srv.M.Rejected(string(r))
		if userReject != nil {
			userReject(r)
		}
	}
	if n.poll, err = poller.New(cfg.Poller, cfg.PollerConfig, n.srv); err != nil {
		return nil, err
	}
	undo = append(undo, func() { n.poll.Close() })
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if err := n.poll.Serve(ln); err != nil {
		ln.Close()
		return nil, fmt.Errorf("serve %s: %w", cfg.Listen, err)
	}

	if n.adminLn, err = net.Listen("tcp", cfg.Admin); err != nil {
		return nil, fmt.Errorf("listen admin %s: %w", cfg.Admin, err)
	}
	n.admin, err = admin.New(admin.Config{
		Router:             n.router,
		Backplane:          n.bp,
		Conns:              n.srv,
		Fleet:              n.fleet,
		Metrics:            n.metrics,
		AccessKey:          cfg.Conn.AccessKey,
		SecondaryAccessKey: cfg.SecondaryAccessKey,
		RemoteGroupTimeout: cfg.RemoteGroupTimeout,
		Logger:             cfg.Logger,
	})
	if err != nil {
		n.adminLn.Close()
		return nil, err
	}
	n.recv.admin.Store(n.admin)
	n.http = n.admin.Server()
	go func() {
		if err := n.http.Serve(n.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin server stopped", "err", err)
		}
	}()
	n.trimStop, n.trimDone = make(chan struct{}), make(chan struct{})
	if cfg.NoTrim {
		close(n.trimDone)
	} else {
		go n.trimLoop()
	}
	if cfg.Conn.AccessKey == "" {
		n.log.Warn("no access key configured: client connections and the REST API are open to anyone who can reach them")
	}
	n.log.Info("edgeplane node started", "listen", n.Addr().String(), "admin", n.AdminAddr().String(),
		"poller", cfg.Poller, "hubs", names)
	started = true
	return n, nil
}

// checkKeys refuses access and token keys that protect nothing (too
// short, or a published placeholder); empty keys are allowed (open access,
// random token key). A secondary access key needs a primary one.
func checkKeys(c conn.Config, secondary string) error {
	if secondary != "" && c.AccessKey == "" {
		return errors.New("secondary access key: it needs an access key")
	}
	for _, k := range []struct{ name, key string }{{"access key", c.AccessKey}, {"secondary access key", secondary}, {"token key", c.TokenKey}} {
		if k.key == "" {
			continue
		}
		if err := auth.CheckKey(k.key); err != nil {
			return fmt.Errorf("%s: %w", k.name, err)
		}
	}
	return nil
}

// registerMetrics puts every part's metrics in the node's registry.
func (n *Node) registerMetrics() {
	n.metrics.Register(n.srv.Metrics(), n.router.Metrics(), n.fleet.Metrics())
	if n.webhook != nil {
		n.metrics.Register(n.webhook.Metrics())
	}
	if n.svc != nil {
		n.metrics.Register(n.svc.Metrics())
	}
	if m, ok := n.bp.(interface{ Metrics() *metricset.Set }); ok {
		n.metrics.Register(m.Metrics())
	}
	registerFDMetrics(n.metrics)
}

// Addr is the client address.
func (n *Node) Addr() net.Addr { return n.poll.Addr() }

// AdminAddr is the admin address.
func (n *Node) AdminAddr() net.Addr { return n.adminLn.Addr() }

// Server is the connection server.
func (n *Node) Server() *conn.Server { return n.srv }

// Router is the node's registry of local connections, groups and users.
func (n *Node) Router() *fanout.Router { return n.router }

// Service is the node's service mode, nil when off.
func (n *Node) Service() *service.Service { return n.svc }

// Backplane is the node's backplane.
func (n *Node) Backplane() backplane.Backplane { return n.bp }

// Conns is the number of open client connections.
func (n *Node) Conns() int { return n.poll.Conns() }

// Drain stops the node gracefully: /readyz fails at once, the listener
// closes, connections are closed paced over window (each after what is
// queued for it, with SignalR Close allowReconnect and WebSocket 1012),
// then the node closes. ctx ending cuts the pacing short.
func (n *Node) Drain(ctx context.Context, window time.Duration) error {
	n.admin.SetDraining()
	if err := n.poll.StopAccepting(); err != nil {
		n.log.Warn("stop accepting", "err", err)
	}
	n.srv.Drain(ctx, window)
	// Let the final frames flush; the poller closes each connection once
	// its queue is written (or after its shutdown timeout).
	deadline := time.Now().Add(n.shutdownTimeout() + time.Second)
	for n.poll.Conns() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	n.log.Info("drained", "left", n.poll.Conns())
	return n.Close()
}

func (n *Node) shutdownTimeout() time.Duration {
	if d := n.cfg.PollerConfig.ShutdownTimeout; d > 0 {
		return d
	}
	return poller.DefaultShutdownTimeout
}

// Close takes the node down in order: the poller (stops accepting, closes
// every connection), the admin port, the connection server's timers, the
// REST API's fleet workers, the backplane.
func (n *Node) Close() error {
	n.admin.SetDraining()
	n.stopTrim.Do(func() { close(n.trimStop) })
	<-n.trimDone
	if n.keys != nil {
		n.stopKeys.Do(n.keys.close)
	}
	err := n.poll.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.http.Shutdown(ctx)
	if n.svc != nil {
		n.svc.Close()
	}
	n.srv.Close()
	if n.webhook != nil {
		n.webhook.Close()
	}
	n.fleet.Close()
	if bpErr := n.bp.Close(); err == nil {
		err = bpErr
	}
	return err
}
