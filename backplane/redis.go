package backplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane/wire"
)

// RedisConfig configures the Redis backplane. The zero value (with a
// receiver given to Start) connects to redis://127.0.0.1:6379. Defaults are
// applied by NewRedis, in withDefaults.
type RedisConfig struct {
	// URL of a single Redis server: redis://[user:password@]host:port[/db]
	// (rediss:// for TLS). Default: redis://127.0.0.1:6379 unless Addr or
	// ClusterAddrs is set.
	URL string
	// Addr is host:port of a single Redis server; used when URL is empty.
	Addr string
	// ClusterAddrs are seed addresses of a Redis Cluster (Redis 7+). With
	// them the backplane uses sharded pub/sub (SSUBSCRIBE/SPUBLISH).
	// Exclusive with URL and Addr.
	ClusterAddrs []string
	// ServerName identifies this node in group commands and names its ack
	// channel P:internal:ack:{ServerName}; it must be unique in the fleet.
	// Default: {hostname}_{32 random hex digits}, as ASP.NET Core does.
	ServerName string
	// Hubs maps hub names to channel prefixes. An empty prefix means the hub
	// name; set the hub's .NET full type name to share channels with an
	// ASP.NET Core app. Listed hubs are subscribed (P:all,
	// P:internal:groups, the ack channel) at Start; other hubs use their
	// name as prefix and are subscribed on first use.
	Hubs map[string]string
	// AckTimeout is how long RemoteGroup waits for the owning node's ack
	// before answering ErrNotFound. Default: 5 s.
	AckTimeout time.Duration
	// PublishTimeout bounds one PUBLISH (and its retries). Default: 2 s.
	PublishTimeout time.Duration
	// HealthInterval: a subscription connection idle this long is pinged.
	// Default: 2 s.
	HealthInterval time.Duration
	// UpstreamMaxLen bounds each hub's upstream stream (XADD MAXLEN ~).
	// Default: 100,000 entries.
	UpstreamMaxLen int64
	// UpstreamBuffer is how many upstream events may wait for the writer
	// before Send refuses them. Default: 10,000.
	UpstreamBuffer int
	// Logger. Default: slog.Default().
	Logger *slog.Logger
}

const (
	defaultAckTimeout     = DefaultAckTimeout
	defaultPublishTimeout = 2 * time.Second
	defaultHealthInterval = 2 * time.Second
	defaultUpstreamMaxLen = 100_000
	defaultUpstreamBuffer = 10_000
	// startWait: how long Start waits for the first subscriptions to be
	// confirmed before it returns with the backplane not ready.
	startWait = 3 * time.Second
	// ackQueue bounds the acks waiting to be published.
	ackQueue = 1024
)

// withDefaults is the one place defaults are applied.
func (c RedisConfig) withDefaults() RedisConfig {
	if c.URL == "" && c.Addr == "" && len(c.ClusterAddrs) == 0 {
		c.Addr = "127.0.0.1:6379"
	}
	if c.ServerName == "" {
		c.ServerName = defaultServerName()
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = defaultAckTimeout
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = defaultPublishTimeout
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = defaultHealthInterval
	}
	if c.UpstreamMaxLen <= 0 {
		c.UpstreamMaxLen = defaultUpstreamMaxLen
	}
	if c.UpstreamBuffer <= 0 {
		c.UpstreamBuffer = defaultUpstreamBuffer
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func defaultServerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "edgeplane"
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return host + "_" + hex.EncodeToString(b[:])
}

// chanKind is what a subscribed channel carries.
type chanKind uint8

const (
	chanAll                 = chanKind(All)
	chanGroup               = chanKind(Group)
	chanUser                = chanKind(User)
	chanConnection          = chanKind(Connection)
	chanGroups     chanKind = 10 // P:internal:groups
	chanAck        chanKind = 11 // P:internal:ack:{this server}
)

// route is what a channel name stands for.
type route struct {
	hub       string
	kind      chanKind
	confirmed bool // Redis confirmed the subscription (guarded by r.mu)
	name      string
}

// Redis is the Redis pub/sub backplane, in the ASP.NET Core SignalR Redis
// wire format. See the package documentation for channels and payloads.
//
// Lock order: mu, then stateMu; subMu is taken alone. No lock is held
// during Redis I/O or while calling the Receiver.
type Redis struct {
	cfg     RedisConfig
	log     *slog.Logger
	name    string
	cluster bool
	client  redis.UniversalClient
	cc      *redis.ClusterClient // cluster mode
	sc      *redis.Client        // single-server mode

	recv    Receiver
	started atomic.Bool
	closed  atomic.Bool
	stop    chan struct{}
	wg      sync.WaitGroup

	// mu guards the subscription state below.
	mu        sync.RWMutex
	hubs      map[string]struct{}
	routes    map[string]route // channels subscribed or about to be
	pending   map[string]bool  // channel → subscribe (true) / unsubscribe (false), not yet sent
	active    map[string]struct{}
	gen       uint64 // changes queued
	doneGen   uint64 // changes written
	flushed   chan struct{}
	confirmed chan struct{} // closed and replaced when a subscription is confirmed
	kick      chan struct{}

	// subMu guards subs (written by the flusher only).
	subMu sync.Mutex
	subs  map[uint16]*subscriber // by hash slot; slot 0 in single-server mode

	// stateMu guards the connection state.
	stateMu     sync.Mutex
	downN       int // subscribers not connected
	everUp      bool
	downSince   time.Time
	downCounted time.Time   // down time is added to mDownSeconds up to here
	ready       atomic.Bool // downN == 0 && everUp; written under stateMu
	pubFailing  atomic.Bool // the last command round trip (PING or PUBLISH) failed

	ackMu   sync.Mutex
	waiters map[int32]chan struct{}
	ackID   atomic.Int32
	acks    chan ackReq

	upOnce   sync.Once
	upstream *RedisUpstream

	errLog rateLog
}

type ackReq struct {
	channel string
	id      int32
	// wait, if set, is the group channel whose subscription must be
	// confirmed before the ack (an add completes once the node can
	// receive the group's messages).
	hub, group string
	add        bool
}

// NewRedis validates cfg and creates the client. Nothing is connected until
// Start.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	cfg = cfg.withDefaults()
	r := &Redis{
		cfg:       cfg,
		name:      cfg.ServerName,
		hubs:      make(map[string]struct{}),
		routes:    make(map[string]route),
		pending:   make(map[string]bool),
		active:    make(map[string]struct{}),
		flushed:   make(chan struct{}),
		confirmed: make(chan struct{}),
		kick:      make(chan struct{}, 1),
		subs:      make(map[uint16]*subscriber),
		waiters:   make(map[int32]chan struct{}),
		acks:      make(chan ackReq, ackQueue),
		stop:      make(chan struct{}),
	}
	r.log = cfg.Logger.With("component", "backplane", "server", r.name)
	r.errLog.every = time.Second
	for hub := range cfg.Hubs {
		if hub == "" {
			return nil, fmt.Errorf("backplane: empty hub name in Hubs")
		}
	}
	switch {
	case len(cfg.ClusterAddrs) > 0:
		if cfg.URL != "" || cfg.Addr != "" {
			return nil, fmt.Errorf("backplane: ClusterAddrs and URL/Addr are exclusive")
		}
		r.cluster = true
		r.cc = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:           cfg.ClusterAddrs,
			Protocol:        2,
			DisableIdentity: true,
			DialTimeout:     time.Second,
			ReadTimeout:     cfg.PublishTimeout,
			WriteTimeout:    cfg.PublishTimeout,
			PoolTimeout:     cfg.PublishTimeout,
			MaxRetries:      2,
		})
		r.client = r.cc
	default:
		opt := &redis.Options{Addr: cfg.Addr}
		if cfg.URL != "" {
			var err error
			if opt, err = redis.ParseURL(cfg.URL); err != nil {
				return nil, fmt.Errorf("backplane: redis URL %q: %w", cfg.URL, err)
			}
		}
		opt.Protocol = 2
		opt.DisableIdentity = true
		opt.DialTimeout = time.Second
		opt.ReadTimeout = cfg.PublishTimeout
		opt.WriteTimeout = cfg.PublishTimeout
		opt.PoolTimeout = cfg.PublishTimeout
		opt.MaxRetries = 2
		r.sc = redis.NewClient(opt)
		r.client = r.sc
	}
	return r, nil
}

// ServerName is this node's name in group commands.
func (r *Redis) ServerName() string { return r.name }

// Client is the underlying go-redis client (for tools and tests).
func (r *Redis) Client() redis.UniversalClient { return r.client }

// Prefix is the channel prefix of hub.
func (r *Redis) Prefix(hub string) string {
	if p := r.cfg.Hubs[hub]; p != "" {
		return p
	}
	return hub
}

// Channel is the channel a message of kind for name is published on.
func (r *Redis) Channel(hub string, kind Kind, name string) string {
	p := r.Prefix(hub)
	switch kind {
	case All:
		return p + ":all"
	case Group:
		return p + ":group:" + name
	case User:
		return p + ":user:" + name
	default:
		return p + ":connection:" + name
	}
}

// Start implements Backplane: it subscribes the configured hubs' P:all,
// P:internal:groups and ack channels and waits (briefly) until Redis
// confirms them. Redis being unreachable is not an error: the backplane
// keeps retrying and Ready reports false meanwhile.
func (r *Redis) Start(recv Receiver) error {
	if recv == nil {
		return errors.New("backplane: Start with a nil Receiver")
	}
	if r.closed.Load() {
		return ErrClosed
	}
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("backplane: Start called twice")
	}
	r.recv = recv
	r.stateMu.Lock()
	r.downSince = time.Now()
	r.downCounted = r.downSince
	r.stateMu.Unlock()

	r.wg.Add(3)
	go r.flusher()
	go r.health()
	go r.ackSender()

	r.mu.Lock()
	for hub := range r.cfg.Hubs {
		r.addHubLocked(hub)
	}
	r.mu.Unlock()
	r.signal()

	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	_ = r.waitFlushed(ctx)
	for !r.Ready() && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !r.Ready() {
		r.log.Warn("redis backplane not reachable yet; retrying in the background", "redis", r.target())
	} else {
		r.log.Info("redis backplane connected", "redis", r.target(), "cluster", r.cluster)
	}
	return nil
}

func (r *Redis) target() string {
	switch {
	case r.cluster:
		return strings.Join(r.cfg.ClusterAddrs, ",")
	case r.sc != nil:
		return r.sc.Options().Addr
	}
	return ""
}

// addHubLocked queues the static channels of a hub not seen before and
// reports whether it was new. r.mu must be held.
func (r *Redis) addHubLocked(hub string) bool {
	if _, ok := r.hubs[hub]; ok {
		return false
	}
	r.hubs[hub] = struct{}{}
	p := r.Prefix(hub)
	r.wantLocked(p+":all", route{hub: hub, kind: chanAll}, true)
	r.wantLocked(p+":internal:groups", route{hub: hub, kind: chanGroups}, true)
	r.wantLocked(p+":internal:ack:"+r.name, route{hub: hub, kind: chanAck}, true)
	return true
}

// ensureHub makes sure hub's static channels are (being) subscribed and
// reports whether it queued them now.
func (r *Redis) ensureHub(hub string) bool {
	r.mu.RLock()
	_, ok := r.hubs[hub]
	r.mu.RUnlock()
	if ok {
		return false
	}
	r.mu.Lock()
	added := r.addHubLocked(hub)
	r.mu.Unlock()
	if added {
		r.signal()
	}
	return added
}

// wantLocked records a subscription change for the flusher. r.mu must be
// held.
func (r *Redis) wantLocked(ch string, rt route, sub bool) {
	if sub {
		if _, ok := r.routes[ch]; !ok {
			r.routes[ch] = rt
		}
	}
	r.pending[ch] = sub
	r.gen++
}

func (r *Redis) signal() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Subscribe implements Backplane. It does not block: the change is queued
// and written with others in one SUBSCRIBE.
func (r *Redis) Subscribe(hub string, kind Kind, name string) {
	if r.closed.Load() {
		return
	}
	r.ensureHub(hub)
	ch := r.Channel(hub, kind, name)
	r.mu.Lock()
	r.wantLocked(ch, route{hub: hub, kind: chanKind(kind), name: name}, true)
	r.mu.Unlock()
	r.signal()
}

// Unsubscribe implements Backplane; like Subscribe it only queues the
// change. A Subscribe and Unsubscribe of the same channel between two
// flushes cancel out.
func (r *Redis) Unsubscribe(hub string, kind Kind, name string) {
	if r.closed.Load() || kind == All {
		return // P:all stays subscribed
	}
	ch := r.Channel(hub, kind, name)
	r.mu.Lock()
	if _, ok := r.routes[ch]; ok {
		r.wantLocked(ch, route{}, false)
	}
	r.mu.Unlock()
	r.signal()
}

// waitFlushed waits until every subscription change queued before the call
// has been written to Redis (not necessarily confirmed by it).
func (r *Redis) waitFlushed(ctx context.Context) error {
	r.mu.RLock()
	gen := r.gen
	r.mu.RUnlock()
	for {
		r.mu.RLock()
		done, ch := r.doneGen >= gen, r.flushed
		r.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.stop:
			return ErrClosed
		}
	}
}

// confirm records Redis's confirmation of a (s)subscribe and wakes
// WaitSubscribed callers.
func (r *Redis) confirm(ch string) {
	r.mu.Lock()
	if rt, ok := r.routes[ch]; ok && !rt.confirmed {
		rt.confirmed = true
		r.routes[ch] = rt
		close(r.confirmed)
		r.confirmed = make(chan struct{})
	}
	r.mu.Unlock()
}

// WaitSubscribed waits until Redis has confirmed this node's subscription
// to the channel of (hub, kind, name), so that a reply published to it from
// now on is delivered. It returns at once if the node has not asked for
// that subscription, and ctx's error on time-out.
func (r *Redis) WaitSubscribed(ctx context.Context, hub string, kind Kind, name string) error {
	ch := r.Channel(hub, kind, name)
	for {
		r.mu.RLock()
		rt, ok := r.routes[ch]
		wake := r.confirmed
		r.mu.RUnlock()
		if !ok || rt.confirmed {
			return nil // not subscribed (nothing to wait for), or confirmed
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.stop:
			return ErrClosed
		}
	}
}

// flusher writes queued subscription changes: everything queued while the
// previous batch was being written goes out in one command per slot.
func (r *Redis) flusher() {
	defer r.wg.Done()
	for {
		select {
		case <-r.kick:
		case <-r.stop:
			return
		}
		r.flush()
	}
}

func (r *Redis) flush() {
	r.mu.Lock()
	gen := r.gen
	var subs, unsubs []string
	for ch, want := range r.pending {
		_, isActive := r.active[ch]
		switch {
		case want && !isActive:
			subs = append(subs, ch)
			r.active[ch] = struct{}{}
		case !want && isActive:
			unsubs = append(unsubs, ch)
			delete(r.active, ch)
			delete(r.routes, ch)
		case !want:
			delete(r.routes, ch)
		}
	}
	clear(r.pending)
	r.mu.Unlock()

	mSubscriptions.Add(float64(len(subs) - len(unsubs)))
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.PublishTimeout)
	if r.cluster {
		bySlot := make(map[uint16][2][]string)
		for _, ch := range subs {
			s := hashSlot(ch)
			e := bySlot[s]
			e[0] = append(e[0], ch)
			bySlot[s] = e
		}
		for _, ch := range unsubs {
			s := hashSlot(ch)
			e := bySlot[s]
			e[1] = append(e[1], ch)
			bySlot[s] = e
		}
		for slot, e := range bySlot {
			r.apply(ctx, slot, e[0], e[1])
		}
	} else if len(subs)+len(unsubs) > 0 {
		r.apply(ctx, 0, subs, unsubs)
	}
	cancel()

	r.mu.Lock()
	if gen > r.doneGen {
		r.doneGen = gen
	}
	close(r.flushed)
	r.flushed = make(chan struct{})
	r.mu.Unlock()
}

// apply sends one batch of changes for one slot's subscriber, creating or
// closing the subscriber as needed. Only the flusher calls it.
func (r *Redis) apply(ctx context.Context, slot uint16, subs, unsubs []string) {
	r.subMu.Lock()
	s := r.subs[slot]
	r.subMu.Unlock()
	if s == nil {
		if len(subs) == 0 {
			return
		}
		s = r.newSubscriber(ctx, slot, subs)
		r.subMu.Lock()
		r.subs[slot] = s
		r.subMu.Unlock()
		return
	}
	s.nchan += len(subs) - len(unsubs)
	if len(unsubs) > 0 {
		mSubscribeCmds.Inc()
		var err error
		if r.cluster {
			err = s.ps.SUnsubscribe(ctx, unsubs...)
		} else {
			err = s.ps.Unsubscribe(ctx, unsubs...)
		}
		if err != nil {
			r.log.Debug("unsubscribe not written; the reconnect will not restore it", "channels", len(unsubs), "err", err)
		}
	}
	if r.cluster && s.nchan <= 0 {
		r.subMu.Lock()
		delete(r.subs, slot)
		r.subMu.Unlock()
		s.close()
		return
	}
	if len(subs) > 0 {
		mSubscribeCmds.Inc()
		if err := s.subscribe(ctx, subs); err != nil {
			r.log.Debug("subscribe not written; the reconnect will restore it", "channels", len(subs), "err", err)
		}
	}
}

// Publish implements Backplane. It encodes [[excluded], {"json": payload}]
// and publishes it on the message's channel; this node receives it back
// through its own subscription like every other node. While Redis is
// unreachable it fails fast with ErrUnavailable and counts the message as
// lost.
func (r *Redis) Publish(ctx context.Context, m *Message) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if m.Kind < All || m.Kind > Connection {
		return fmt.Errorf("backplane: publish: invalid message kind %d", m.Kind)
	}
	ch := r.Channel(m.Hub, m.Kind, m.Name)
	if !r.Ready() {
		mLost.Inc()
		return fmt.Errorf("backplane: publish to %s: %w", ch, ErrUnavailable)
	}
	bp := encBufs.Get().(*[]byte)
	b := wire.AppendInvocation((*bp)[:0], m.Excluded, m.Payload)
	err := r.publish(ctx, ch, b)
	if cap(b) <= maxPooledBuf {
		*bp = b
		encBufs.Put(bp)
	}
	return err
}

const maxPooledBuf = 64 << 10

var encBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (r *Redis) publish(ctx context.Context, ch string, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	var err error
	if r.cluster {
		err = r.cc.SPublish(ctx, ch, b).Err()
	} else {
		err = r.sc.Publish(ctx, ch, b).Err()
	}
	mPublishDuration.UpdateDuration(start)
	if err != nil {
		mLost.Inc()
		if ctx.Err() != nil || !r.ready.Load() {
			r.setPublishFailing(true, err)
		}
		return fmt.Errorf("backplane: publish to %s: %w: %w", ch, ErrUnavailable, err)
	}
	if r.pubFailing.Load() {
		r.setPublishFailing(false, nil)
	}
	mPublished.Inc()
	return nil
}

// RemoteGroup implements Backplane: it publishes a group command on
// P:internal:groups and waits for the owner's ack on this node's ack
// channel, for at most AckTimeout (or ctx): ErrNotFound without an ack.
func (r *Redis) RemoteGroup(ctx context.Context, hub string, action GroupAction, group, connID string) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if r.ensureHub(hub) {
		// The ack channel of a hub seen for the first time must be
		// subscribed before the ack can come back.
		if err := r.waitFlushed(ctx); err != nil {
			return fmt.Errorf("backplane: group command: %w", err)
		}
	}
	if !r.Ready() {
		return fmt.Errorf("backplane: group command for %s: %w", connID, ErrUnavailable)
	}
	id := r.ackID.Add(1) & 0x7fffffff
	done := make(chan struct{})
	r.ackMu.Lock()
	r.waiters[id] = done
	r.ackMu.Unlock()
	defer func() {
		r.ackMu.Lock()
		delete(r.waiters, id)
		r.ackMu.Unlock()
	}()

	b := wire.AppendGroupCommand(nil, &wire.GroupCommand{
		ID: id, ServerName: r.name, Action: uint8(action), Group: group, ConnectionID: connID,
	})
	if err := r.publish(ctx, r.Prefix(hub)+":internal:groups", b); err != nil {
		return err
	}
	mGroupCommands.Inc()
	t := time.NewTimer(r.cfg.AckTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		mAckTimeouts.Inc()
		return fmt.Errorf("backplane: no node acknowledged the group command for connection %q within %v: %w", connID, r.cfg.AckTimeout, ErrNotFound)
	case <-ctx.Done():
		mAckTimeouts.Inc()
		return fmt.Errorf("backplane: no node acknowledged the group command for connection %q (%w): %w", connID, ctx.Err(), ErrNotFound)
	case <-r.stop:
		return ErrClosed
	}
}

// ackSender publishes acks for group commands applied here, off the receive
// path.
func (r *Redis) ackSender() {
	defer r.wg.Done()
	for {
		select {
		case a := <-r.acks:
			if a.add {
				ctx, cancel := context.WithTimeout(context.Background(), r.cfg.PublishTimeout)
				if err := r.WaitSubscribed(ctx, a.hub, Group, a.group); err != nil {
					r.errLog.warn(r.log, "group subscription not confirmed before ack", "group", a.group, "err", err)
				}
				cancel()
			}
			if err := r.publish(context.Background(), a.channel, wire.AppendAck(nil, a.id)); err != nil {
				r.errLog.warn(r.log, "ack not published", "channel", a.channel, "err", err)
			}
		case <-r.stop:
			return
		}
	}
}

// Ready implements Backplane: every subscription connection is up.
func (r *Redis) Ready() bool {
	if !r.started.Load() || r.closed.Load() {
		return false
	}
	return r.ready.Load() && !r.pubFailing.Load()
}

// checkPublish does a real round trip on the command connection (a PING;
// a subscription's ping only proves the write). A Redis that is paused
// (SIGSTOP) or unreachable without a reset turns the node not-ready within
// one HealthInterval; the first good round trip turns it back.
func (r *Redis) checkPublish() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.HealthInterval)
	defer cancel()
	var err error
	if r.cluster {
		err = r.cc.Ping(ctx).Err()
	} else {
		err = r.sc.Ping(ctx).Err()
	}
	r.setPublishFailing(err != nil, err)
}

func (r *Redis) setPublishFailing(failing bool, cause error) {
	if r.pubFailing.Swap(failing) != failing {
		if failing {
			r.log.Warn("redis backplane cannot publish; node not ready", "err", cause)
		} else {
			r.log.Info("redis backplane can publish again")
		}
	}
}

// updateReadyLocked recomputes r.ready. stateMu must be held.
func (r *Redis) updateReadyLocked() { r.ready.Store(r.downN == 0 && r.everUp) }

// Close implements Backplane. It flushes the upstream writer (briefly),
// closes the subscriptions and the client.
func (r *Redis) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	if r.upstream != nil {
		r.upstream.close()
	}
	r.stateMu.Lock()
	if r.everUp && r.downN == 0 {
		mConnected.Dec()
	}
	r.accountDownLocked(time.Now())
	r.stateMu.Unlock()
	close(r.stop)
	r.wg.Wait()
	r.subMu.Lock()
	subs := r.subs
	r.subs = nil
	r.subMu.Unlock()
	for _, s := range subs {
		s.close()
	}
	r.mu.Lock()
	mSubscriptions.Add(-float64(len(r.active)))
	clear(r.active)
	r.mu.Unlock()
	return r.client.Close()
}

// health pings idle subscription connections (a failed ping makes go-redis
// reconnect and resubscribe) and keeps the down-time counter current.
func (r *Redis) health() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.HealthInterval)
	defer t.Stop()
	var subs []*subscriber
	for {
		select {
		case <-t.C:
		case <-r.stop:
			return
		}
		r.stateMu.Lock()
		r.accountDownLocked(time.Now())
		r.stateMu.Unlock()
		r.checkPublish()
		subs = subs[:0]
		r.subMu.Lock()
		for _, s := range r.subs {
			subs = append(subs, s)
		}
		r.subMu.Unlock()
		for _, s := range subs {
			if s.recvd.Swap(false) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), r.cfg.HealthInterval)
			_ = s.ps.Ping(ctx)
			cancel()
		}
	}
}

// setDown records a subscriber's connection state change.
func (r *Redis) setDown(s *subscriber, down bool, cause error) {
	if s.down.Load() == down {
		return
	}
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	if s.closed || s.down.Load() == down {
		return
	}
	s.down.Store(down)
	now := time.Now()
	if down {
		r.downN++
		if r.downN == 1 && r.everUp {
			r.downSince, r.downCounted = now, now
			mDisconnects.Inc()
			mConnected.Dec()
			r.log.Warn("redis backplane disconnected; messages published meanwhile are lost", "err", cause)
		}
		r.updateReadyLocked()
		return
	}
	r.downN--
	if r.downN == 0 {
		mConnected.Inc()
		if r.everUp {
			r.accountDownLocked(now)
			mReconnects.Inc()
			r.log.Info("redis backplane reconnected", "down", now.Sub(r.downSince).Round(time.Millisecond))
		}
		r.everUp = true
	}
	r.updateReadyLocked()
}

// accountDownLocked adds the down time since the last call to the counter.
// stateMu must be held.
func (r *Redis) accountDownLocked(now time.Time) {
	if r.downN > 0 && r.everUp && now.After(r.downCounted) {
		mDownSeconds.Add(now.Sub(r.downCounted).Seconds())
		r.downCounted = now
	}
}

// handle decodes one message from Redis and hands it on. It runs on the
// subscriber's receive goroutine; s.msg and s.excluded are its scratch.
func (r *Redis) handle(s *subscriber, channel, payload string) {
	r.mu.RLock()
	rt, ok := r.routes[channel]
	r.mu.RUnlock()
	if !ok {
		mUnrouted.Inc()
		return
	}
	receivedCounter(rt.kind).Inc()
	// go-redis allocated payload for this message and nobody writes to it:
	// the bytes, and sub-slices and strings made from them, are immutable
	// and may be kept (Message.Payload is).
	b := unsafe.Slice(unsafe.StringData(payload), len(payload))
	switch rt.kind {
	case chanGroups:
		var c wire.GroupCommand
		if err := wire.ReadGroupCommand(b, &c); err != nil {
			r.decodeError(channel, err)
			return
		}
		if r.recv.ApplyGroup(rt.hub, GroupAction(c.Action), c.Group, c.ConnectionID) {
			select {
			case r.acks <- ackReq{channel: r.Prefix(rt.hub) + ":internal:ack:" + c.ServerName, id: c.ID,
				hub: rt.hub, group: c.Group, add: GroupAction(c.Action) == GroupAdd}:
			default:
				mAcksDropped.Inc()
				r.errLog.warn(r.log, "ack queue full; ack dropped", "channel", channel)
			}
		}
	case chanAck:
		id, err := wire.ReadAck(b)
		if err != nil {
			r.decodeError(channel, err)
			return
		}
		r.ackMu.Lock()
		if w := r.waiters[id]; w != nil {
			close(w)
			delete(r.waiters, id)
		}
		r.ackMu.Unlock()
	default:
		ex, js, err := wire.ReadInvocation(b, s.excluded[:0])
		if err == nil && (len(js) == 0 || js[len(js)-1] != 0x1e) {
			err = fmt.Errorf("%w: json entry is not a record ending in 0x1e", wire.ErrMalformed)
		}
		if err != nil {
			r.decodeError(channel, err)
			return
		}
		if cap(ex) <= 1024 {
			s.excluded = ex[:0]
		}
		s.msg = Message{Hub: rt.hub, Kind: Kind(rt.kind), Name: rt.name, Excluded: ex, Payload: js}
		r.recv.Deliver(&s.msg)
		s.msg = Message{}
	}
}

func (r *Redis) decodeError(channel string, err error) {
	mDecodeErrors.Inc()
	r.errLog.warn(r.log, "undecodable backplane message dropped", "channel", channel, "err", err)
}

// rateLog logs at most one warning per interval and reports how many were
// suppressed in between.
type rateLog struct {
	every      time.Duration
	last       atomic.Int64
	suppressed atomic.Int64
}

func (l *rateLog) warn(log *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(l.every) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return
	}
	if n := l.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Warn(msg, args...)
}

// ParseHubPrefixes turns --hub flag values, NAME or NAME=PREFIX, into
// RedisConfig.Hubs. NAME alone keeps the default prefix (the hub name).
func ParseHubPrefixes(specs []string) (map[string]string, error) {
	hubs := make(map[string]string, len(specs))
	for _, spec := range specs {
		name, prefix, _ := strings.Cut(spec, "=")
		name, prefix = strings.TrimSpace(name), strings.TrimSpace(prefix)
		if name == "" {
			return nil, fmt.Errorf("backplane: hub %q: want NAME or NAME=PREFIX", spec)
		}
		if _, dup := hubs[name]; dup {
			return nil, fmt.Errorf("backplane: hub %q given twice", name)
		}
		hubs[name] = prefix
	}
	return hubs, nil
}
