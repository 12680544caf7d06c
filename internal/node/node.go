// Package node assembles an edgeplane node: poller, connection server,
// backplane and admin port. cmd/edgeplane maps flags onto Config; tests
// start nodes with it too.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/edgeplane/edgeplane/admin"
	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/poller"
)

// Config is a node's configuration. The zero value works: client port
// 127.0.0.1:8080, admin port 127.0.0.1:9090, hub "chat", epoll backend.
type Config struct {
	// Listen is the client address. Default 127.0.0.1:8080.
	Listen string
	// Admin is the admin/REST address. Default 127.0.0.1:9090.
	Admin string
	// Poller is the backend name. Default "epoll" (our own loop: ~7× denser
	// than "netpoll" at 19,000 idle connections, see BENCHMARKS.md).
	Poller string
	// PollerConfig: admission and queue limits.
	PollerConfig poller.Config
	// Conn: hubs, keys, limits, backplane, upstream.
	Conn conn.Config
	// Redis, when set, makes the node use the Redis backplane (and its
	// stream upstream, unless Conn.Upstream is set) instead of the in-memory
	// one. Hubs not in Redis.Hubs get the default prefix (the hub name).
	Redis *backplane.RedisConfig
	// NoTrim disables returning freed memory to the OS after connection
	// bursts (see trim.go).
	NoTrim bool
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Node is a running node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	srv     *conn.Server
	poll    poller.Poller
	admin   *admin.Handler
	adminLn net.Listener
	http    *http.Server

	trimStop, trimDone chan struct{}
	stopTrim           sync.Once
}

// Start starts a node.
func Start(cfg Config) (*Node, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if cfg.Admin == "" {
		cfg.Admin = "127.0.0.1:9090"
	}
	if cfg.Poller == "" {
		cfg.Poller = "epoll"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Conn.Logger = cfg.Logger
	if cfg.Redis != nil {
		rc := *cfg.Redis
		if rc.Logger == nil {
			rc.Logger = cfg.Logger
		}
		if rc.Hubs == nil {
			rc.Hubs = map[string]string{}
		}
		hubs := cfg.Conn.Hubs
		if len(hubs) == 0 {
			hubs = []string{"chat"}
		}
		for _, h := range hubs {
			if _, ok := rc.Hubs[h]; !ok {
				rc.Hubs[h] = ""
			}
		}
		rb, err := backplane.NewRedis(rc)
		if err != nil {
			return nil, fmt.Errorf("redis backplane: %w", err)
		}
		cfg.Conn.Backplane = rb
		if cfg.Conn.Upstream == nil {
			cfg.Conn.Upstream = rb.Upstream()
		}
	}
	srv, err := conn.New(cfg.Conn)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, srv: srv}
	userReject := cfg.PollerConfig.OnReject
	cfg.PollerConfig.OnReject = func(r poller.RejectReason) {
		srv.M.Rejected(string(r))
		if userReject != nil {
			userReject(r)
		}
	}
	n.poll, err = poller.New(cfg.Poller, cfg.PollerConfig, srv)
	if err != nil {
		srv.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if err := n.poll.Serve(ln); err != nil {
		ln.Close()
		srv.Close()
		return nil, fmt.Errorf("serve %s: %w", cfg.Listen, err)
	}
	n.adminLn, err = net.Listen("tcp", cfg.Admin)
	if err != nil {
		n.poll.Close()
		srv.Close()
		return nil, fmt.Errorf("listen admin %s: %w", cfg.Admin, err)
	}
	n.admin = admin.New(srv, cfg.Logger)
	n.http = &http.Server{Handler: n.admin, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
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
		"poller", cfg.Poller, "hubs", srv.Hubs())
	return n, nil
}

// Addr is the client address.
func (n *Node) Addr() net.Addr { return n.poll.Addr() }

// AdminAddr is the admin address.
func (n *Node) AdminAddr() net.Addr { return n.adminLn.Addr() }

// Server is the connection server.
func (n *Node) Server() *conn.Server { return n.srv }

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

// Close stops accepting, closes every connection, the admin port and the
// backplane.
func (n *Node) Close() error {
	n.admin.SetDraining()
	n.stopTrim.Do(func() { close(n.trimStop) })
	<-n.trimDone
	err := n.poll.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.http.Shutdown(ctx)
	n.srv.Close()
	return err
}
