package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// Config configures the webhook upstream. Settings is required; the zero
// value of every other field is its default.
type Config struct {
	// Settings, in order: the first that matches an event takes it.
	Settings []Setting
	// AccessKeys sign every request: X-ASRS-Signature carries
	// sha256={hex HMAC-SHA256 of the connection id} for each, comma-joined
	// (the primary and the secondary key, as Azure SignalR does). None:
	// no signature header.
	AccessKeys []string
	// Deliver hands an invocation's answer, a Completion, to a client
	// connection of this node: rec is the JSON record (0x1e-terminated),
	// always set; messagePack, for a MessagePack client, the Completion
	// it gets, one MessagePack record behind its VarInt length (nil for a
	// JSON client). Nil: answers are dropped.
	Deliver func(hub, connID string, rec, messagePack []byte)
	// Workers is the number of goroutines posting to the upstreams, each
	// with its own queue; a connection's events always go to the same one,
	// in order. Default 16.
	Workers int
	// QueueSize bounds each worker's queue; an event that does not fit is
	// dropped and counted (Send refuses it: an invocation waiting for a
	// result gets an error Completion). Default 1024.
	QueueSize int
	// Timeout bounds one request, response included. Default 10 s.
	Timeout time.Duration
	// Retries is how many times a connection event is posted again after
	// a network error or a 5xx (invocations are posted once: the upstream
	// may have run it). Default 2.
	Retries int
	// RetryBackoff is the first wait before a retry, doubled each time up
	// to 2 s. Default 250 ms.
	RetryBackoff time.Duration
	// MaxResponseBytes bounds an invocation's answer; a larger one is an
	// error Completion. Default 1 MiB.
	MaxResponseBytes int
	// Client makes the requests. Default: a client of its own, at most
	// Workers connections per upstream host.
	Client *http.Client
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultWorkers          = 16
	DefaultQueueSize        = 1024
	DefaultTimeout          = 10 * time.Second
	DefaultRetries          = 2
	DefaultRetryBackoff     = 250 * time.Millisecond
	DefaultMaxResponseBytes = 1 << 20
	maxBackoff              = 2 * time.Second
)

// Errors Send returns.
var (
	// ErrNoUpstream: no setting takes this invocation.
	ErrNoUpstream = fmt.Errorf("webhook: no upstream setting matches the invocation: %w", backplane.ErrNoUpstream)
	// ErrQueueFull: the event's worker queue is full (a slow or dead
	// upstream); the event is dropped and counted.
	ErrQueueFull = errors.New("webhook: upstream queue full, event dropped")
	// ErrClosed: the upstream was closed.
	ErrClosed = errors.New("webhook: closed")
	// ErrStreamsUnsupported: a stream invocation or one with upload
	// streams; webhooks (as Azure SignalR's upstream) carry neither. The
	// client gets an error Completion (with a Redis stream upstream for
	// the hub too, that one takes it).
	ErrStreamsUnsupported = errors.New("webhook: streaming is not supported by the webhook upstream")
)

// Upstream posts client events to HTTP upstreams in Azure SignalR's
// upstream format (backplane.Upstream). See the package documentation.
type Upstream struct {
	cfg     Config
	log     *slog.Logger
	client  *http.Client
	seed    maphash.Seed
	workers []*worker
	stop    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.RWMutex
	closed  bool

	set *metricset.Set
	m   []settingMetrics // by setting
	// dropped counts events refused because their queue was full, by
	// setting.
	hist *metrics.PrometheusHistogram
}

type settingMetrics struct {
	ok, httpError, failed, dropped, retried *metrics.Counter
}

// worker posts the events of the connections hashed to it, in order.
type worker struct {
	q chan job
	// mu guards conns: the connected event's context of each connection,
	// for the events that follow (X-ASRS-User-Claims, -Client-Query).
	mu    sync.Mutex
	conns map[string]*connInfo
}

type connInfo struct {
	rawClaims []byte   // the access token's payload, until parsed
	claims    []string // "type: value"
	query     string
}

type job struct {
	e       backplane.Event
	setting int // -1: none takes it (the worker only keeps the context)
}

// New starts the workers; Close stops them.
func New(cfg Config) (*Upstream, error) {
	if len(cfg.Settings) == 0 {
		return nil, errors.New("webhook: no upstream settings")
	}
	for _, s := range cfg.Settings {
		if err := s.check(); err != nil {
			return nil, err
		}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	} else if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	u := &Upstream{cfg: cfg, log: cfg.Logger.With("component", "webhook"), seed: maphash.MakeSeed(), stop: make(chan struct{}), set: metricset.New()}
	u.client = cfg.Client
	if u.client == nil {
		u.client = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: cfg.Workers,
			MaxConnsPerHost:     cfg.Workers,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	reqs := u.set.Counters("edgeplane_webhook_requests_total",
		"Webhook requests by upstream (scheme://host of its URL) and outcome: ok (2xx), http_error (another status), failed (no answer: network error, time-out).",
		"upstream", "outcome")
	dropped := u.set.CounterVec("edgeplane_webhook_dropped_total", "upstream",
		"Events refused because their worker's queue was full (a slow or dead upstream), by upstream.")
	retried := u.set.CounterVec("edgeplane_webhook_retries_total", "upstream",
		"Connection events posted again after a failure, by upstream.")
	u.hist = u.set.Histogram("edgeplane_webhook_request_duration_seconds", "Time of one webhook request, response read, whatever its outcome.")
	u.set.Gauge("edgeplane_webhook_queued", "Events waiting for a webhook worker.", func() float64 {
		n := 0
		for _, w := range u.workers {
			n += len(w.q)
		}
		return float64(n)
	})
	for _, s := range cfg.Settings {
		l := s.label()
		u.m = append(u.m, settingMetrics{ok: reqs(l, "ok"), httpError: reqs(l, "http_error"), failed: reqs(l, "failed"), dropped: dropped(l), retried: retried(l)})
	}
	u.workers = make([]*worker, cfg.Workers)
	for i := range u.workers {
		u.workers[i] = &worker{q: make(chan job, cfg.QueueSize), conns: make(map[string]*connInfo)}
	}
	u.wg.Add(len(u.workers))
	for _, w := range u.workers {
		go u.run(w)
	}
	return u, nil
}

// Metrics returns the upstream's metrics.
func (u *Upstream) Metrics() *metricset.Set { return u.set }

// Close stops the workers; what is queued is dropped.
func (u *Upstream) Close() {
	u.closeMu.Lock()
	if u.closed {
		u.closeMu.Unlock()
		return
	}
	u.closed = true
	close(u.stop)
	u.closeMu.Unlock()
	u.wg.Wait()
	if t, ok := u.client.Transport.(*http.Transport); ok && u.cfg.Client == nil {
		t.CloseIdleConnections()
	}
}

// classify names an event as Azure SignalR does.
func classify(e *backplane.Event) (category, event string) {
	switch e.Kind {
	case backplane.EventConnected:
		return CategoryConnections, EventConnected
	case backplane.EventDisconnected:
		return CategoryConnections, EventDisconnected
	}
	return CategoryMessages, e.Target
}

func (u *Upstream) match(hub, category, event string) int {
	for i, s := range u.cfg.Settings {
		if s.Match(hub, category, event) {
			return i
		}
	}
	return -1
}

// servesHub reports whether some setting takes events of hub.
func (u *Upstream) servesHub(hub string) bool {
	for _, s := range u.cfg.Settings {
		if matches(s.HubPattern, hub) {
			return true
		}
	}
	return false
}

// Send implements backplane.Upstream: it queues the event for the worker
// of its connection and never blocks. An invocation no setting takes is
// ErrNoUpstream; a full queue ErrQueueFull (counted).
func (u *Upstream) Send(e *backplane.Event) error {
	switch e.Kind {
	case backplane.EventReconnected:
		// Azure SignalR's upstream has no such event: a resumed socket
		// is the same connection, whose connected event was posted.
		return nil
	case backplane.EventStreamItem, backplane.EventCompletion, backplane.EventCancelInvocation:
		// Nor for streams: Azure SignalR's upstream carries no client
		// streams, and a webhook cannot stream back. Stream invocations
		// are refused below, so these belong to no webhook call.
		return nil
	case backplane.EventInvocation:
		if e.Stream || len(e.StreamIDs) > 0 {
			return ErrStreamsUnsupported
		}
	}
	category, event := classify(e)
	idx := u.match(e.Hub, category, event)
	if idx < 0 && e.Kind == backplane.EventInvocation {
		return ErrNoUpstream
	}
	if !u.servesHub(e.Hub) {
		return nil
	}
	w := u.workers[maphash.String(u.seed, e.ConnID)%uint64(len(u.workers))]
	u.closeMu.RLock()
	defer u.closeMu.RUnlock()
	if u.closed {
		return ErrClosed
	}
	if e.Kind == backplane.EventConnected {
		// The events that follow carry the connection's claims and query:
		// keep them (raw, parsed by the worker when first needed), even if
		// no setting takes the connected event or its queue is full.
		ci := &connInfo{}
		if c := e.Context; c != nil {
			ci.query, ci.rawClaims = c.Query, c.Claims
		}
		w.mu.Lock()
		w.conns[e.ConnID] = ci
		w.mu.Unlock()
		if idx < 0 {
			return nil
		}
	}
	// A disconnected event no setting takes is queued all the same: the
	// worker forgets the connection once its earlier events are posted.
	j := job{e: *e, setting: idx}
	if e.Record != nil {
		// A MessagePack client's record is valid only during Send, and
		// it is the body: the JSON arguments are not needed.
		j.e.Record, j.e.Arguments = slices.Clone(e.Record), nil
	}
	select {
	case w.q <- j:
		return nil
	default:
	}
	if e.Kind == backplane.EventDisconnected {
		w.mu.Lock()
		delete(w.conns, e.ConnID)
		w.mu.Unlock()
	}
	if idx < 0 {
		return nil
	}
	u.m[idx].dropped.Inc()
	return ErrQueueFull
}

func (u *Upstream) run(w *worker) {
	defer u.wg.Done()
	for {
		select {
		case j := <-w.q:
			u.process(w, &j)
		case <-u.stop:
			return
		}
	}
}

func (u *Upstream) process(w *worker, j *job) {
	e := &j.e
	w.mu.Lock()
	ci := w.conns[e.ConnID]
	if e.Kind == backplane.EventDisconnected {
		delete(w.conns, e.ConnID)
	}
	if ci != nil && ci.rawClaims != nil {
		ci.parseClaims()
	}
	w.mu.Unlock()
	if j.setting < 0 {
		return
	}
	category, event := classify(e)
	s := u.cfg.Settings[j.setting]
	m := &u.m[j.setting]
	body, err := eventBody(e)
	if err != nil {
		u.log.Warn("event not posted: cannot encode it", "hub", e.Hub, "connection", e.ConnID, "err", err)
		u.answerError(e, "Invocation failed: "+err.Error())
		return
	}
	url := s.URL(e.Hub, category, event)
	attempts := 1
	if e.Kind != backplane.EventInvocation {
		attempts += u.cfg.Retries
	}
	backoff := u.cfg.RetryBackoff
	for a := 0; a < attempts; a++ {
		if a > 0 {
			m.retried.Inc()
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-u.stop:
				t.Stop()
				return
			}
			backoff = min(2*backoff, maxBackoff)
		}
		status, resp, err := u.post(url, e, category, event, ci, body)
		switch {
		case err != nil:
			m.failed.Inc()
			u.log.Debug("webhook request failed", "url", url, "err", err)
			if a+1 < attempts {
				continue
			}
			u.answerError(e, "Invocation failed: the upstream did not answer")
		case status/100 == 2:
			m.ok.Inc()
			u.answer(e, status, resp)
		default:
			m.httpError.Inc()
			if status >= 500 && a+1 < attempts {
				continue
			}
			u.answerError(e, fmt.Sprintf("Invocation failed, status code %d", status))
		}
		return
	}
}

// post makes one request and returns the status and the body read (at
// most MaxResponseBytes; more is an error).
func (u *Upstream) post(url string, e *backplane.Event, category, event string, ci *connInfo, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), u.cfg.Timeout)
	defer cancel()
	start := time.Now()
	defer u.hist.UpdateDuration(start)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	h := req.Header
	if e.Kind == backplane.EventInvocation && isMessagePack(e) {
		h.Set("Content-Type", "application/x-msgpack")
	} else {
		h.Set("Content-Type", "application/json")
	}
	h.Set("X-ASRS-Connection-Id", e.ConnID)
	h.Set("X-ASRS-Hub", e.Hub)
	h.Set("X-ASRS-Category", category)
	h.Set("X-ASRS-Event", event)
	if e.UserID != "" {
		h.Set("X-ASRS-User-Id", e.UserID)
	}
	if ci != nil {
		for _, c := range ci.claims {
			h.Add("X-ASRS-User-Claims", c)
		}
		if ci.query != "" {
			h.Set("X-ASRS-Client-Query", ci.query)
		}
	}
	if sig := Signature(e.ConnID, u.cfg.AccessKeys); sig != "" {
		h.Set("X-ASRS-Signature", sig)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(u.cfg.MaxResponseBytes)+1))
	if err != nil {
		return 0, nil, err
	}
	if len(b) > u.cfg.MaxResponseBytes {
		return resp.StatusCode, nil, fmt.Errorf("answer over %d bytes", u.cfg.MaxResponseBytes)
	}
	return resp.StatusCode, b, nil
}

// Signature is X-ASRS-Signature for a connection: "sha256=" and the hex
// HMAC-SHA256 of the connection id, one per key, comma-joined ("" without
// keys). Upstreams (the Functions extension) accept a request if any entry
// matches one of their keys.
func Signature(connID string, keys []string) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		m := hmac.New(sha256.New, []byte(k))
		m.Write([]byte(connID))
		b.WriteString("sha256=")
		b.WriteString(hex.EncodeToString(m.Sum(nil)))
	}
	return b.String()
}

// isMessagePack reports whether e came from a MessagePack client.
func isMessagePack(e *backplane.Event) bool {
	return e.Protocol == hubproto.MessagePack.Name()
}

// eventBody is the request body: {"type":10} for connected,
// {"type":11,"error":…} for disconnected, and for an invocation the
// client's Invocation message without framing: JSON without the record
// separator, or for a MessagePack client its own record without the
// VarInt length (application/x-msgpack).
func eventBody(e *backplane.Event) ([]byte, error) {
	switch e.Kind {
	case backplane.EventConnected:
		return []byte(`{"type":10}`), nil
	case backplane.EventDisconnected:
		if e.Reason == "" {
			return []byte(`{"type":11}`), nil
		}
		return json.Marshal(struct {
			Type  int    `json:"type"`
			Error string `json:"error"`
		}{11, e.Reason})
	}
	if !isMessagePack(e) {
		rec, err := hubproto.JSON.AppendInvocation(nil, e.InvocationID, e.Target, e.Arguments)
		if err != nil {
			return nil, err
		}
		return rec[:len(rec)-1], nil
	}
	if e.Record != nil {
		return e.Record, nil
	}
	// A producer that sent the JSON arguments only: the same invocation
	// in MessagePack.
	var args []byte
	if len(e.Arguments) > 0 {
		var err error
		if args, err = hubproto.JSONToMessagePack(nil, e.Arguments); err != nil {
			return nil, err
		}
	}
	framed, err := hubproto.MessagePack.AppendInvocation(nil, e.InvocationID, e.Target, args)
	if err != nil {
		return nil, err
	}
	rec, ok := oneRecord(framed)
	if !ok {
		return nil, errors.New("invocation does not frame")
	}
	return rec, nil
}

// oneRecord returns the record of b when b is exactly one MessagePack
// record behind its VarInt length.
func oneRecord(b []byte) (rec []byte, ok bool) {
	n := 0
	err := hubproto.MessagePack.Split(b, func(r []byte) error {
		rec = r
		n++
		return nil
	})
	return rec, err == nil && n == 1
}

// answer gives a blocking invocation the upstream's 2xx answer, in the
// client's protocol. For a JSON client: a body that is one JSON
// Completion record for the invocation (what the Functions extension
// returns) goes to the client as is; another JSON value becomes the
// Completion's result. For a MessagePack client: a body that is one
// MessagePack Completion record for the invocation, behind its VarInt
// length, goes as is; another body must be one MessagePack value, the
// Completion's result. An empty body is an empty Completion; anything
// else an error Completion.
func (u *Upstream) answer(e *backplane.Event, status int, body []byte) {
	if e.Kind != backplane.EventInvocation || e.InvocationID == "" || u.cfg.Deliver == nil {
		return
	}
	if isMessagePack(e) {
		u.answerMessagePack(e, status, body)
		return
	}
	body = bytes.TrimSpace(body)
	if status == http.StatusNoContent || len(body) == 0 {
		rec, _ := hubproto.JSON.AppendCompletion(nil, e.InvocationID, nil)
		u.cfg.Deliver(e.Hub, e.ConnID, rec, nil)
		return
	}
	if body[len(body)-1] == 0x1e {
		if m, err := hubproto.JSON.Parse(body[:len(body)-1]); err == nil && m.Type == hubproto.TypeCompletion && m.InvocationID == e.InvocationID {
			u.cfg.Deliver(e.Hub, e.ConnID, slices.Clone(body), nil)
			return
		}
		u.answerError(e, "Invocation failed: the upstream's answer is not a Completion of this invocation")
		return
	}
	rec, err := hubproto.JSON.AppendCompletion(nil, e.InvocationID, body)
	if err != nil {
		u.answerError(e, "Invocation failed: the upstream's answer is not JSON")
		return
	}
	u.cfg.Deliver(e.Hub, e.ConnID, rec, nil)
}

// answerMessagePack is answer for a MessagePack client.
func (u *Upstream) answerMessagePack(e *backplane.Event, status int, body []byte) {
	if status == http.StatusNoContent || len(body) == 0 {
		mp, _ := hubproto.MessagePack.AppendCompletion(nil, e.InvocationID, nil)
		u.deliverMessagePack(e, mp)
		return
	}
	if rec, ok := oneRecord(body); ok {
		if m, err := hubproto.MessagePack.Parse(rec); err == nil && m.Type == hubproto.TypeCompletion {
			if m.InvocationID != e.InvocationID {
				u.answerError(e, "Invocation failed: the upstream's answer is not a Completion of this invocation")
				return
			}
			u.deliverMessagePack(e, slices.Clone(body))
			return
		}
	}
	mp, err := hubproto.MessagePack.AppendCompletion(nil, e.InvocationID, body)
	if err != nil {
		u.answerError(e, "Invocation failed: the upstream's answer is neither a MessagePack Completion of this invocation nor one MessagePack value")
		return
	}
	u.deliverMessagePack(e, mp)
}

// deliverMessagePack delivers mp, one framed MessagePack Completion of
// e's invocation, with its JSON form (Deliver's rec: fanout carries
// every message as JSON; a JSON recipient there is none, the connection
// speaks MessagePack). A result JSON cannot say has as JSON form an
// error Completion.
func (u *Upstream) deliverMessagePack(e *backplane.Event, mp []byte) {
	var js []byte
	rec, _ := oneRecord(mp)
	m, err := hubproto.MessagePack.Parse(rec)
	switch {
	case err != nil:
		js = hubproto.JSON.AppendCompletionError(nil, e.InvocationID, "Invocation failed: "+err.Error())
	case m.HasError:
		js = hubproto.JSON.AppendCompletionError(nil, e.InvocationID, m.Error)
	case len(m.Arguments) == 0:
		js, _ = hubproto.JSON.AppendCompletion(nil, e.InvocationID, nil)
	default:
		var result []byte
		if result, err = hubproto.MessagePackToJSON(nil, m.Arguments); err == nil {
			js, err = hubproto.JSON.AppendCompletion(nil, e.InvocationID, result)
		}
		if err != nil {
			js = hubproto.JSON.AppendCompletionError(nil, e.InvocationID, "Invocation failed: the result has no JSON form")
		}
	}
	u.cfg.Deliver(e.Hub, e.ConnID, js, mp)
}

func (u *Upstream) answerError(e *backplane.Event, msg string) {
	if e.Kind != backplane.EventInvocation || e.InvocationID == "" || u.cfg.Deliver == nil {
		return
	}
	js := hubproto.JSON.AppendCompletionError(nil, e.InvocationID, msg)
	var mp []byte
	if isMessagePack(e) {
		mp = hubproto.MessagePack.AppendCompletionError(nil, e.InvocationID, msg)
	}
	u.cfg.Deliver(e.Hub, e.ConnID, js, mp)
}

// reservedClaims are left out of X-ASRS-User-Claims: the token's own
// bookkeeping, not the user's claims.
var reservedClaims = map[string]bool{"aud": true, "exp": true, "iat": true, "nbf": true, "iss": true, "jti": true}

// parseClaims turns the connection's raw claims into the
// X-ASRS-User-Claims values: "type: value", one per value, sorted by type.
// The worker's mu must be held.
func (ci *connInfo) parseClaims() {
	raw := ci.rawClaims
	ci.rawClaims = nil
	var claims map[string]any
	if json.Unmarshal(raw, &claims) != nil {
		return
	}
	keys := make([]string, 0, len(claims))
	for k := range claims {
		if !reservedClaims[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		vs, ok := claims[k].([]any)
		if !ok {
			vs = []any{claims[k]}
		}
		for _, v := range vs {
			s, ok := v.(string)
			if !ok {
				b, _ := json.Marshal(v)
				s = string(b)
			}
			ci.claims = append(ci.claims, k+": "+s)
		}
	}
}
