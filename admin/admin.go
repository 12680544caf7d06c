package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/poller"
)

// subscriptionWaiter is implemented by backplanes whose subscriptions take
// effect asynchronously (Redis).
type subscriptionWaiter interface {
	WaitSubscribed(ctx context.Context, hub string, kind backplane.Kind, name string) error
}

// maxBody bounds a REST request body.
const maxBody = 1 << 20

// Handler serves the admin port: /metrics, /healthz, /readyz and the REST
// API in the Azure SignalR data-plane shape.
type Handler struct {
	srv      *conn.Server
	log      *slog.Logger
	mux      *http.ServeMux
	draining atomic.Bool
	// RemoteGroupTimeout bounds a group change for a connection on another
	// node (waiting for its ack). Default 5s.
	RemoteGroupTimeout time.Duration
}

// New builds the admin handler for srv.
func New(srv *conn.Server, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{srv: srv, log: log, mux: http.NewServeMux(), RemoteGroupTimeout: 5 * time.Second}
	h.mux.HandleFunc("GET /metrics", h.metrics)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	h.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
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
	return h
}

// SetDraining makes /readyz fail (the node is shutting down).
func (h *Handler) SetDraining() { h.draining.Store(true) }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var buf bytes.Buffer
	metrics.WritePrometheus(&buf, true)
	// process_open_fds and process_max_fds are written here, not with
	// metrics.WriteFDMetrics: that reads /proc/self/fd as a string per
	// descriptor, a megabyte of garbage per scrape at 19,000 connections.
	open, limit := poller.CountOpenFDs(), fdLimit()
	if open >= 0 {
		metrics.WriteGaugeUint64(&buf, "process_open_fds", uint64(open))
	}
	if limit > 0 {
		metrics.WriteGaugeUint64(&buf, "process_max_fds", uint64(limit))
	}
	if open >= 0 && limit > 0 {
		metrics.WriteGaugeUint64(&buf, "edgeplane_fd_headroom", uint64(max(limit-int64(open), 0)))
	}
	withHelp(w, buf.Bytes())
}

func (h *Handler) readyz(w http.ResponseWriter, _ *http.Request) {
	switch {
	case h.draining.Load():
		http.Error(w, "draining", http.StatusServiceUnavailable)
	case !h.srv.Backplane().Ready():
		http.Error(w, "backplane not ready", http.StatusServiceUnavailable)
	default:
		io.WriteString(w, "ready\n")
	}
}

// authorized wraps a REST handler: with an access key configured it
// requires a bearer HS256 JWT signed with it, and it checks the hub.
func (h *Handler) authorized(fn func(http.ResponseWriter, *http.Request)) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		if key := h.srv.AccessKey(); key != "" {
			tok := auth.FromRequest(r.Header.Get("Authorization"), "")
			if tok == "" {
				apiError(w, http.StatusUnauthorized, "missing bearer token")
				return
			}
			if _, err := auth.Verify(tok, []byte(key), time.Now()); err != nil {
				apiError(w, http.StatusUnauthorized, err.Error())
				return
			}
		}
		if h.srv.Router().Hub(r.PathValue("hub")) == nil {
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
		if err := h.srv.Publish(r.Context(), m); err != nil {
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
		hub := h.srv.Router().Hub(hubName)
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
			if sw, isWaiter := h.srv.Backplane().(subscriptionWaiter); isWaiter && action == backplane.GroupAdd {
				ctx, cancel := context.WithTimeout(r.Context(), h.RemoteGroupTimeout)
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
		ctx, cancel := context.WithTimeout(r.Context(), h.RemoteGroupTimeout)
		defer cancel()
		err := h.srv.Backplane().RemoteGroup(ctx, hubName, action, group, id)
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
		hub := h.srv.Router().Hub(r.PathValue("hub"))
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
	if h.srv.CloseConnection(r.PathValue("hub"), r.PathValue("id"), reason) {
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
