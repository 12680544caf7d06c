package backplane

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane/wire"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// leakIgnores are the goroutines testutil.Main does not count as leaked.
// None: go-redis v9 keeps no process-wide goroutines (its pool and dial
// goroutines belong to a client and end with its Close), and neither does
// redistest (its servers stop at each test's cleanup). A goroutine left
// after the tests is a backplane that was not closed, or one whose Close
// does not stop everything.
var leakIgnores []string

// TestMain fails the package's tests if a goroutine started by them
// outlives them.
func TestMain(m *testing.M) { testutil.Main(m, leakIgnores...) }

// recorder is a Receiver that records what it is given.
type recorder struct {
	mu      sync.Mutex
	msgs    []Message // Excluded copied
	owned   map[string]bool
	applied []string
	// onApply, if set, runs for each group command applied (as fanout
	// subscribes a group's channel when a connection joins it).
	onApply func(hub string, action GroupAction, group string)
}

func newRecorder(owned ...string) *recorder {
	r := &recorder{owned: make(map[string]bool)}
	for _, id := range owned {
		r.owned[id] = true
	}
	return r
}

func (r *recorder) Deliver(m *Message) {
	c := *m
	c.Excluded = slices.Clone(m.Excluded)
	r.mu.Lock()
	r.msgs = append(r.msgs, c)
	r.mu.Unlock()
}

func (r *recorder) ApplyGroup(hub string, action GroupAction, group, connID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.owned[connID] {
		return false
	}
	r.applied = append(r.applied, fmt.Sprintf("%s %d %s %s", hub, action, group, connID))
	if r.onApply != nil {
		r.onApply(hub, action, group)
	}
	return true
}

func (r *recorder) appliedCmds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applied)
}

// payloads returns the payloads received so far, as strings.
func (r *recorder) payloads() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = string(m.Payload)
	}
	return out
}

func (r *recorder) has(payload string) bool {
	return slices.Contains(r.payloads(), payload)
}

func (r *recorder) find(payload string) (Message, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found Message
	n := 0
	for _, m := range r.msgs {
		if string(m.Payload) == payload {
			found = m
			n++
		}
	}
	return found, n
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(ioDiscard{}, nil))
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }

// startNode starts a Redis backplane on srv with a recorder.
func startNode(t *testing.T, cfg RedisConfig, owned ...string) (*Redis, *recorder) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Hubs == nil {
		cfg.Hubs = map[string]string{"chat": ""}
	}
	bp, err := NewRedis(cfg)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	rec := newRecorder(owned...)
	if err := bp.Start(rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = bp.Close() })
	if !bp.Ready() {
		t.Fatalf("backplane not ready after Start")
	}
	return bp, rec
}

// settle waits until bp's queued subscriptions are written and Redis has
// processed them (a PING on the same connection answers after them).
func settle(t *testing.T, bp *Redis) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bp.waitFlushed(ctx); err != nil {
		t.Fatalf("waitFlushed: %v", err)
	}
	bp.subMu.Lock()
	subs := make([]*subscriber, 0, len(bp.subs))
	for _, s := range bp.subs {
		subs = append(subs, s)
	}
	bp.subMu.Unlock()
	for _, s := range subs {
		// Replies come in order: once the sync PING's answer has been
		// read, the SUBSCRIBEs before it are in effect.
		var seq uint64
		testutil.WaitUntil(t, 5*time.Second, "pong on the subscription "+s.addr, func() bool {
			if seq == 0 {
				seq = s.ping() // 0 while not connected
			}
			return seq != 0 && s.synced.Load() >= seq
		})
	}
}

func rec(s string) []byte {
	return []byte(`{"type":1,"target":"Send","arguments":["` + s + `"]}` + "\x1e")
}

func publish(t *testing.T, bp *Redis, m *Message) {
	t.Helper()
	if err := bp.Publish(context.Background(), m); err != nil {
		t.Fatalf("Publish %s/%s: %v", m.Kind, m.Name, err)
	}
}

// metric reads one sample of bp's metrics by its name as exposed (labels
// included), failing the test if bp does not expose it.
func metric(t testing.TB, bp *Redis, name string) float64 {
	t.Helper()
	var b bytes.Buffer
	bp.Metrics().WritePrometheus(&b)
	for line := range strings.Lines(b.String()) {
		if n, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " "); ok && n == name {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("sample %q: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("backplane exposes no sample %s:\n%s", name, b.String())
	return 0
}

// fence publishes a marker to all and waits until every recorder has it:
// pub/sub is ordered per publisher connection, so everything published
// before has arrived too.
func fence(t *testing.T, bp *Redis, recs ...*recorder) {
	t.Helper()
	marker := fmt.Sprintf("fence-%d", time.Now().UnixNano())
	publish(t, bp, &Message{Hub: "chat", Kind: All, Payload: rec(marker)})
	for _, r := range recs {
		testutil.WaitUntil(t, 5*time.Second, "fence "+marker, func() bool { return r.has(string(rec(marker))) })
	}
}

func TestRedisDelivery(t *testing.T) {
	srv := redistest.Start(t)
	a, ra := startNode(t, RedisConfig{URL: srv.URL()})
	b, rb := startNode(t, RedisConfig{URL: srv.URL()})
	if a.ServerName() == b.ServerName() || !strings.Contains(a.ServerName(), "_") {
		t.Fatalf("server names %q, %q: want unique {host}_{random}", a.ServerName(), b.ServerName())
	}
	a.Subscribe("chat", Group, "g1")
	a.Subscribe("chat", User, "u1")
	b.Subscribe("chat", Group, "g1")
	b.Subscribe("chat", Connection, "c1")
	settle(t, a)
	settle(t, b)

	cases := []struct {
		m      Message
		toA    bool
		toB    bool
		detail string
	}{
		{Message{Hub: "chat", Kind: All, Payload: rec("all"), Excluded: []string{"x", "y"}}, true, true, "all with exclusions"},
		{Message{Hub: "chat", Kind: Group, Name: "g1", Payload: rec("g1")}, true, true, "group on both"},
		{Message{Hub: "chat", Kind: Group, Name: "g2", Payload: rec("g2")}, false, false, "group on none"},
		{Message{Hub: "chat", Kind: User, Name: "u1", Payload: rec("u1"), Excluded: []string{"c9"}}, true, false, "user on A"},
		{Message{Hub: "chat", Kind: Connection, Name: "c1", Payload: rec("c1")}, false, true, "connection on B"},
	}
	// Publish from both nodes: each message reaches each subscribed node
	// exactly once, the publisher included.
	for _, from := range []*Redis{a, b} {
		for i := range cases {
			publish(t, from, &cases[i].m)
		}
		fence(t, from, ra, rb)
		for _, c := range cases {
			for _, side := range []struct {
				name string
				r    *recorder
				want bool
			}{{"A", ra, c.toA}, {"B", rb, c.toB}} {
				got, n := side.r.find(string(c.m.Payload))
				want := 0
				if side.want {
					want = 1
				}
				if from == b && side.want {
					want = 2 // second round
				}
				if n != want {
					t.Errorf("%s: node %s got %d copies, want %d", c.detail, side.name, n, want)
					continue
				}
				if n == 0 {
					continue
				}
				if got.Hub != "chat" || got.Kind != c.m.Kind || got.Name != c.m.Name || !slices.Equal(got.Excluded, c.m.Excluded) && len(c.m.Excluded)+len(got.Excluded) > 0 {
					t.Errorf("%s: node %s got %+v, want %+v", c.detail, side.name, got, c.m)
				}
			}
		}
	}
}

func TestRedisSubscribeBatchingAndUnsubscribe(t *testing.T) {
	srv := redistest.Start(t)
	a, ra := startNode(t, RedisConfig{URL: srv.URL()})
	settle(t, a)
	before := metric(t, a, "edgeplane_backplane_subscribe_commands_total")
	const n = 500
	for i := 0; i < n; i++ {
		a.Subscribe("chat", Group, fmt.Sprintf("g%d", i))
	}
	// Subscribed and unsubscribed before a flush: coalesced away or
	// subscribed and unsubscribed again; either way not subscribed after.
	a.Subscribe("chat", Group, "flicker")
	a.Unsubscribe("chat", Group, "flicker")
	// Unsubscribed then subscribed again: subscribed.
	a.Subscribe("chat", Group, "back")
	a.Unsubscribe("chat", Group, "back")
	a.Subscribe("chat", Group, "back")
	settle(t, a)
	cmds := metric(t, a, "edgeplane_backplane_subscribe_commands_total") - before
	t.Logf("%d subscribe changes took %v SUBSCRIBE/UNSUBSCRIBE commands", n+5, cmds)
	if cmds > n/10 {
		t.Errorf("%v subscription commands for %d changes: not batched", cmds, n+5)
	}

	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	numsub := func(ch string) int64 {
		v, err := client.PubSubNumSub(context.Background(), ch).Result()
		if err != nil {
			t.Fatalf("PUBSUB NUMSUB: %v", err)
		}
		return v[ch]
	}
	if got := numsub("chat:group:g499"); got != 1 {
		t.Errorf("NUMSUB chat:group:g499 = %d, want 1", got)
	}
	if got := numsub("chat:group:flicker"); got != 0 {
		t.Errorf("NUMSUB chat:group:flicker = %d, want 0", got)
	}
	if got := numsub("chat:group:back"); got != 1 {
		t.Errorf("NUMSUB chat:group:back = %d, want 1", got)
	}

	before = metric(t, a, "edgeplane_backplane_subscribe_commands_total")
	a.Unsubscribe("chat", Group, "g5")
	a.Unsubscribe("chat", Group, "never-subscribed")
	settle(t, a)
	if got := metric(t, a, "edgeplane_backplane_subscribe_commands_total") - before; got != 1 {
		t.Errorf("an unsubscribe took %v commands, want 1 (one UNSUBSCRIBE, no empty SUBSCRIBE)", got)
	}
	if got := numsub("chat:group:g5"); got != 0 {
		t.Errorf("NUMSUB chat:group:g5 after Unsubscribe = %d, want 0", got)
	}
	publish(t, a, &Message{Hub: "chat", Kind: Group, Name: "g5", Payload: rec("to-g5")})
	publish(t, a, &Message{Hub: "chat", Kind: Group, Name: "g6", Payload: rec("to-g6")})
	publish(t, a, &Message{Hub: "chat", Kind: Group, Name: "flicker", Payload: rec("to-flicker")})
	publish(t, a, &Message{Hub: "chat", Kind: Group, Name: "back", Payload: rec("to-back")})
	fence(t, a, ra)
	for p, want := range map[string]int{"to-g5": 0, "to-g6": 1, "to-flicker": 0, "to-back": 1} {
		if _, got := ra.find(string(rec(p))); got != want {
			t.Errorf("%s delivered %d times, want %d", p, got, want)
		}
	}
	want := float64(n - 1 + 1 + 5) // groups - g5 + back + all/groups/ack/fleet commands/client-result returns
	if got := metric(t, a, "edgeplane_backplane_subscriptions"); got != want {
		t.Errorf("subscriptions gauge = %v, want %v", got, want)
	}
}

func TestRedisGroupCommands(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := startNode(t, RedisConfig{URL: srv.URL(), AckTimeout: 300 * time.Millisecond})
	b, rb := startNode(t, RedisConfig{URL: srv.URL()}, "conn-b")
	ctx := context.Background()

	if err := a.RemoteGroup(ctx, "chat", GroupAdd, "room", "conn-b"); err != nil {
		t.Fatalf("RemoteGroup add for a connection on B: %v", err)
	}
	if err := a.RemoteGroup(ctx, "chat", GroupRemove, "room", "conn-b"); err != nil {
		t.Fatalf("RemoteGroup remove: %v", err)
	}
	rb.mu.Lock()
	applied := slices.Clone(rb.applied)
	rb.mu.Unlock()
	if want := []string{"chat 1 room conn-b", "chat 2 room conn-b"}; !slices.Equal(applied, want) {
		t.Errorf("B applied %q, want %q", applied, want)
	}

	// No owner: the ack time-out ends the wait (its error names it) and is
	// counted.
	timeouts := metric(t, a, "edgeplane_backplane_ack_timeouts_total")
	err := a.RemoteGroup(ctx, "chat", GroupAdd, "room", "nobody")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "within 300ms") {
		t.Fatalf("RemoteGroup for an unknown connection: %v, want ErrNotFound at the 300ms ack time-out", err)
	}
	if got := metric(t, a, "edgeplane_backplane_ack_timeouts_total"); got != timeouts+1 {
		t.Errorf("ack time-outs %v, want %v", got, timeouts+1)
	}
	// The caller's context ends the wait too: it is cancelled once the
	// command is out.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	commands := metric(t, a, "edgeplane_backplane_group_commands_total")
	go func() {
		for metric(t, a, "edgeplane_backplane_group_commands_total") == commands {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if err := a.RemoteGroup(cctx, "chat", GroupAdd, "room", "nobody"); !errors.Is(err, ErrNotFound) || !errors.Is(err, context.Canceled) {
		t.Errorf("RemoteGroup with a context cancelled while it waits: %v, want ErrNotFound (context canceled)", err)
	}
	if got := metric(t, a, "edgeplane_backplane_ack_timeouts_total"); got != timeouts+2 {
		t.Errorf("ack time-outs %v, want %v", got, timeouts+2)
	}
	if got := metric(t, a, "edgeplane_backplane_group_commands_total"); got != 4 {
		t.Errorf("group commands %v, want 4", got)
	}
	// Hubs not configured: B subscribes hub "other" when its connection
	// joins (fanout subscribes P:connection:{id}); A subscribes its ack
	// channel on first use.
	b.Subscribe("other", Connection, "conn-b")
	settle(t, b)
	if err := a.RemoteGroup(ctx, "other", GroupAdd, "room", "conn-b"); err != nil {
		t.Errorf("RemoteGroup on a hub seen for the first time: %v", err)
	}
}

// TestRedisGroupAddAckedAfterSubscription: the owner acks a group add only
// once Redis has confirmed its subscription to the group's channel, so that
// a message published to the group as soon as RemoteGroup returns reaches
// the connection. B's flusher is held before it writes the SUBSCRIBE: the
// add is applied on B but not acked, and A's RemoteGroup times out; once
// the subscription goes out, the next add is acked and the group's
// messages arrive.
func TestRedisGroupAddAckedAfterSubscription(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a, _ := startNode(t, RedisConfig{URL: srv.URL(), AckTimeout: time.Minute})
	// B waits for the confirmation longer than A waits for the ack.
	b, rb := startNode(t, RedisConfig{URL: srv.URL(), PublishTimeout: time.Minute}, "conn-b")
	rb.onApply = func(hub string, action GroupAction, group string) {
		if action == GroupAdd {
			b.Subscribe(hub, Group, group)
		}
	}
	settle(t, a)
	settle(t, b)

	b.subMu.Lock() // the flusher cannot write the SUBSCRIBE
	held, cancel := context.WithTimeout(ctx, time.Second)
	err := a.RemoteGroup(held, "chat", GroupAdd, "room", "conn-b")
	cancel()
	applied := rb.appliedCmds()
	b.subMu.Unlock()
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("RemoteGroup add while B's subscription is unconfirmed: %v, want ErrNotFound (no ack before the subscription)", err)
	}
	if want := []string{"chat 1 room conn-b"}; !slices.Equal(applied, want) {
		t.Fatalf("B applied %q, want %q", applied, want)
	}

	testutil.WaitNoError(t, 10*time.Second, func() error { return b.WaitSubscribed(ctx, "chat", Group, "room") })
	if err := a.RemoteGroup(ctx, "chat", GroupAdd, "room", "conn-b"); err != nil {
		t.Fatalf("RemoteGroup add once subscribed: %v", err)
	}
	publish(t, a, &Message{Hub: "chat", Kind: Group, Name: "room", Payload: rec("to-room")})
	testutil.WaitUntil(t, 5*time.Second, "B receives the group's message", func() bool { return rb.has(string(rec("to-room"))) })
}

// msgLog is a slog.Handler that keeps the messages logged.
type msgLog struct {
	mu   sync.Mutex
	msgs []string
}

func (h *msgLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *msgLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.msgs = append(h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h *msgLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *msgLog) WithGroup(string) slog.Handler      { return h }

func (h *msgLog) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.msgs)
}

// TestRedisGroupAddAckedWithoutConfirmation: an owner that cannot get its
// subscription confirmed within PublishTimeout acks the add all the same
// (the connection is in the group; only the group's messages may miss it
// for a while), and says so in its log.
func TestRedisGroupAddAckedWithoutConfirmation(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a, _ := startNode(t, RedisConfig{URL: srv.URL(), AckTimeout: time.Minute})
	logs := &msgLog{}
	b, rb := startNode(t, RedisConfig{URL: srv.URL(), PublishTimeout: 200 * time.Millisecond, Logger: slog.New(logs)}, "conn-b")
	rb.onApply = func(hub string, action GroupAction, group string) { b.Subscribe(hub, Group, group) }
	settle(t, a)
	settle(t, b)

	b.subMu.Lock() // the flusher cannot write the SUBSCRIBE
	err := a.RemoteGroup(ctx, "chat", GroupAdd, "room", "conn-b")
	b.subMu.Unlock()
	if err != nil {
		t.Fatalf("RemoteGroup add: %v, want the ack sent once B gave up on the confirmation", err)
	}
	if got := logs.all(); !slices.Contains(got, "group subscription not confirmed before ack") {
		t.Errorf("B logged %q, want the unconfirmed subscription", got)
	}
}

// TestRedisWireCompat drives the nodes with the byte-exact vectors written
// by a plain Redis client, as an ASP.NET Core server would.
func TestRedisWireCompat(t *testing.T) {
	srv := redistest.Start(t)
	a, ra := startNode(t, RedisConfig{URL: srv.URL(), Hubs: map[string]string{"chat": "MyApp.ChatHub"}}, "C")
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	ctx := context.Background()

	raw, err := os.ReadFile("wire/testdata/signalr-redis.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		GroupCommand []struct {
			Name, Server, Group, Connection, Hex string
			ID                                   int32
			Action                               uint8
		} `json:"group_command"`
		Invocation []struct{ Name, Hex string }
		Realistic  []struct {
			Name, Hex string
			Excluded  []string
			Record    string `json:"json_record"`
			Suffix    string `json:"channel_suffix"`
		}
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	for _, r := range v.Realistic {
		if err := client.Publish(ctx, "MyApp.ChatHub"+r.Suffix, unhex(r.Hex)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// An ASP.NET server with MessagePack writes both entries: the
	// messagepack one reaches fanout as it is, for MessagePack clients.
	bothJSON := []byte("{\"type\":1,\"target\":\"Send\",\"arguments\":[1]}\x1e")
	bothMP := []byte{0x0b, 0x95, 0x01, 0x80, 0xc0, 0xa4, 'S', 'e', 'n', 'd', 0x91, 0x01}
	both := wire.AppendInvocationProtocols(nil, nil, []string{"json", "messagepack"}, [][]byte{bothJSON, bothMP})
	if err := client.Publish(ctx, "MyApp.ChatHub:all", both).Err(); err != nil {
		t.Fatal(err)
	}
	decodeErrs := metric(t, a, "edgeplane_backplane_decode_errors_total")
	for _, inv := range v.Invocation { // p1/p2 only, no json: not deliverable
		if err := client.Publish(ctx, "MyApp.ChatHub:all", unhex(inv.Hex)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	fence(t, a, ra)
	ra.mu.Lock()
	got := slices.Clone(ra.msgs)
	ra.mu.Unlock()
	got = got[:len(got)-1] // the fence
	if len(got) != len(v.Realistic)+1 {
		t.Fatalf("delivered %d messages, want %d (the realistic vectors and one with both entries)", len(got), len(v.Realistic)+1)
	}
	if last := got[len(got)-1]; !bytes.Equal(last.Payload, bothJSON) || !bytes.Equal(last.MessagePack, bothMP) {
		t.Errorf("json and messagepack entries: delivered %q and % x", last.Payload, last.MessagePack)
	}
	for i, r := range v.Realistic {
		if string(got[i].Payload) != r.Record || got[i].MessagePack != nil || got[i].Kind != All || got[i].Hub != "chat" ||
			!(slices.Equal(got[i].Excluded, r.Excluded) || len(got[i].Excluded)+len(r.Excluded) == 0) {
			t.Errorf("%s: delivered %+v", r.Name, got[i])
		}
	}
	if d := metric(t, a, "edgeplane_backplane_decode_errors_total") - decodeErrs; d != float64(len(v.Invocation)) {
		t.Errorf("decode errors += %v, want %d (invocations without json)", d, len(v.Invocation))
	}

	// A group command for connection C (owned here) from server S: applied
	// and acked on MyApp.ChatHub:internal:ack:S with the vector's bytes.
	ack := client.Subscribe(ctx, "MyApp.ChatHub:internal:ack:S")
	defer ack.Close()
	if _, err := ack.Receive(ctx); err != nil { // subscription confirmed
		t.Fatal(err)
	}
	for _, g := range v.GroupCommand {
		if err := client.Publish(ctx, "MyApp.ChatHub:internal:groups", unhex(g.Hex)).Err(); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := ack.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: no ack: %v", g.Name, err)
		}
		if want := wire.AppendAck(nil, g.ID); m.Payload != string(want) {
			t.Errorf("%s: ack %x, want %x", g.Name, m.Payload, want)
		}
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if want := []string{"chat 1 G C", "chat 2 G C"}; !slices.Equal(ra.applied, want) {
		t.Errorf("applied %q, want %q", ra.applied, want)
	}
}

func TestRedisDecodeErrors(t *testing.T) {
	srv := redistest.Start(t)
	a, ra := startNode(t, RedisConfig{URL: srv.URL()}, "C")
	a.Subscribe("chat", Group, "g")
	settle(t, a)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	ctx := context.Background()
	before := metric(t, a, "edgeplane_backplane_decode_errors_total")
	bad := []struct{ ch, payload string }{
		{"chat:all", "garbage"},
		{"chat:all", ""},
		{"chat:group:g", "\x92\x90\x81\xa4json\xc4\x02{}"}, // record without 0x1e
		{"chat:group:g", "\x92\x90\x81\xa4json\xc4\x00"},   // empty record
		{"chat:internal:groups", "\x95\x01"},
		{"chat:internal:ack:" + a.ServerName(), "\xc1"},
	}
	for _, b := range bad {
		if err := client.Publish(ctx, b.ch, b.payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	fence(t, a, ra)
	if got := metric(t, a, "edgeplane_backplane_decode_errors_total") - before; got != float64(len(bad)) {
		t.Errorf("decode errors += %v, want %d", got, len(bad))
	}
	if p := ra.payloads(); len(p) != 1 {
		t.Errorf("delivered %q, want only the fence", p)
	}
	if !a.Ready() {
		t.Errorf("not ready after bad payloads")
	}
}

func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	a, ra := startNode(t, RedisConfig{URL: srv.URL(), HealthInterval: 500 * time.Millisecond})
	b, rb := startNode(t, RedisConfig{URL: srv.URL(), HealthInterval: 500 * time.Millisecond})
	a.Subscribe("chat", Group, "before")
	settle(t, a)
	for _, n := range []*Redis{a, b} {
		if v := metric(t, n, "edgeplane_backplane_connected"); v != 1 {
			t.Errorf("%s: connected = %v before the kill, want 1", n.ServerName(), v)
		}
	}

	srv.Kill()
	testutil.WaitUntil(t, 5*time.Second, "Ready false after SIGKILL", func() bool { return !a.Ready() && !b.Ready() })
	testutil.WaitUntil(t, 5*time.Second, "connected 0 after SIGKILL", func() bool {
		return metric(t, a, "edgeplane_backplane_connected") == 0 && metric(t, b, "edgeplane_backplane_connected") == 0
	})
	err := b.Publish(context.Background(), &Message{Hub: "chat", Kind: All, Payload: rec("while-down")})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Publish while down: %v, want ErrUnavailable", err)
	}
	// Refused fast, without a round trip: the error wraps ErrUnavailable
	// alone, no I/O error.
	if errors.Unwrap(err) != ErrUnavailable {
		t.Errorf("Publish while down tried Redis: %v", err)
	}
	if got := metric(t, b, "edgeplane_backplane_lost_total"); got != 1 {
		t.Errorf("lost = %v, want 1", got)
	}
	if err := b.RemoteGroup(context.Background(), "chat", GroupAdd, "g", "c"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("RemoteGroup while down: %v, want ErrUnavailable", err)
	}
	// Subscriptions made while down are restored with the others (checked
	// by the "during" delivery after the restart).
	a.Subscribe("chat", Group, "during")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.waitFlushed(ctx); err != nil {
		t.Fatalf("waitFlushed while down: %v", err)
	}

	srv.Restart()
	testutil.WaitUntil(t, 10*time.Second, "Ready after restart", func() bool { return a.Ready() && b.Ready() })
	settle(t, a)
	publish(t, b, &Message{Hub: "chat", Kind: Group, Name: "before", Payload: rec("before")})
	publish(t, b, &Message{Hub: "chat", Kind: Group, Name: "during", Payload: rec("during")})
	fence(t, b, ra, rb)
	for _, p := range []string{"before", "during"} {
		if _, n := ra.find(string(rec(p))); n != 1 {
			t.Errorf("group %q message delivered %d times after the restart, want 1", p, n)
		}
	}
	if ra.has(string(rec("while-down"))) {
		t.Errorf("message published while down was delivered")
	}
	var down float64
	for _, n := range []*Redis{a, b} {
		for name, want := range map[string]float64{
			"edgeplane_backplane_disconnects_total": 1,
			"edgeplane_backplane_reconnects_total":  1,
			"edgeplane_backplane_connected":         1,
		} {
			if v := metric(t, n, name); v != want {
				t.Errorf("%s: %s = %v, want %v", n.ServerName(), name, v, want)
			}
		}
		down += metric(t, n, "edgeplane_backplane_down_seconds_total")
	}
	if down <= 0 {
		t.Errorf("down seconds of both nodes = %v, want the outage counted", down)
	}
}

// TestRedisNoReconnectAfterClose: a read loop that confirms a
// resubscription between Close and its subscriber's close must not count a
// reconnect or set connected back to 1.
func TestRedisNoReconnectAfterClose(t *testing.T) {
	bp, err := NewRedis(RedisConfig{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Up once, then one subscription connection went down and has
	// resubscribed (sync PING 1 written).
	s := &subscriber{r: bp, done: make(chan struct{})}
	bp.m.connected.Inc()
	bp.stateMu.Lock()
	bp.everUp = true
	bp.addFaultLocked(&s.fault, &fault{reason: reasonConnection, since: time.Now(), sub: s, need: 1})
	bp.stateMu.Unlock()
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	bp.synced(s, 1) // what the read loop does when the sync PING is answered
	for name, want := range map[string]float64{
		"edgeplane_backplane_connected":        0,
		"edgeplane_backplane_reconnects_total": 0,
	} {
		if v := metric(t, bp, name); v != want {
			t.Errorf("%s = %v after Close, want %v", name, v, want)
		}
	}
}

func TestRedisUnreachableAtStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	bp, err := NewRedis(RedisConfig{URL: srv.URL(), Hubs: map[string]string{"chat": ""}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	r := newRecorder()
	if err := bp.Start(r); err != nil {
		t.Fatalf("Start with Redis down: %v (want nil, retry in the background)", err)
	}
	if bp.Ready() {
		t.Fatalf("Ready with Redis down")
	}
	srv.Restart()
	testutil.WaitUntil(t, 10*time.Second, "Ready once Redis is up", bp.Ready)
	settle(t, bp)
	fence(t, bp, r)
}

func TestRedisConfig(t *testing.T) {
	if _, err := NewRedis(RedisConfig{URL: "http://x"}); err == nil {
		t.Errorf("bad URL accepted")
	}
	if _, err := NewRedis(RedisConfig{URL: "redis://a:1", ClusterAddrs: []string{"b:1"}}); err == nil {
		t.Errorf("URL and ClusterAddrs together accepted")
	}
	bp, err := NewRedis(RedisConfig{Hubs: map[string]string{"chat": "App.ChatHub"}})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	c := bp.cfg
	if c.Addr != "127.0.0.1:6379" || c.AckTimeout != DefaultAckTimeout || c.Logger == nil || c.ServerName == "" {
		t.Errorf("defaults not applied: %+v", c)
	}
	for _, tc := range []struct {
		hub  string
		kind Kind
		name string
		want string
	}{
		{"chat", All, "", "App.ChatHub:all"},
		{"chat", Group, "g:1", "App.ChatHub:group:g:1"},
		{"other", User, "u", "other:user:u"},
		{"other", Connection, "c", "other:connection:c"},
	} {
		if got := bp.Channel(tc.hub, tc.kind, tc.name); got != tc.want {
			t.Errorf("Channel(%s, %s, %s) = %q, want %q", tc.hub, tc.kind, tc.name, got, tc.want)
		}
	}
	if err := bp.Publish(context.Background(), &Message{Hub: "chat", Kind: All, Payload: []byte("x\x1e")}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Publish before Start: %v, want ErrUnavailable", err)
	}
}

func TestRedisUpstream(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := startNode(t, RedisConfig{URL: srv.URL(), UpstreamMaxLen: 1000})
	up := a.Upstream()
	var _ Upstream = up
	events := []Event{
		{Kind: EventConnected, Hub: "chat", ConnID: "c1", UserID: "u1"},
		{Kind: EventInvocation, Hub: "chat", ConnID: "c1", UserID: "u1", InvocationID: "7", Target: "Echo", Arguments: []byte(`["hi",1]`)},
		{Kind: EventInvocation, Hub: "chat", ConnID: "c1", Target: "Fire"},
		{Kind: EventDisconnected, Hub: "chat", ConnID: "c1", Reason: "keep-alive timeout"},
		{Kind: EventConnected, Hub: "chat", ConnID: "c2", UserID: "u2", Context: &ConnectContext{
			Headers: map[string][]string{"User-Agent": {"ua"}, "X-A": {"1", "2"}}, Query: "a=1&b=%20",
			RemoteAddr: "127.0.0.1:5", Claims: []byte(`{"nameid":"u2","exp":1}`), Truncated: true,
		}},
		{Kind: EventConnected, Hub: "chat", ConnID: "c3", Context: &ConnectContext{RemoteAddr: "[::1]:6"}},
	}
	for i := range events {
		if err := up.Send(&events[i]); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	var got []redis.XMessage
	testutil.WaitUntil(t, 5*time.Second, "6 stream entries", func() bool {
		s, err := client.XRead(context.Background(), &redis.XReadArgs{Streams: []string{"chat:upstream", "0"}, Count: 10, Block: -1}).Result()
		if err != nil || len(s) == 0 {
			return false
		}
		got = s[0].Messages
		return len(got) == 6
	})
	want := []map[string]any{
		{"type": "connected", "hub": "chat", "connectionId": "c1", "userId": "u1", "server": a.ServerName()},
		{"type": "invocation", "hub": "chat", "connectionId": "c1", "userId": "u1", "invocationId": "7", "target": "Echo", "arguments": `["hi",1]`, "server": a.ServerName()},
		{"type": "invocation", "hub": "chat", "connectionId": "c1", "target": "Fire", "arguments": `[]`, "server": a.ServerName()},
		{"type": "disconnected", "hub": "chat", "connectionId": "c1", "reason": "keep-alive timeout", "server": a.ServerName()},
		{"type": "connected", "hub": "chat", "connectionId": "c2", "userId": "u2", "remoteAddress": "127.0.0.1:5", "query": "a=1&b=%20",
			"headers": `{"User-Agent":["ua"],"X-A":["1","2"]}`, "claims": `{"nameid":"u2","exp":1}`, "truncated": "true", "server": a.ServerName()},
		{"type": "connected", "hub": "chat", "connectionId": "c3", "remoteAddress": "[::1]:6", "server": a.ServerName()},
	}
	for i := range want {
		if fmt.Sprint(got[i].Values) != fmt.Sprint(want[i]) {
			t.Errorf("entry %d = %v, want %v", i, got[i].Values, want[i])
		}
	}
	// MAXLEN ~ bounds the stream.
	for i := 0; i < 3000; i++ {
		if err := up.Send(&events[0]); err != nil {
			// The buffer is 10,000; nothing may be refused here.
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	testutil.WaitUntil(t, 10*time.Second, "stream trimmed", func() bool {
		n, err := client.XLen(context.Background(), "chat:upstream").Result()
		return err == nil && n < 2000 && metric(t, a, "edgeplane_backplane_upstream_sent_total") == 3006
	})
	_ = a.Close()
	if err := up.Send(&events[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
}

func TestRedisUpstreamUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := startNode(t, RedisConfig{URL: srv.URL(), UpstreamBuffer: 2})
	up := a.Upstream()
	srv.Kill()
	testutil.WaitUntil(t, 5*time.Second, "not ready", func() bool { return !a.Ready() })
	if err := up.Send(&Event{Kind: EventConnected, Hub: "chat", ConnID: "c"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Send while down: %v, want ErrUnavailable", err)
	}
	if d := metric(t, a, "edgeplane_backplane_upstream_dropped_total"); d != 1 {
		t.Errorf("upstream dropped = %v, want 1", d)
	}
}

// BenchmarkRedisReceive measures the path from a Redis message (as the
// RESP reader hands it over) to Receiver.Deliver: route lookup, MessagePack
// decode, the Message. No allocation here; the reader's one (the payload)
// is in BenchmarkRedisReadPath.
func BenchmarkRedisReceive(b *testing.B) {
	for _, nex := range []int{0, 4} {
		b.Run(fmt.Sprintf("excluded=%d", nex), func(b *testing.B) {
			bp, err := NewRedis(RedisConfig{Logger: slog.New(slog.NewTextHandler(ioDiscard{}, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer bp.Close()
			var n int
			bp.recv = countingReceiver{&n}
			bp.routes["chat:group:g"] = route{hub: "chat", kind: chanGroup, name: "g"}
			var ex []string
			for i := 0; i < nex; i++ {
				ex = append(ex, fmt.Sprintf("conn-%d", i))
			}
			payload := wire.AppendInvocation(nil, ex, rec("hello world"))
			s := &subscriber{r: bp, excluded: make([]string, 0, 16)}
			channel := []byte("chat:group:g")
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				bp.handle(s, channel, payload)
			}
			if n != b.N {
				b.Fatalf("delivered %d of %d", n, b.N)
			}
		})
	}
}

type countingReceiver struct{ n *int }

func (c countingReceiver) Deliver(m *Message) {
	if len(m.Payload) > 0 {
		*c.n++
	}
}
func (countingReceiver) ApplyGroup(string, GroupAction, string, string) bool { return false }

// TestRedisIdle: an idle subscription is pinged and answers (its last read
// keeps moving), is not reconnected, and stays ready.
func TestRedisIdle(t *testing.T) {
	srv := redistest.Start(t)
	const h = 400 * time.Millisecond
	a, ra := startNode(t, RedisConfig{URL: srv.URL(), HealthInterval: h})
	settle(t, a)
	a.subMu.Lock()
	var s *subscriber
	for _, x := range a.subs {
		s = x
	}
	a.subMu.Unlock()
	start := time.Now()
	for time.Since(start) < 5*h {
		time.Sleep(h / 4)
		if !a.Ready() {
			t.Fatalf("not ready while idle: %s", a.faultSummary())
		}
	}
	if last := time.Unix(0, s.alive.Load()); last.Before(start.Add(3 * h)) {
		t.Errorf("nothing read on the idle subscription since %v (started %v): not pinged", last, start)
	}
	for _, name := range []string{"edgeplane_backplane_disconnects_total", `edgeplane_backplane_gaps_total{reason="no_pong"}`} {
		if d := metric(t, a, name); d != 0 {
			t.Errorf("%s = %v while idle", name, d)
		}
	}
	fence(t, a, ra)
}

// TestRedisCloseLeavesNoGoroutines: Close stops every goroutine the
// backplane started (read loops, flusher, health, acks, upstream writer)
// and its client's. TestMain checks the whole package at the end; this
// names the scenario.
func TestRedisCloseLeavesNoGoroutines(t *testing.T) {
	srv := redistest.Start(t)
	before := testutil.Snapshot()
	bp, err := NewRedis(RedisConfig{URL: srv.URL(), Hubs: map[string]string{"chat": "", "news": ""}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := bp.Start(newRecorder()); err != nil {
		t.Fatal(err)
	}
	if err := bp.Upstream().Send(&Event{Kind: EventConnected, Hub: "chat", ConnID: "c"}); err != nil {
		t.Fatalf("upstream Send: %v", err)
	}
	bp.Subscribe("chat", Group, "g")
	settle(t, bp)
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bp.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	leaked := testutil.Leaks(before, leakIgnores...)
	for len(leaked) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		leaked = testutil.Leaks(before, leakIgnores...)
	}
	if len(leaked) > 0 {
		t.Errorf("%d goroutines outlive Close:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	}
}
