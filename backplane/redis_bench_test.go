package backplane

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/redistest"
)

type atomicReceiver struct{ n atomic.Int64 }

func (a *atomicReceiver) Deliver(*Message)                                    { a.n.Add(1) }
func (a *atomicReceiver) ApplyGroup(string, GroupAction, string, string) bool { return false }

// BenchmarkRedisPublishDeliver: Publish on one node → a real redis-server →
// Deliver on the same node: one message on the wire per op, encode and
// decode included, published from 8×GOMAXPROCS goroutines. Allocations are
// per message, both ends, go-redis included.
func BenchmarkRedisPublishDeliver(b *testing.B) {
	srv := redistest.Start(b)
	bp, err := NewRedis(RedisConfig{URL: srv.URL(), Hubs: map[string]string{"chat": ""}, Logger: slog.New(slog.NewTextHandler(ioDiscard{}, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer bp.Close()
	recv := &atomicReceiver{}
	if err := bp.Start(recv); err != nil || !bp.Ready() {
		b.Fatalf("start: %v", err)
	}
	m := &Message{Hub: "chat", Kind: All, Excluded: []string{"conn-1"}, Payload: rec("hello world")}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := bp.Publish(ctx, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for recv.n.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	if got := recv.n.Load(); got != int64(b.N) {
		b.Fatalf("delivered %d of %d", got, b.N)
	}
}
