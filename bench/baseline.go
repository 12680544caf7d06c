package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/internal/hubproto"
)

// BaselineConfig configures the baseline server.
type BaselineConfig struct {
	// Listen is the client address; Admin the admin/REST/metrics address.
	Listen, Admin string
	// Hub is the only hub served; default "chat".
	Hub string
	// Redis, if set (redis://host:port), switches to the Redis backplane:
	// sends are published there, and the server delivers what arrives on
	// {hub}:all and {hub}:group:*.
	Redis string
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Baseline is the side-by-side reference: the way a Go team would usually
// write a SignalR-speaking WebSocket server. net/http, gorilla/websocket with
// its default 4 KiB buffers, a read goroutine and a write goroutine per
// connection, a buffered channel of 256 outbound messages per connection,
// a ticker per connection for keep-alive pings, a hub map under a mutex.
// Broadcasts encode the record once and hand the same bytes to every
// connection's channel, as the gorilla chat example does.
type Baseline struct {
	cfg      BaselineConfig
	log      *slog.Logger
	upgrader websocket.Upgrader
	rdb      *redis.Client

	mu      sync.RWMutex
	conns   map[string]*bconn
	groups  map[string]map[*bconn]struct{}
	pending map[string]time.Time // negotiated, not yet connected

	open       atomic.Int64
	dropped    atomic.Int64
	deliveries atomic.Int64
	set        *metrics.Set
}

type bconn struct {
	id   string
	ws   *websocket.Conn
	send chan []byte
	once sync.Once
}

// NewBaseline creates a baseline server; Serve runs it.
func NewBaseline(cfg BaselineConfig) *Baseline {
	if cfg.Hub == "" {
		cfg.Hub = "chat"
	}
	b := &Baseline{
		cfg:      cfg,
		log:      cfg.Logger,
		upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
		conns:    map[string]*bconn{},
		groups:   map[string]map[*bconn]struct{}{},
		pending:  map[string]time.Time{},
		set:      metrics.NewSet(),
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.set.NewGauge("baseline_connections", func() float64 { return float64(b.open.Load()) })
	b.set.NewGauge("baseline_deliveries_total", func() float64 { return float64(b.deliveries.Load()) })
	b.set.NewGauge("baseline_dropped_total", func() float64 { return float64(b.dropped.Load()) })
	return b
}

func newID() string {
	var r [16]byte
	_, _ = rand.Read(r[:])
	return base64.RawURLEncoding.EncodeToString(r[:])
}

// Serve listens on both ports and serves until ctx ends.
func (b *Baseline) Serve(ctx context.Context) error {
	cl, err := net.Listen("tcp", b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("baseline: listen %s: %w", b.cfg.Listen, err)
	}
	al, err := net.Listen("tcp", b.cfg.Admin)
	if err != nil {
		cl.Close()
		return fmt.Errorf("baseline: listen %s: %w", b.cfg.Admin, err)
	}
	return b.ServeListeners(ctx, cl, al)
}

// ServeListeners serves on the given listeners until ctx ends.
func (b *Baseline) ServeListeners(ctx context.Context, client, admin net.Listener) error {
	if b.cfg.Redis != "" {
		opt, err := redis.ParseURL(b.cfg.Redis)
		if err != nil {
			return fmt.Errorf("baseline: redis url: %w", err)
		}
		b.rdb = redis.NewClient(opt)
		defer b.rdb.Close()
		ps := b.rdb.PSubscribe(ctx, b.cfg.Hub+":all", b.cfg.Hub+":group:*")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			return fmt.Errorf("baseline: redis subscribe: %w", err)
		}
		go b.consume(ps.Channel(redis.WithChannelSize(4096)))
	}
	cmux := http.NewServeMux()
	cmux.HandleFunc("POST /{hub}/negotiate", b.negotiate)
	cmux.HandleFunc("GET /{hub}", b.upgrade)
	amux := http.NewServeMux()
	amux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		metrics.WritePrometheus(w, true)
		b.set.WritePrometheus(w)
	})
	ok := func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }
	amux.HandleFunc("GET /debug/pprof/heap", pprof.Handler("heap").ServeHTTP)
	amux.HandleFunc("GET /healthz", ok)
	amux.HandleFunc("GET /readyz", ok)
	amux.HandleFunc("POST /api/hubs/{hub}/:send", b.restSend)
	amux.HandleFunc("POST /api/hubs/{hub}/groups/{group}/:send", b.restSend)
	amux.HandleFunc("PUT /api/hubs/{hub}/groups/{group}/connections/{id}", b.restGroupAdd)
	cs := &http.Server{Handler: cmux, ReadHeaderTimeout: 15 * time.Second}
	as := &http.Server{Handler: amux, ReadHeaderTimeout: 15 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- cs.Serve(client) }()
	go func() { errc <- as.Serve(admin) }()
	b.log.Info("baseline listening", "client", client.Addr().String(), "admin", admin.Addr().String(), "redis", b.cfg.Redis)
	select {
	case <-ctx.Done():
	case err := <-errc:
		cs.Close()
		as.Close()
		return fmt.Errorf("baseline: serve: %w", err)
	}
	cs.Close()
	as.Close()
	b.mu.Lock()
	for _, c := range b.conns {
		c.ws.Close()
	}
	b.mu.Unlock()
	return nil
}

func (b *Baseline) negotiate(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("hub") != b.cfg.Hub {
		http.NotFound(w, r)
		return
	}
	id := newID()
	b.mu.Lock()
	b.pending[id] = time.Now()
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"connectionId":     id,
		"connectionToken":  id,
		"negotiateVersion": 1,
		"availableTransports": []any{map[string]any{
			"transport": "WebSockets", "transferFormats": []string{"Text", "Binary"},
		}},
	})
}

func (b *Baseline) upgrade(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("hub") != b.cfg.Hub {
		http.NotFound(w, r)
		return
	}
	id := r.URL.Query().Get("id")
	if id != "" {
		b.mu.Lock()
		_, ok := b.pending[id]
		delete(b.pending, id)
		b.mu.Unlock()
		if !ok {
			http.Error(w, "unknown connection id", http.StatusNotFound)
			return
		}
	} else {
		id = newID()
	}
	ws, err := b.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered already
	}
	c := &bconn{id: id, ws: ws, send: make(chan []byte, 256)}
	go c.writePump()
	go b.readPump(c)
}

func (b *Baseline) readPump(c *bconn) {
	defer b.unregister(c)
	c.ws.SetReadLimit(64 << 10)
	c.ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, msg, err := c.ws.ReadMessage()
	if err != nil || !bytes.Contains(msg, []byte(`"protocol":"json"`)) {
		return
	}
	b.mu.Lock()
	b.conns[c.id] = c
	b.mu.Unlock()
	b.open.Add(1)
	c.send <- hubproto.HandshakeOK
	for {
		c.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, _, err := c.ws.ReadMessage(); err != nil {
			return
		}
	}
}

func (b *Baseline) unregister(c *bconn) {
	b.mu.Lock()
	if _, ok := b.conns[c.id]; ok {
		delete(b.conns, c.id)
		b.open.Add(-1)
		for g, m := range b.groups {
			delete(m, c)
			if len(m) == 0 {
				delete(b.groups, g)
			}
		}
	}
	b.mu.Unlock()
	c.once.Do(func() { close(c.send) })
}

func (c *bconn) writePump() {
	ticker := time.NewTicker(15 * time.Second)
	defer func() {
		ticker.Stop()
		c.ws.Close()
	}()
	for {
		select {
		case msg, ok := <-c.send:
			c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if !ok {
				c.ws.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			if err := c.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
				return
			}
		case <-ticker.C:
			c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.ws.WriteMessage(websocket.TextMessage, hubproto.JSON.Ping()); err != nil {
				return
			}
		}
	}
}

// deliver hands msg to every recipient: to a group's members, or to all
// when group is empty.
func (b *Baseline) deliver(group string, excluded []string, msg []byte) {
	b.mu.RLock()
	var targets []*bconn
	if group == "" {
		targets = make([]*bconn, 0, len(b.conns))
		for _, c := range b.conns {
			targets = append(targets, c)
		}
	} else {
		targets = make([]*bconn, 0, len(b.groups[group]))
		for c := range b.groups[group] {
			targets = append(targets, c)
		}
	}
	b.mu.RUnlock()
	for _, c := range targets {
		if len(excluded) > 0 && contains(excluded, c.id) {
			continue
		}
		select {
		case c.send <- msg:
			b.deliveries.Add(1)
		default: // slow client: drop it, as the gorilla chat hub does
			b.dropped.Add(1)
			c.ws.Close()
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

type sendBody struct {
	Target    string          `json:"target"`
	Arguments json.RawMessage `json:"arguments"`
}

func (b *Baseline) restSend(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("hub") != b.cfg.Hub {
		http.NotFound(w, r)
		return
	}
	var body sendBody
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Target == "" {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	args := body.Arguments
	if len(args) == 0 {
		args = json.RawMessage("[]")
	}
	tj, _ := json.Marshal(body.Target)
	rec := make([]byte, 0, len(args)+len(tj)+40)
	rec = append(rec, `{"type":1,"target":`...)
	rec = append(rec, tj...)
	rec = append(rec, `,"arguments":`...)
	rec = append(rec, args...)
	rec = append(rec, '}', hubproto.RecordSeparator)
	group := r.PathValue("group")
	if b.rdb != nil {
		ch := b.cfg.Hub + ":all"
		if group != "" {
			ch = b.cfg.Hub + ":group:" + group
		}
		if err := b.rdb.Publish(r.Context(), ch, EncodeInvocation(nil, nil, rec)).Err(); err != nil {
			http.Error(w, "backplane unavailable", http.StatusServiceUnavailable)
			return
		}
	} else {
		b.deliver(group, nil, rec)
	}
	w.WriteHeader(http.StatusAccepted)
}

func (b *Baseline) restGroupAdd(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("hub") != b.cfg.Hub {
		http.NotFound(w, r)
		return
	}
	g, id := r.PathValue("group"), r.PathValue("id")
	b.mu.Lock()
	c, ok := b.conns[id]
	if ok {
		m := b.groups[g]
		if m == nil {
			m = map[*bconn]struct{}{}
			b.groups[g] = m
		}
		m[c] = struct{}{}
	}
	b.mu.Unlock()
	if !ok {
		http.Error(w, "connection not found", http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (b *Baseline) consume(ch <-chan *redis.Message) {
	prefix := b.cfg.Hub + ":group:"
	for m := range ch {
		excluded, rec, err := DecodeInvocation([]byte(m.Payload))
		if err != nil {
			b.log.Warn("baseline: bad backplane message", "channel", m.Channel, "err", err)
			continue
		}
		group := ""
		if strings.HasPrefix(m.Channel, prefix) {
			group = strings.TrimPrefix(m.Channel, prefix)
		} else if m.Channel != b.cfg.Hub+":all" {
			continue
		}
		b.deliver(group, excluded, append([]byte(nil), rec...))
	}
}

// BaselineMain runs the baseline server from command-line arguments
// (--listen, --admin, --hub, --redis; env EDGEBENCH_LISTEN, EDGEBENCH_ADMIN)
// until ctx ends.
func BaselineMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	var cfg BaselineConfig
	fs.StringVar(&cfg.Listen, "listen", envOr("EDGEBENCH_LISTEN", "127.0.0.1:8080"), "client address")
	fs.StringVar(&cfg.Admin, "admin", envOr("EDGEBENCH_ADMIN", "127.0.0.1:8081"), "admin/REST/metrics address")
	fs.StringVar(&cfg.Hub, "hub", "chat", "hub name")
	fs.StringVar(&cfg.Redis, "redis", "", "redis://host:port for the Redis backplane (optional)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("baseline: flags: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	return NewBaseline(cfg).Serve(ctx)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
