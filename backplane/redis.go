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
	// HealthInterval bounds how long the node may be deaf while ready: a
	// subscription connection that has read nothing for half of it is
	// pinged, one that has read nothing for all of it is reconnected and
	// resubscribed, and the publish path is probed once per interval.
	// Default: 2 s.
	HealthInterval time.Duration
	// UpstreamMaxLen bounds each hub's upstream stream (XADD MAXLEN ~).
	// Default: 100,000 entries.
	UpstreamMaxLen int64
	// UpstreamMaxBytes bounds each hub's upstream stream in Redis memory,
	// approximately (an entry count derived from the entries' sizes, see
	// redis_upstream.go). Default: 64 MiB.
	UpstreamMaxBytes int64
	// UpstreamMaxAge: entries older than this are trimmed (XTRIM MINID ~)
	// whenever the stream is written. Default: 1 h.
	UpstreamMaxAge time.Duration
	// UpstreamURL, when set, puts the upstream streams on their own Redis
	// (redis://host:port; one server), e.g. one with maxmemory, instead of
	// the backplane's.
	UpstreamURL string
	// UpstreamBuffer is how many upstream events may wait for the writer
	// before Send refuses them. Default: 10,000.
	UpstreamBuffer int
	// Logger. Default: slog.Default().
	Logger *slog.Logger
}

// DefaultHealthInterval is RedisConfig.HealthInterval's default.
const DefaultHealthInterval = 2 * time.Second

const (
	defaultPublishTimeout = 2 * time.Second
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
		c.AckTimeout = DefaultAckTimeout
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = defaultPublishTimeout
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = DefaultHealthInterval
	}
	if c.UpstreamMaxLen <= 0 {
		c.UpstreamMaxLen = defaultUpstreamMaxLen
	}
	if c.UpstreamMaxBytes <= 0 {
		c.UpstreamMaxBytes = DefaultUpstreamMaxBytes
	}
	if c.UpstreamMaxAge <= 0 {
		c.UpstreamMaxAge = DefaultUpstreamMaxAge
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

// Redis is the Redis pub/sub backplane, in the ASP.NET Core SignalR Redis
// wire format. See the package documentation for channels and payloads.
//
// Locks, in the order they may nest (outer first); none is held during
// Redis I/O except a subscriber's wmu, and none while calling the
// Receiver:
//
//	subscriber.wmu  one subscription connection's writes (redis_subscriber.go)
//	mu       subscription state: hubs, routes, pending changes, generations,
//	         cluster slot placement (redis_subscriptions.go, redis_cluster.go;
//	         read by the receive path for routes)
//	subMu    the subscribers by server address (created and closed by the
//	         flusher only)
//	stateMu  faults and readiness (redis_health.go)
//	ackMu    the RemoteGroup calls waiting for an ack (redis_groups.go) and
//	         the fleet commands waiting for replies (redis_fleet.go),
//	         taken alone
//
// RedisUpstream's own mu (redis_upstream.go) is not nested with these
// either.
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

	// Cluster slot placement, also under mu: the master each slot in use
	// is subscribed on, active channels per slot, slots to place again
	// (with the master a MOVED named, or ""), failed subscribers whose
	// slots may have moved.
	slots    *slotTable // nil with a single server
	reroutes map[uint16]string
	checks   map[*subscriber]struct{}
	verify   map[uint16]string      // slot → a channel a publish on reached no subscriber
	confirms map[*subscriber]uint64 // subscribers whose sync (seq) clears faults once the server confirms it is master
	prefer   map[string]bool        // servers to read the topology from first
	// topo is the last CLUSTER SLOTS, sorted (flusher only).
	topo []slotRange

	// subMu guards subs (written by the flusher only).
	subMu sync.Mutex
	subs  map[string]*subscriber // by server address

	// stateMu guards faults and readiness (redis_health.go).
	stateMu     sync.Mutex
	downN       int // faults: subscribers and slots not working, the start
	starting    *fault
	slotFaults  map[uint16]*fault
	everUp      bool
	downSince   time.Time
	downCounted time.Time   // down time is added to m.downSeconds up to here
	gapN        int         // faults that are gaps
	gapCounted  time.Time   // gap time is added to m.gapSeconds up to here
	ready       atomic.Bool // downN == 0 && everUp; written under stateMu
	pubFailing  atomic.Bool // the last command round trip (probe or PUBLISH) failed
	probeCh     string      // the health probe's channel

	ackMu   sync.Mutex
	waiters map[int32]chan struct{}
	replies map[int32]chan Reply // fleet commands waiting for replies (redis_fleet.go)
	cmd     CommandHandler
	ackID   atomic.Int32
	acks    chan ackReq

	upOnce   sync.Once
	upstream *RedisUpstream

	rl *redisRelay // set by HandleRelay before Start (redis_relay.go)

	m      *redisMetrics
	errLog rateLog

	hooks *testHooks // nil outside tests
}

// testHooks let a test force an interleaving of the flusher and a
// subscriber's goroutine; set before Start, nil outside tests.
type testHooks struct {
	dial     func(addr string)               // before a subscription connection is dialed
	written  func(s *subscriber, seq uint64) // after placeSlots wrote slots on s (seq: their sync, 0 if s was not connected)
	topology func(t []slotRange) []slotRange // rewrites each CLUSTER SLOTS read by refreshTopology (a stale view)
}

// NewRedis validates cfg and creates the client. Nothing is connected until
// Start.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	cfg = cfg.withDefaults()
	r := &Redis{
		cfg:        cfg,
		name:       cfg.ServerName,
		hubs:       make(map[string]struct{}),
		routes:     make(map[string]route),
		pending:    make(map[string]bool),
		active:     make(map[string]struct{}),
		flushed:    make(chan struct{}),
		confirmed:  make(chan struct{}),
		kick:       make(chan struct{}, 1),
		subs:       make(map[string]*subscriber),
		reroutes:   make(map[uint16]string),
		checks:     make(map[*subscriber]struct{}),
		verify:     make(map[uint16]string),
		confirms:   make(map[*subscriber]uint64),
		prefer:     make(map[string]bool),
		slotFaults: make(map[uint16]*fault),
		waiters:    make(map[int32]chan struct{}),
		replies:    make(map[int32]chan Reply),
		acks:       make(chan ackReq, ackQueue),
		stop:       make(chan struct{}),
		m:          newRedisMetrics(),
	}
	r.log = cfg.Logger.With("component", "backplane", "server", r.name)
	r.errLog.every = time.Second
	for hub := range cfg.Hubs {
		if hub == "" {
			return nil, fmt.Errorf("backplane: empty hub name in Hubs")
		}
	}
	if _, err := upstreamOptions(cfg); err != nil {
		return nil, err
	}
	switch {
	case len(cfg.ClusterAddrs) > 0:
		if cfg.URL != "" || cfg.Addr != "" {
			return nil, fmt.Errorf("backplane: ClusterAddrs and URL/Addr are exclusive")
		}
		r.cluster = true
		r.slots = newSlotTable()
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
		commandOptions(opt, cfg)
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
	r.probeCh = r.probeChannel()
	r.stateMu.Lock()
	r.downSince = time.Now()
	r.downCounted = r.downSince
	// Not ready before the first subscriptions are placed (the flusher
	// ends this fault) and confirmed (their subscribers' own).
	r.addFaultLocked(&r.starting, &fault{reason: reasonStart, since: r.downSince})
	r.stateMu.Unlock()

	r.wg.Add(3)
	go r.flusher()
	go r.health()
	go r.ackSender()

	r.mu.Lock()
	for hub := range r.cfg.Hubs {
		r.addHubLocked(hub)
	}
	r.subscribeRelayLocked()
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

// Publish implements Backplane. It encodes [[excluded], {"json": payload}]
// (with a "messagepack" entry beside it when m.MessagePack is set, as an
// ASP.NET Core server with MessagePack writes it) and publishes it on the
// message's channel; this node receives it back
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
		r.m.lost.Inc()
		return fmt.Errorf("backplane: publish to %s: %w", ch, ErrUnavailable)
	}
	bp := encBufs.Get().(*[]byte)
	var b []byte
	if m.ReturnChannel != "" && m.Kind == Connection {
		b = wire.AppendInvocationReturn((*bp)[:0], m.Excluded, m.Payload, m.InvocationID, m.ReturnChannel)
	} else if m.MessagePack != nil { // a REST send's messagepack entry, for MessagePack clients (and ASP.NET Core's)
		b = wire.AppendInvocationProtocols((*bp)[:0], m.Excluded, []string{wire.ProtocolJSON, wire.ProtocolMessagePack}, [][]byte{m.Payload, m.MessagePack})
	} else {
		b = wire.AppendInvocation((*bp)[:0], m.Excluded, m.Payload)
	}
	// This node subscribes to P:all of every hub it serves: a broadcast
	// that reaches no subscriber while that subscription is confirmed
	// means this node is deaf (subscribed on another server than it
	// publishes to), and with a single server that the message reached no
	// one. (In a cluster the count is the serving node's own subscribers
	// only: a publish that went to a replica, the client's slot map lagging
	// a failover, still reaches the shard, so it is only checked.)
	deafCheck := m.Kind == All && r.subscribedTo(ch)
	n, err := r.publish(ctx, ch, b)
	if cap(b) <= maxPooledBuf {
		*bp = b
		encBufs.Put(bp)
	}
	if err == nil && n == 0 && deafCheck && r.subscribedTo(ch) {
		r.notSubscribed(ch)
		if !r.cluster {
			r.m.lost.Inc()
			return fmt.Errorf("backplane: publish to %s reached no subscriber, not even this node's (resubscribing): %w", ch, ErrUnavailable)
		}
	}
	return err
}

const maxPooledBuf = 64 << 10

// ReturnChannel implements Returner: P:internal:return:{server}, where
// ASP.NET Core servers of the same name would receive theirs.
func (r *Redis) ReturnChannel(hub string) string { return r.Prefix(hub) + ":internal:return:" + r.name }

// Return implements Returner.
func (r *Redis) Return(ctx context.Context, channel, protocol string, completion []byte) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if !r.Ready() {
		r.m.lost.Inc()
		return fmt.Errorf("backplane: return to %s: %w", channel, ErrUnavailable)
	}
	_, err := r.publish(ctx, channel, wire.AppendCompletion(nil, protocol, completion))
	return err
}

var encBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// publish publishes b on ch and returns how many subscribers received it
// (on the master that serves ch, in a cluster).
func (r *Redis) publish(ctx context.Context, ch string, b []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	var n int64
	var err error
	if r.cluster {
		n, err = r.cc.SPublish(ctx, ch, b).Result()
	} else {
		n, err = r.sc.Publish(ctx, ch, b).Result()
	}
	r.m.publishDuration.UpdateDuration(start)
	if err != nil {
		r.m.lost.Inc()
		if ctx.Err() != nil || !r.ready.Load() {
			r.setPublishFailing(true, err)
		}
		return 0, fmt.Errorf("backplane: publish to %s: %w: %w", ch, ErrUnavailable, err)
	}
	if r.pubFailing.Load() {
		r.setPublishFailing(false, nil)
	}
	r.m.published.Inc()
	return n, nil
}

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
		r.m.connected.Dec()
	}
	now := time.Now()
	r.accountDownLocked(now)
	r.accountGapLocked(now)
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
	r.m.subscriptions.Add(-float64(len(r.active)))
	clear(r.active)
	r.mu.Unlock()
	return r.client.Close()
}

// commandOptions sets what every command client of a node (the backplane's
// and the upstream's own Redis) uses: RESP2, no CLIENT SETINFO, and the
// publish timeout on every step with two retries.
func commandOptions(opt *redis.Options, cfg RedisConfig) {
	opt.Protocol = 2
	opt.DisableIdentity = true
	opt.DialTimeout = time.Second
	opt.ReadTimeout = cfg.PublishTimeout
	opt.WriteTimeout = cfg.PublishTimeout
	opt.PoolTimeout = cfg.PublishTimeout
	opt.MaxRetries = 2
}
