package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// subscriptionWaiter is implemented by backplanes whose subscriptions take
// effect asynchronously (Redis).
type subscriptionWaiter interface {
	WaitSubscribed(ctx context.Context, hub string, kind backplane.Kind, name string) error
}

// maxBody bounds a REST request body (Azure SignalR's limit: 1 MB).
const maxBody = 1 << 20

// ConnCloser closes a connection held by this node.
type ConnCloser interface {
	// CloseConnection closes connection id of hub with reason; false if
	// it is not connected here.
	CloseConnection(hub, id, reason string) bool
}

// Config is what the admin port serves. Router, Backplane and Conns are
// required; the node assembles them.
type Config struct {
	// Router is the node's registry: which hubs exist, who is connected.
	Router *fanout.Router
	// Backplane carries REST sends and remote group changes to every node.
	Backplane backplane.Backplane
	// Conns closes local connections (REST DELETE).
	Conns ConnCloser
	// Fleet applies fleet commands (closes, user groups, group listings)
	// and holds user-group memberships. Nil: New builds one on Router,
	// Backplane and Conns with an in-memory store (a node without a fleet
	// of its own: tests, tools); the node builds its own before the
	// backplane starts and passes it here.
	Fleet *Fleet
	// Metrics is written on /metrics. Nil: an empty registry (process
	// metrics only).
	Metrics *metricset.Registry
	// AccessKey, when set, makes the REST API and /debug/pprof/ require a
	// bearer JWT (HS256 or HS512) signed with it whose audience is the
	// request URL (auth.Claims.CheckREST) and which carries exp. Empty:
	// the REST API is open and /debug/pprof/ answers loopback clients
	// only.
	AccessKey string
	// SecondaryAccessKey is also accepted for REST tokens, to rotate the
	// access key without downtime (Azure SignalR's secondary key). It
	// needs AccessKey.
	SecondaryAccessKey string
	// RemoteGroupTimeout bounds a group change: waiting for the owning
	// node's ack, or for this node's subscription. Default
	// backplane.DefaultAckTimeout.
	RemoteGroupTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included (Server).
	// Default DefaultReadTimeout.
	ReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long (Server).
	// Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Admin server defaults.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	// MaxProfileSeconds bounds the seconds parameter of /debug/pprof/
	// (CPU profile, trace-like delta profiles): a longer profile would hold
	// the one CPU profiler and a connection for as long as asked.
	MaxProfileSeconds = 60
	// writeTimeout bounds writing a response; it leaves room for the
	// longest profile.
	writeTimeout = (MaxProfileSeconds + 30) * time.Second
)

// Handler serves the admin port: /metrics, /healthz, /readyz and the REST
// API in the Azure SignalR data-plane shape.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	draining atomic.Bool
	fleet    *Fleet
	ownFleet bool
	// hubs maps the lower-cased hub names to the Router's: the Management
	// SDK lower-cases them.
	hubs map[string]string
	inv  invokes // :invoke requests waiting (rest_invoke.go)
}

// New builds the admin handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Router == nil || cfg.Backplane == nil || cfg.Conns == nil {
		return nil, errors.New("admin: Config needs Router, Backplane and Conns")
	}
	if cfg.SecondaryAccessKey != "" && cfg.AccessKey == "" {
		return nil, errors.New("admin: a secondary access key needs a primary one")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metricset.NewRegistry()
	}
	if cfg.RemoteGroupTimeout <= 0 {
		cfg.RemoteGroupTimeout = backplane.DefaultAckTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), fleet: cfg.Fleet, hubs: make(map[string]string)}
	if h.fleet == nil {
		f, err := NewFleet(FleetConfig{Router: cfg.Router, Backplane: cfg.Backplane, Conns: cfg.Conns, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		h.fleet, h.ownFleet = f, true
	}
	for _, name := range cfg.Router.HubNames() {
		h.hubs[strings.ToLower(name)] = name
	}
	h.mux.HandleFunc("GET /metrics", h.metrics)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("GET /debug/pprof/", h.operator(boundedProfile(pprof.Index)))
	h.mux.HandleFunc("GET /debug/pprof/profile", h.operator(boundedProfile(pprof.Profile)))
	h.routes()
	return h, nil
}

// Close stops the Fleet that New built (none when Config.Fleet was given:
// its owner closes it).
func (h *Handler) Close() {
	if h.ownFleet {
		h.fleet.Close()
	}
}

// SetDraining makes /readyz fail (the node is shutting down).
func (h *Handler) SetDraining() { h.draining.Store(true) }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Server is an http.Server for the admin port serving h, with every
// timeout set: a slow or idle client cannot hold a connection and its
// goroutine for longer than ReadHeaderTimeout, ReadTimeout (the request),
// the write timeout (the response, longer than the longest profile) and
// IdleTimeout (between keep-alive requests).
func (h *Handler) Server() *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       h.cfg.ReadTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       h.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
}

func (h *Handler) metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	h.cfg.Metrics.WritePrometheus(w)
}

func (h *Handler) readyz(w http.ResponseWriter, _ *http.Request) {
	switch {
	case h.draining.Load():
		http.Error(w, "draining", http.StatusServiceUnavailable)
	case !h.cfg.Backplane.Ready():
		http.Error(w, "backplane not ready", http.StatusServiceUnavailable)
	default:
		io.WriteString(w, "ready\n")
	}
}

// operator wraps an operator endpoint (/debug/pprof/): with an access key
// it needs a REST token for the request's URL; without one, the node is
// open, and these endpoints answer loopback clients only (a profile shows
// the process' insides to whoever asks).
func (h *Handler) operator(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.AccessKey == "" {
			if ap, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !ap.Addr().IsLoopback() {
				apiError(w, http.StatusForbidden, "without --access-key, /debug/pprof/ answers loopback clients only")
				return
			}
		} else if !h.checkToken(w, r) {
			return
		}
		fn(w, r)
	}
}

// boundedProfile refuses a seconds parameter that is not a whole number
// in [1, MaxProfileSeconds].
func boundedProfile(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("seconds"); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n < 1 || n > MaxProfileSeconds {
				apiError(w, http.StatusBadRequest, fmt.Sprintf("seconds=%q: want a whole number of seconds from 1 to %d", v, MaxProfileSeconds))
				return
			}
		}
		fn(w, r)
	}
}
