package backplane_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/backplane/wire"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/redistest"
)

// queueMember stands for a connection: Deliver appends the shared frame to
// a bounded queue (reset when full), as conn's outbound queue does, without
// allocating.
type queueMember struct {
	q [][]byte
	n int
}

func newQueueMember() *queueMember { return &queueMember{q: make([][]byte, 0, 64)} }

func (m *queueMember) Deliver(f *fanout.Frames) int {
	frame := f.Frame(hubproto.IDJSON)
	if len(m.q) == cap(m.q) {
		clear(m.q)
		m.q = m.q[:0]
	}
	m.q = append(m.q, frame)
	m.n++
	return len(frame)
}

var fanoutRecipients = []int{1, 100, 10_000}

// deliveryCounts counts what a router reports through its OnDeliver hook.
type deliveryCounts struct{ messages, deliveries atomic.Uint64 }

// fanoutRouter is a one-hub router with n members; with group != "" they
// are all members of it.
func fanoutRouter(tb testing.TB, sub fanout.Subscriber, n int, group string) (*fanout.Router, *deliveryCounts, []*queueMember) {
	tb.Helper()
	r := fanout.NewRouter([]string{"chat"}, sub)
	dc := &deliveryCounts{}
	r.Stats.OnDeliver = func(recipients, _ int, _ time.Duration) {
		dc.messages.Add(1)
		dc.deliveries.Add(uint64(recipients))
	}
	h := r.Hub("chat")
	ms := make([]*queueMember, n)
	for i := range ms {
		ms[i] = newQueueMember()
		id := "conn-" + strconv.Itoa(i)
		if _, ok := h.Add(ms[i], id, ""); !ok {
			tb.Fatalf("add %s", id)
		}
		if group != "" && !h.AddToGroup(id, group) {
			tb.Fatalf("add %s to %s", id, group)
		}
	}
	return r, dc, ms
}

// benchRecord is a realistic chat message record (~100 bytes).
var benchRecord = []byte(`{"type":1,"target":"newMessage","arguments":[{"user":"alice","text":"hello, world","ts":1732800000000}]}` + "\x1e")

// BenchmarkFanoutFromRedisMessage is the Redis-message-to-queued-frames
// path without the network: the payload of a received pub/sub message (a
// string, as go-redis hands it over) is decoded with wire.ReadInvocation
// (zero-copy: the record is a sub-slice of the message) and delivered
// through fanout.Router, which frames it once and queues the same frame to
// every local recipient. This is what the Redis backplane's receive
// goroutine does per message. One op = one message; allocs/op must not
// grow with the number of recipients (the frame is the one allocation).
func BenchmarkFanoutFromRedisMessage(b *testing.B) {
	for _, kind := range []backplane.Kind{backplane.All, backplane.Group} {
		for _, n := range fanoutRecipients {
			b.Run(fmt.Sprintf("kind=%s/recipients=%d", kind, n), func(b *testing.B) {
				group := ""
				if kind == backplane.Group {
					group = "room"
				}
				r, dc, ms := fanoutRouter(b, nil, n, group)
				// One excluded id (not a member), as ASP.NET's
				// OthersInGroup/AllExcept would send.
				payload := string(wire.AppendInvocation(nil, []string{"conn-elsewhere"}, benchRecord))
				excluded := make([]string, 0, 8)
				var msg backplane.Message
				b.ReportAllocs()
				b.SetBytes(int64(len(payload)))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					p := unsafe.Slice(unsafe.StringData(payload), len(payload))
					ex, js, err := wire.ReadInvocation(p, excluded[:0])
					if err != nil {
						b.Fatal(err)
					}
					msg = backplane.Message{Hub: "chat", Kind: kind, Name: group, Excluded: ex, Payload: js}
					r.Deliver(&msg)
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/recipient")
				if got := dc.deliveries.Load(); got != uint64(b.N)*uint64(n) {
					b.Fatalf("deliveries %d, want %d", got, uint64(b.N)*uint64(n))
				}
				if ms[n-1].n != b.N {
					b.Fatalf("last member got %d of %d", ms[n-1].n, b.N)
				}
			})
		}
	}
}

// BenchmarkRedisToQueuedFrames is the same path through a real
// redis-server: another client PUBLISHes (pipelined, 100 per round trip)
// on chat:all, the node's Redis backplane receives, decodes and delivers
// through a fanout.Router to n local members. One op = one message
// published and queued to all n members. Allocations are the whole
// process's per message (go-redis on both sides included) and must not
// grow with n.
func BenchmarkRedisToQueuedFrames(b *testing.B) {
	srv := redistest.Start(b)
	pub := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer pub.Close()
	payload := wire.AppendInvocation(nil, nil, benchRecord)
	for _, n := range fanoutRecipients {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			bp, err := backplane.NewRedis(backplane.RedisConfig{URL: srv.URL(), Hubs: map[string]string{"chat": ""}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer bp.Close()
			r, dc, ms := fanoutRouter(b, bp, n, "")
			if err := bp.Start(r); err != nil || !bp.Ready() {
				b.Fatalf("start: %v (ready %v)", err, bp.Ready())
			}
			ctx := context.Background()
			// Each member subscribed its connection channel: let those
			// subscriptions land before measuring, so their allocations
			// are not counted.
			deadline := time.Now().Add(30 * time.Second)
			for {
				chans, err := pub.PubSubChannels(ctx, "chat:connection:*").Result()
				if err == nil && len(chans) == n {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("%d connection channels subscribed, want %d (%v)", len(chans), n, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			// One message through, read after the 10,000 subscription
			// confirmations on the same connection: they are all consumed.
			if err := pub.Publish(ctx, "chat:all", payload).Err(); err != nil {
				b.Fatal(err)
			}
			for dc.messages.Load() < 1 {
				if time.Now().After(deadline) {
					b.Fatal("warm-up message not delivered")
				}
				time.Sleep(time.Millisecond)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for i := 0; i < b.N; {
				pipe := pub.Pipeline()
				for j := 0; j < 100 && i < b.N; j++ {
					pipe.Publish(ctx, "chat:all", payload)
					i++
				}
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
			deadline = time.Now().Add(60 * time.Second)
			for dc.messages.Load() < uint64(b.N)+1 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond)
			}
			b.StopTimer()
			if got := dc.messages.Load() - 1; got != uint64(b.N) {
				b.Fatalf("delivered %d of %d messages", got, b.N)
			}
			if ms[n-1].n != b.N+1 { // queued before OnDeliver counted the message
				b.Fatalf("last member got %d of %d", ms[n-1].n-1, b.N)
			}
		})
	}
}
