package admin

import (
	"context"
	"encoding/json"
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
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// subscriptionWaiter is implemented by backplanes whose subscriptions take
// effect asynchronously (Redis).
type subscriptionWaiter interface {
	WaitSubscribed(ctx context.Context, hub string, kind backplane.Kind, name string) error
}

// maxBody bounds a REST request body.
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
	// Metrics is written on /metrics. Nil: an empty registry (process
	// metrics only).
	Metrics *metricset.Registry
	// AccessKey, when set, makes the REST API and /debug/pprof/ require a
	// bearer HS256 JWT signed with it whose audience is the request URL
	// (auth.Claims.CheckREST) and which carries exp. Empty: the REST API is
	// open and /debug/pprof/ answers loopback clients only.
	AccessKey string
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
}

// New builds the admin handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Router == nil || cfg.Backplane == nil || cfg.Conns == nil {
		return nil, errors.New("admin: Config needs Router, Backplane and Conns")
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
	h := &Handler{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /metrics", h.metrics)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("GET /debug/pprof/", h.operator(boundedProfile(pprof.Index)))
	h.mux.HandleFunc("GET /debug/pprof/profile", h.operator(boundedProfile(pprof.Profile)))
	h.mux.HandleFunc("HEAD /api/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	h.mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	api := func(pattern string, fn func(http.ResponseWriter, *http.Request)) {
		h.mux.HandleFunc(pattern, h.authorized(fn))
	}
	api("POST /api/hubs/{hub}/:send", h.send(backplane.All, ""))
	api("POST /api/hubs/{hub}/groups/{name}/:send", h.send(backplane.Group, "name"))
	api("POST /api/hubs/{hub}/users/{name}/:send", h.send(backplane.User, "name"))
	api("POST /api/hubs/{hub}/connections/{name}/:send", h.send(backplane.Connection, "name"))
	api("PUT /api/hubs/{hub}/groups/{group}/connections/{id}", h.group(backplane.GroupAdd))
	api("DELETE /api/hubs/{hub}/groups/{group}/connections/{id}", h.group(backplane.GroupRemove))
	api("HEAD /api/hubs/{hub}/connections/{id}", h.exists(existsConn))
	api("HEAD /api/hubs/{hub}/groups/{group}", h.exists(existsGroup))
	api("HEAD /api/hubs/{hub}/users/{user}", h.exists(existsUser))
	api("DELETE /api/hubs/{hub}/connections/{id}", h.closeConn)
	return h, nil
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

// checkToken enforces the access key, if one is configured: a bearer HS256
// JWT signed with it, with exp, whose audience is this request's URL (a
// client's access token, whose audience is its hub, is refused). It
// answers 401 itself and returns false when the request may not proceed.
func (h *Handler) checkToken(w http.ResponseWriter, r *http.Request) bool {
	key := h.cfg.AccessKey
	if key == "" {
		return true
	}
	tok := auth.FromRequest(r.Header.Get("Authorization"), "")
	if tok == "" {
		unauthorized(w, "missing bearer token")
		return false
	}
	c, err := auth.Verify(tok, []byte(key), time.Now())
	if err == nil {
		err = c.CheckREST(r.Host, r.URL.Path)
	}
	if err != nil {
		unauthorized(w, err.Error())
		return false
	}
	return true
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", "Bearer")
	apiError(w, http.StatusUnauthorized, msg)
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

// authorized wraps a REST handler: the access key's token check
// (checkToken), then the hub must exist.
func (h *Handler) authorized(fn func(http.ResponseWriter, *http.Request)) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.checkToken(w, r) {
			return
		}
		if h.cfg.Router.Hub(r.PathValue("hub")) == nil {
			apiError(w, http.StatusNotFound, fmt.Sprintf("unknown hub %q", r.PathValue("hub")))
			return
		}
		fn(w, r)
	}
}

type sendBody struct {
	Target    string          `json:"target"`
	Arguments json.RawMessage `json:"arguments"`
}

func (h *Handler) send(kind backplane.Kind, nameVar string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		var body sendBody
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		if err := dec.Decode(&body); err != nil {
			if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
				apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", tooBig.Limit))
				return
			}
			apiError(w, http.StatusBadRequest, "invalid body: "+err.Error())
			return
		}
		if body.Target == "" {
			apiError(w, http.StatusBadRequest, "invalid body: target is required")
			return
		}
		if len(body.Arguments) > 0 && strings.TrimSpace(string(body.Arguments))[0] != '[' {
			apiError(w, http.StatusBadRequest, "invalid body: arguments must be a JSON array")
			return
		}
		rec, err := hubproto.JSON.AppendInvocation(nil, "", body.Target, body.Arguments)
		if err != nil {
			apiError(w, http.StatusBadRequest, err.Error())
			return
		}
		// What every node's router would drop, refused here with the
		// reason: a record that is not UTF-8 would break every recipient's
		// connection, one larger than a connection's queue would reach no
		// one.
		if err := h.cfg.Router.Check(rec); err != nil {
			if errors.Is(err, fanout.ErrTooLarge) {
				apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf(
					"message too large: its frame would be %d bytes, a connection's outbound queue holds at most %d (--max-queue-bytes)",
					fanout.FrameSize(len(rec)), h.cfg.Router.MaxFrameBytes))
				return
			}
			apiError(w, http.StatusBadRequest, "invalid body: arguments are not valid UTF-8")
			return
		}
		m := &backplane.Message{Hub: r.PathValue("hub"), Kind: kind, Payload: rec}
		if nameVar != "" {
			m.Name = r.PathValue(nameVar)
		}
		for _, ex := range r.URL.Query()["excluded"] {
			for _, id := range strings.Split(ex, ",") {
				if id != "" {
					m.Excluded = append(m.Excluded, id)
				}
			}
		}
		if err := h.cfg.Backplane.Publish(r.Context(), m); err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, backplane.ErrUnavailable) || errors.Is(err, backplane.ErrClosed) {
				code = http.StatusServiceUnavailable
			}
			apiError(w, code, "publish: "+err.Error())
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

func (h *Handler) group(action backplane.GroupAction) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		hubName, group, id := r.PathValue("hub"), r.PathValue("group"), r.PathValue("id")
		hub := h.cfg.Router.Hub(hubName)
		var ok bool
		if action == backplane.GroupAdd {
			ok = hub.AddToGroup(id, group)
		} else {
			ok = hub.RemoveFromGroup(id, group)
		}
		if ok {
			// Like ASP.NET's AddToGroupAsync, an add completes once this
			// node's subscription to the group is confirmed, so a send
			// right after it reaches the new member.
			if sw, isWaiter := h.cfg.Backplane.(subscriptionWaiter); isWaiter && action == backplane.GroupAdd {
				ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RemoteGroupTimeout)
				err := sw.WaitSubscribed(ctx, hubName, backplane.Group, group)
				cancel()
				if err != nil {
					apiError(w, http.StatusServiceUnavailable, "group subscription not confirmed by the backplane: "+err.Error())
					return
				}
			}
			w.WriteHeader(http.StatusOK)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RemoteGroupTimeout)
		defer cancel()
		err := h.cfg.Backplane.RemoteGroup(ctx, hubName, action, group, id)
		switch {
		case err == nil:
			w.WriteHeader(http.StatusOK)
		case errors.Is(err, backplane.ErrNotFound):
			apiError(w, http.StatusNotFound, fmt.Sprintf("connection %q not found on any node", id))
		default:
			apiError(w, http.StatusServiceUnavailable, "group command: "+err.Error())
		}
	}
}

const (
	existsConn = iota
	existsGroup
	existsUser
)

// exists answers HEAD checks for what is connected to this node.
func (h *Handler) exists(what int) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		hub := h.cfg.Router.Hub(r.PathValue("hub"))
		var ok bool
		switch what {
		case existsConn:
			ok = hub.Lookup(r.PathValue("id"))
		case existsGroup:
			ok = hub.GroupLen(r.PathValue("group")) > 0
		case existsUser:
			ok = hub.UserLen(r.PathValue("user")) > 0
		}
		if ok {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusNotFound)
		}
	}
}

func (h *Handler) closeConn(w http.ResponseWriter, r *http.Request) {
	reason := r.URL.Query().Get("reason")
	if reason == "" {
		reason = "closed by the server"
	}
	if h.cfg.Conns.CloseConnection(r.PathValue("hub"), r.PathValue("id"), reason) {
		w.WriteHeader(http.StatusOK)
		return
	}
	apiError(w, http.StatusNotFound, fmt.Sprintf("connection %q not found", r.PathValue("id")))
}

func apiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg})
}
