package backplane

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane/wire"
	"github.com/edgeplane/edgeplane/internal/faultproxy"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// readyWatch samples bp.Ready every millisecond in the background and
// measures how long it was ready while deaf: from start until the first
// not-ready sample (or until stop, if there was none).
type readyWatch struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	ready time.Duration // ready from the start until the first not-ready sample
	seen  bool          // a not-ready sample was seen
}

func watchReady(bp *Redis) *readyWatch {
	w := &readyWatch{stopc: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(w.done)
		for {
			ready := bp.Ready()
			w.mu.Lock()
			if !ready && !w.seen {
				w.seen = true
				w.ready = time.Since(start)
			}
			w.mu.Unlock()
			select {
			case <-w.stopc:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return w
}

// stop ends the watch and returns how long bp was ready while deaf and
// whether it ever turned not-ready.
func (w *readyWatch) stop(since time.Time) (time.Duration, bool) {
	close(w.stopc)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.seen {
		return time.Since(since), false
	}
	return w.ready, true
}

// sprayUntil publishes payload on channel through c every 20 ms until rec
// has it (the node is subscribed again) or d passes, and returns how many
// it published.
func sprayUntil(t *testing.T, d time.Duration, c redis.UniversalClient, cluster bool, channel string, payload string, r *recorder) int {
	t.Helper()
	msg := wire.AppendInvocation(nil, nil, rec(payload))
	deadline := time.Now().Add(d)
	n := 0
	for !r.has(string(rec(payload))) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q not delivered within %v (%d published)", channel, payload, d, n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if cluster {
			_ = c.SPublish(ctx, channel, msg).Err()
		} else {
			_ = c.Publish(ctx, channel, msg).Err()
		}
		cancel()
		n++
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

// TestRedisHalfOpenSubscription (issue 12, item 1): Redis moves behind a
// stable address without a reset (VIP, DNS, proxy): the subscription
// connection's socket stays open but nothing comes back. The node must
// notice the missing PONG within one health interval, turn not-ready,
// resubscribe everything on the new server, count the gap, and be ready
// again; meanwhile it must not be ready while deaf for longer than one
// health interval.
func TestRedisHalfOpenSubscription(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	p := faultproxy.Start(t, a.Addr())
	const h = time.Second
	n, rn := startNode(t, RedisConfig{URL: "redis://" + p.Addr(), HealthInterval: h})
	n.Subscribe("chat", Group, "g")
	n.Subscribe("chat", Connection, "c1")
	settle(t, n)
	fence(t, n, rn)

	p.Blackhole()
	p.Failover(b.Addr())
	moved := time.Now()
	w := watchReady(n)

	cb := redis.NewClient(&redis.Options{Addr: b.Addr()})
	defer cb.Close()
	sprayUntil(t, 15*time.Second, cb, false, "chat:all", "all-on-b", rn)
	recovered := time.Since(moved)
	sprayUntil(t, 5*time.Second, cb, false, "chat:group:g", "group-on-b", rn)
	sprayUntil(t, 5*time.Second, cb, false, "chat:connection:c1", "conn-on-b", rn)
	deaf, turned := w.stop(moved)
	t.Logf("half-open subscription: ready while deaf %v, delivering again after %v", deaf.Round(time.Millisecond), recovered.Round(time.Millisecond))
	if !turned {
		t.Errorf("never turned not-ready while the subscription was half-open")
	}
	if deaf > 2*h {
		t.Errorf("ready while deaf for %v; the bound is one health interval (%v), with slack %v", deaf, h, 2*h)
	}
	testutil.WaitUntil(t, 5*time.Second, "ready on the new server", n.Ready)
	if v := metric(t, n, `edgeplane_backplane_gaps_total{reason="no_pong"}`); v < 1 {
		t.Errorf("gaps_total{no_pong} = %v, want ≥ 1", v)
	}
	if v := metric(t, n, "edgeplane_backplane_gap_seconds_total"); v <= 0 {
		t.Errorf("gap_seconds_total = %v, want > 0", v)
	}
	// Its own publishes go to the new server and come back.
	fence(t, n, rn)
}

// TestRedisPartition: the node is cut off from Redis (blackhole, no reset)
// and healed: not-ready within one health interval, everything
// resubscribed after the heal, the gap counted, no message delivered
// twice.
func TestRedisPartition(t *testing.T) {
	srv := redistest.Start(t)
	p := faultproxy.Start(t, srv.Addr())
	const h = time.Second
	n, rn := startNode(t, RedisConfig{URL: "redis://" + p.Addr(), HealthInterval: h})
	n.Subscribe("chat", Group, "g")
	settle(t, n)
	fence(t, n, rn)

	p.Blackhole()
	cut := time.Now()
	w := watchReady(n)
	testutil.WaitUntil(t, 10*h, "not ready while partitioned", func() bool { return !n.Ready() })
	deaf, _ := w.stop(cut)
	t.Logf("partition: not ready after %v", deaf.Round(time.Millisecond))
	if deaf > 2*h {
		t.Errorf("ready while partitioned for %v; the bound is one health interval (%v), with slack %v", deaf, h, 2*h)
	}
	direct := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer direct.Close()
	if err := direct.Publish(context.Background(), "chat:group:g", wire.AppendInvocation(nil, nil, rec("during"))).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * h)
	p.Heal()
	testutil.WaitUntil(t, 10*time.Second, "ready after the heal", n.Ready)
	sprayUntil(t, 5*time.Second, direct, false, "chat:group:g", "after", rn)
	if _, k := rn.find(string(rec("during"))); k > 1 {
		t.Errorf("message published during the partition delivered %d times", k)
	}
	if v := metric(t, n, `edgeplane_backplane_gaps_total{reason="no_pong"}`); v < 1 {
		t.Errorf("gaps_total{no_pong} = %v, want ≥ 1", v)
	}
}

// TestRedisClusterFailover (issue 12, item 2): CLUSTER FAILOVER moves the
// slots of a master to its replica; Redis 7 sends sunsubscribe for the
// channels of those slots. The node must resubscribe them on the new
// master (counting the gap) so that every group and P:all keep being
// delivered.
func TestRedisClusterFailover(t *testing.T) {
	cl := redistest.StartClusterReplicas(t, 3, 1)
	const h = 400 * time.Millisecond
	n, rn := startNode(t, RedisConfig{ClusterAddrs: cl.Addrs(), HealthInterval: h})
	const groups = 30
	for i := 0; i < groups; i++ {
		n.Subscribe("chat", Group, "g"+strconv.Itoa(i))
	}
	settle(t, n)
	fence(t, n, rn)

	m := cl.MasterOf(t, cl.Slot(t, "chat:all"))
	cl.Failover(t, cl.ReplicaOf(t, m))

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer cc.Close()
	sprayUntil(t, 15*time.Second, cc, true, "chat:all", "all-after-failover", rn)
	for i := 0; i < groups; i++ {
		g := "g" + strconv.Itoa(i)
		sprayUntil(t, 5*time.Second, cc, true, "chat:group:"+g, g+"-after-failover", rn)
	}
	testutil.WaitUntil(t, 5*time.Second, "ready after the failover", func() bool {
		if !n.Ready() {
			t.Log(n.faultSummary())
		}
		return n.Ready()
	})
	if v := metric(t, n, `edgeplane_backplane_gaps_total{reason="slot_moved"}`); v < 1 {
		t.Errorf("gaps_total{slot_moved} = %v, want ≥ 1", v)
	}
	// Group commands and acks work through the new master too.
	fence(t, n, rn)
	checkPlacement(t, n)
	for _, s := range cl.Servers {
		if k := pubsubClients(t, s); k > 2 {
			t.Errorf("%s holds %d subscription connections of the node, want ≤ 2", s.Addr(), k)
		}
	}
}

// TestRedisClusterMasterKilled: a master is killed and its replica takes
// over: the node turns not-ready, resubscribes the dead master's slots on
// the new one and is ready again.
func TestRedisClusterMasterKilled(t *testing.T) {
	cl := redistest.StartClusterReplicas(t, 3, 1)
	const h = 400 * time.Millisecond
	n, rn := startNode(t, RedisConfig{ClusterAddrs: cl.Addrs(), HealthInterval: h})
	const groups = 30
	for i := 0; i < groups; i++ {
		n.Subscribe("chat", Group, "g"+strconv.Itoa(i))
	}
	settle(t, n)
	fence(t, n, rn)

	m := cl.MasterOf(t, cl.Slot(t, "chat:all"))
	r := cl.ReplicaOf(t, m)
	m.Kill()
	testutil.WaitUntil(t, 10*h, "not ready once the master is gone", func() bool { return !n.Ready() })
	cl.WaitMaster(t, r, 20*time.Second)

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer cc.Close()
	sprayUntil(t, 15*time.Second, cc, true, "chat:all", "all-after-kill", rn)
	for i := 0; i < groups; i++ {
		g := "g" + strconv.Itoa(i)
		sprayUntil(t, 5*time.Second, cc, true, "chat:group:"+g, g+"-after-kill", rn)
	}
	testutil.WaitUntil(t, 10*time.Second, "ready after the failover", func() bool {
		if !n.Ready() {
			t.Log(n.faultSummary())
		}
		return n.Ready()
	})
	// The publish path (go-redis's cluster client) learns the new master on
	// its own schedule; until then a publish fails with ErrUnavailable and is
	// counted, which is not deafness. Wait for it before the fence, on the
	// fence's own channel: another slot may be served by a live master the
	// client already knew.
	testutil.WaitNoError(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return n.Publish(ctx, &Message{Hub: "chat", Kind: All, Payload: rec("probe")})
	})
	fence(t, n, rn)
	checkPlacement(t, n)
	if v := metric(t, n, `edgeplane_backplane_gaps_total{reason="connection_error"}`); v < 1 {
		t.Errorf("gaps_total{connection_error} = %v, want ≥ 1", v)
	}
}

// clientList counts the pub/sub connections a server holds.
func pubsubClients(t *testing.T, s *redistest.Server) int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	out, err := c.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST on %s: %v", s.Addr(), err)
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " flags=P") {
			n++
		}
	}
	return n
}

// TestRedisClusterConnectionBudget (issue 12, item 3): connection channels
// spread over every slot must not cost a Redis connection each: at most two
// subscription connections per master, however many slots are in use.
func TestRedisClusterConnectionBudget(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	n, rn := startNode(t, RedisConfig{ClusterAddrs: cl.Addrs()})
	const conns = 2000
	for i := 0; i < conns; i++ {
		n.Subscribe("chat", Connection, fmt.Sprintf("conn-%d", i))
	}
	settle(t, n)
	checkPlacement(t, n)
	slots := map[uint16]bool{}
	for i := 0; i < conns; i++ {
		slots[hashSlot(fmt.Sprintf("chat:connection:conn-%d", i))] = true
	}
	total := 0
	for _, s := range cl.Servers {
		k := pubsubClients(t, s)
		total += k
		if k > 2 {
			t.Errorf("master %s holds %d subscription connections of the node, want ≤ 2", s.Addr(), k)
		}
	}
	t.Logf("%d connection channels over %d slots: %d subscription connections", conns, len(slots), total)
	if v := metric(t, n, "edgeplane_backplane_subscription_connections"); int(v) != total {
		t.Errorf("subscription_connections = %v, the masters see %d", v, total)
	}
	// Every channel is subscribed: a sample from every master reaches the
	// node.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer cc.Close()
	for i := 0; i < conns; i += 97 {
		ch := fmt.Sprintf("chat:connection:conn-%d", i)
		if k, err := cc.SPublish(context.Background(), ch, wire.AppendInvocation(nil, nil, rec(ch))).Result(); err != nil || k != 1 {
			t.Fatalf("SPUBLISH %s = %d, %v; want 1 subscriber", ch, k, err)
		}
	}
	fence(t, n, rn)
	for i := 0; i < conns; i += 97 {
		ch := fmt.Sprintf("chat:connection:conn-%d", i)
		if !rn.has(string(rec(ch))) {
			t.Errorf("%s not delivered", ch)
		}
	}
}

// TestRedisClusterReshard: a slot carrying a group moves to another master
// (resharding): Redis drops its subscriptions on the old master and the
// node subscribes them on the new one.
func TestRedisClusterReshard(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	n, rn := startNode(t, RedisConfig{ClusterAddrs: cl.Addrs(), HealthInterval: 400 * time.Millisecond})
	n.Subscribe("chat", Group, "moving")
	settle(t, n)
	slot := cl.Slot(t, "chat:group:moving")
	from := cl.MasterOf(t, slot)
	var to *redistest.Server
	for _, s := range cl.Servers {
		if s != from {
			to = s
			break
		}
	}
	cl.MoveSlot(t, slot, to)
	if got := cl.MasterOf(t, slot); got != to {
		t.Fatalf("slot %d on %s after the move, want %s", slot, got.Addr(), to.Addr())
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer cc.Close()
	sprayUntil(t, 10*time.Second, cc, true, "chat:group:moving", "after-reshard", rn)
	// The masters learn the slot's new owner by gossip; until the one the
	// node asks agrees, a placement can meet MOVED and is retried every
	// rerouteRetry. On a loaded box that took over 5 s once.
	testutil.WaitUntil(t, 20*time.Second, "ready after the reshard", func() bool {
		if !n.Ready() {
			t.Log(n.faultSummary())
		}
		return n.Ready()
	})
	if v := metric(t, n, `edgeplane_backplane_gaps_total{reason="slot_moved"}`); v < 1 {
		t.Errorf("gaps_total{slot_moved} = %v, want ≥ 1", v)
	}
	checkPlacement(t, n)
	if k := pubsubClients(t, from); k > 1 {
		t.Errorf("old master still holds %d subscription connections", k)
	}
}

// TestRedisClusterReshardToNewSubscriber: the moved slot goes to a master
// the node holds no subscription connection to. The flusher creates one
// and writes the slot's SSUBSCRIBE while it is not connected yet (nothing
// written, no sync); the connection comes up, subscribes what it carries
// and writes its own sync PING, and only then does the flusher record the
// slot's placement. That ordering (seen once on a loaded box) used to
// leave the slot's fault waiting for a sync nobody would write: its
// channel delivered, the node not ready for good. Hooks force it.
func TestRedisClusterReshardToNewSubscriber(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer cc.Close()
	ranges, err := cc.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	masterOf := func(ch string) string {
		slot := int(hashSlot(ch))
		for _, rg := range ranges {
			if rg.Start <= slot && slot <= rg.End {
				return rg.Nodes[0].Addr
			}
		}
		t.Fatalf("slot %d of %s not served", slot, ch)
		return ""
	}
	// A channel prefix whose hub-wide channels (all, internal:groups,
	// internal:edgeplane) are served by at most two masters, and a server
	// name and a group whose channels are served by those masters too (the
	// group in a slot of its own), so that a third master carries nothing
	// of the node's.
	var pfx string
	var used map[string]bool
	for i := 0; pfx == ""; i++ {
		p := fmt.Sprintf("chat-%d", i)
		u := map[string]bool{masterOf(p + ":all"): true, masterOf(p + ":internal:groups"): true, masterOf(p + ":internal:edgeplane"): true}
		if len(u) <= 2 {
			pfx, used = p, u
		}
	}
	var name string
	for i := 0; name == ""; i++ {
		if n := fmt.Sprintf("reshard-node-%d", i); used[masterOf(pfx+":internal:ack:"+n)] {
			name = n
		}
	}
	statics := map[uint16]bool{hashSlot(pfx + ":all"): true, hashSlot(pfx + ":internal:groups"): true, hashSlot(pfx + ":internal:edgeplane"): true, hashSlot(pfx + ":internal:ack:" + name): true}
	var group string
	for i := 0; group == ""; i++ {
		g := fmt.Sprintf("g%d", i)
		if ch := pfx + ":group:" + g; !statics[hashSlot(ch)] && used[masterOf(ch)] {
			group = g
		}
	}
	var to *redistest.Server
	for _, s := range cl.Servers {
		if !used[s.Addr()] {
			to = s
		}
	}
	if to == nil {
		t.Fatalf("every master serves one of the node's channels")
	}

	// The subscriber for the new master is not connected when the flusher
	// writes the slot's channels on it; the flusher then waits until the
	// subscriber has connected and its own sync PING is answered.
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	var hooked, wroteNothing, connectedFirst atomic.Bool
	hooks := &testHooks{
		dial: func(addr string) {
			if addr == to.Addr() {
				<-release
			}
		},
		written: func(s *subscriber, seq uint64) {
			if s.addr != to.Addr() || hooked.Swap(true) {
				return
			}
			wroteNothing.Store(seq == 0)
			free()
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if s.synced.Load() > 0 {
					connectedFirst.Store(true)
					return
				}
			}
		},
	}
	n, err := NewRedis(RedisConfig{ClusterAddrs: cl.Addrs(), ServerName: name, HealthInterval: 400 * time.Millisecond,
		Hubs: map[string]string{"chat": pfx}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	n.hooks = hooks
	rn := newRecorder()
	if err := n.Start(rn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	t.Cleanup(free) // before Close, which waits for a dial held here
	if !n.Ready() {
		t.Fatalf("backplane not ready after Start")
	}
	n.Subscribe("chat", Group, group)
	settle(t, n)
	n.subMu.Lock()
	_, onTo := n.subs[to.Addr()]
	n.subMu.Unlock()
	if onTo {
		t.Fatalf("the node already holds a subscription connection to %s", to.Addr())
	}

	slot := hashSlot(pfx + ":group:" + group)
	cl.MoveSlot(t, int(slot), to)
	sprayUntil(t, 10*time.Second, cc, true, pfx+":group:"+group, "after-reshard", rn)
	if !hooked.Load() || !wroteNothing.Load() || !connectedFirst.Load() {
		t.Fatalf("ordering not forced: placed on %s %v, before it connected %v, connected before the placement was recorded %v",
			to.Addr(), hooked.Load(), wroteNothing.Load(), connectedFirst.Load())
	}
	testutil.WaitUntil(t, 10*time.Second, "ready after the reshard", func() bool {
		if !n.Ready() {
			t.Log(n.faultSummary())
		}
		return n.Ready()
	})
	if v := metric(t, n, `edgeplane_backplane_gaps_total{reason="slot_moved"}`); v < 1 {
		t.Errorf("gaps_total{slot_moved} = %v, want ≥ 1", v)
	}
	checkPlacement(t, n)
	fence(t, n, rn)
}

// TestRedisNotSubscribed: Redis moves behind a stable address while the old
// server keeps running: the subscription connection stays on the old one
// (alive, answering PINGs) while publishes go to the new one. The health
// probe's publish reaches no subscriber there; the node resubscribes on
// the new server and counts the gap.
func TestRedisNotSubscribed(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	p := faultproxy.Start(t, a.Addr())
	const h = 300 * time.Millisecond
	n, rn := startNode(t, RedisConfig{URL: "redis://" + p.Addr(), HealthInterval: h})
	settle(t, n)
	fence(t, n, rn)
	p.Failover(b.Addr())
	// The command connections move to b; the subscription stays on a.
	if r, err := a.Do("CLIENT", "KILL", "TYPE", "normal"); err != nil || !strings.HasPrefix(r, ":") {
		t.Fatalf("CLIENT KILL TYPE normal: %q, %v", r, err)
	}
	cb := redis.NewClient(&redis.Options{Addr: b.Addr()})
	defer cb.Close()
	sprayUntil(t, 10*time.Second, cb, false, "chat:all", "on-b", rn)
	testutil.WaitUntil(t, 5*time.Second, "ready on b", n.Ready)
	if v := metric(t, n, `edgeplane_backplane_gaps_total{reason="not_subscribed"}`); v < 1 {
		t.Errorf("gaps_total{not_subscribed} = %v, want ≥ 1", v)
	}
	fence(t, n, rn)
}

// syncBuffer is a log sink tests read while the backplane writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRedisAuth: a password in the URL authenticates the subscription
// connection too; a wrong one keeps the node not ready with a clear error
// in the log, and nothing else breaks.
func TestRedisAuth(t *testing.T) {
	srv := redistest.StartArgs(t, "--requirepass", "s3cret")
	n, rn := startNode(t, RedisConfig{URL: "redis://:s3cret@" + srv.Addr()})
	n.Subscribe("chat", Group, "g")
	settle(t, n)
	publish(t, n, &Message{Hub: "chat", Kind: Group, Name: "g", Payload: rec("authed")})
	fence(t, n, rn)
	if !rn.has(string(rec("authed"))) {
		t.Errorf("group message not delivered with a password")
	}

	var logs syncBuffer
	bad, err := NewRedis(RedisConfig{URL: "redis://:wrong@" + srv.Addr(), Hubs: map[string]string{"chat": ""},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Start(newRecorder()); err != nil {
		t.Fatalf("Start with a wrong password: %v (want nil: not ready, retrying)", err)
	}
	if bad.Ready() {
		t.Fatalf("ready with a wrong password")
	}
	testutil.WaitUntil(t, 5*time.Second, "AUTH error logged", func() bool {
		return strings.Contains(logs.String(), "redis AUTH on the subscription connection") && strings.Contains(logs.String(), "WRONGPASS")
	})
}

// TestRedisSubscribeRefused: Redis refusing SUBSCRIBE (an ACL without the
// channel) keeps the node not ready, retrying with a warning, and once the
// channels are allowed it subscribes everything and is ready.
func TestRedisSubscribeRefused(t *testing.T) {
	srv := redistest.Start(t)
	if r, err := srv.Do("ACL", "SETUSER", "edge", "on", ">pw", "~*", "+@all", "resetchannels"); err != nil || r != "+OK" {
		t.Fatalf("ACL SETUSER: %q, %v", r, err)
	}
	var logs syncBuffer
	bp, err := NewRedis(RedisConfig{URL: "redis://edge:pw@" + srv.Addr(), Hubs: map[string]string{"chat": ""},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	r := newRecorder()
	if err := bp.Start(r); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, 5*time.Second, "refusal logged", func() bool {
		return strings.Contains(logs.String(), "redis refused a subscription command") && strings.Contains(logs.String(), "NOPERM")
	})
	if bp.Ready() {
		t.Fatalf("ready while Redis refuses the subscriptions")
	}
	if r, err := srv.Do("ACL", "SETUSER", "edge", "allchannels"); err != nil || r != "+OK" {
		t.Fatalf("ACL SETUSER allchannels: %q, %v", r, err)
	}
	testutil.WaitUntil(t, 10*time.Second, "ready once allowed", bp.Ready)
	settle(t, bp)
	fence(t, bp, r)
}

// TestRedisClusterStaleTopology: the first CLUSTER SLOTS the node reads
// names a replica as the master of chat:all's slot, as a view from before a
// failover does (the failover test's flake: a node resubscribed on the
// demoted master and heard nothing while the new master did not yet count
// it as its replica). The replica takes the SSUBSCRIBE without a word; the
// node must not stay there: the server says it is a replica, and the node
// places the slot on the master before it is ready.
func TestRedisClusterStaleTopology(t *testing.T) {
	cl := redistest.StartClusterReplicas(t, 3, 1)
	slot := hashSlot("chat:all")
	m := cl.MasterOf(t, int(slot))
	rep := cl.ReplicaOf(t, m)
	var lied atomic.Bool
	n, err := NewRedis(RedisConfig{ClusterAddrs: cl.Addrs(), HealthInterval: 400 * time.Millisecond,
		Hubs: map[string]string{"chat": ""}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	n.hooks = &testHooks{topology: func(topo []slotRange) []slotRange {
		out := slices.Clone(topo)
		for i, rg := range out {
			if rg.start <= slot && slot <= rg.end && rg.addr == m.Addr() && !lied.Swap(true) {
				out[i].addr, out[i].replicas = rep.Addr(), []string{m.Addr()}
			}
		}
		return out
	}}
	rn := newRecorder()
	if err := n.Start(rn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if !lied.Load() {
		t.Fatal("the node never read the stale topology")
	}
	if !n.Ready() {
		t.Fatalf("not ready after Start: %s", n.faultSummary())
	}
	numSub := func(s *redistest.Server) int64 {
		c := redis.NewClient(&redis.Options{Addr: s.Addr()})
		defer c.Close()
		v, err := c.PubSubShardNumSub(context.Background(), "chat:all").Result()
		if err != nil {
			t.Fatal(err)
		}
		return v["chat:all"]
	}
	if k, kr := numSub(m), numSub(rep); k != 1 || kr != 0 {
		t.Errorf("chat:all subscribed %d times on the master %s and %d times on its replica %s, want 1 and 0", k, m.Addr(), kr, rep.Addr())
	}
	if addr, _ := n.slots.addr(slot); addr != m.Addr() {
		t.Errorf("chat:all's slot placed on %s, want the master %s", addr, m.Addr())
	}
	checkPlacement(t, n)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer cc.Close()
	sprayUntil(t, 5*time.Second, cc, true, "chat:all", "after-start", rn)
	fence(t, n, rn)
}
