//go:build unix

package conn

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// Scale benchmarks of the connection layer's per-connection structures at
// 2^16 connections and, with EDGEPLANE_BENCH_MILLION=1 (make
// bench-million), 2^18 and 2^20: the timing wheel, the drain and the
// metrics scrape. ns per item, per connection, must not grow with the
// count as an O(log n) or O(n) structure's would (16x from 2^16 to 2^20),
// only by the cache misses of structures that outgrew the caches
// (docs/OPERATING.md has the ratios).

func scaleSizes() []int {
	if os.Getenv("EDGEPLANE_BENCH_MILLION") != "" {
		return []int{1 << 16, 1 << 18, 1 << 20}
	}
	return []int{1 << 16}
}

// cpuNs is this process's CPU time (user+system, every thread, the GC's
// included) in nanoseconds.
func cpuNs() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// reportCPU reports the CPU time since cpu0 per operation (ops: how many
// were done, an entry each for the per-entry figures). On a shared
// machine other processes' load inflates wall time (ns/op) but not CPU
// time, so the cpu-ns figures are the ones to compare across sizes.
func reportCPU(b *testing.B, cpu0 int64, ops float64, unit string) {
	b.ReportMetric(float64(cpuNs()-cpu0)/ops, "cpu-ns/"+unit)
}

func nextLCG(x uint64) uint64 { return x*6364136223846793005 + 1442695040888963407 }

// scaleItem is the smallest wheel item: a tick reschedules it 15 s on,
// as an idle connection's keep-alive does.
type scaleItem struct {
	wl wheelLinks[scaleItem]
	ws uint8
}

func (it *scaleItem) links() *wheelLinks[scaleItem] { return &it.wl }
func (it *scaleItem) slot() *uint8                  { return &it.ws }
func (it *scaleItem) tick(now int64) int64          { return now + 15 }

// BenchmarkScaleWheel: n items on the wheel. reschedule moves one item to
// another slot (what a sweep does to an idle connection); sweep takes a
// whole slot's items off, ticks them and puts them back, as the wheel's
// run loop does each second, in its batches: ns/item.
func BenchmarkScaleWheel(b *testing.B) {
	for _, n := range scaleSizes() {
		w := newWheel[scaleItem]()
		items := make([]scaleItem, n)
		for i := range items {
			w.add(&items[i], int64(2+i%15))
		}
		mask := uint64(n - 1)
		b.Run(fmt.Sprintf("reschedule/items=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			x := uint64(5)
			cpu0 := cpuNs()
			for b.Loop() {
				x = nextLCG(x)
				w.add(&items[(x>>20)&mask], int64(2+(x>>8)%15))
			}
			reportCPU(b, cpu0, float64(b.N), "op")
			if w.len() != n {
				b.Fatalf("wheel holds %d, want %d", w.len(), n)
			}
		})
		b.Run(fmt.Sprintf("sweep/items=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			swept := 0
			cpu0 := cpuNs()
			for b.Loop() {
				swept += sweepOnce(w)
			}
			reportCPU(b, cpu0, float64(swept), "item")
			if w.len() != n {
				b.Fatalf("wheel holds %d, want %d", w.len(), n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(swept), "ns/item")
		})
	}
}

// sweepOnce advances the wheel one second and sweeps the due slot the way
// wheel.run does (batches of sweepBatch under the lock, ticks outside it),
// returning how many items it ticked.
func sweepOnce(w *wheel[scaleItem, *scaleItem]) int {
	var batch [sweepBatch]*scaleItem
	var next [sweepBatch]int64
	w.mu.Lock()
	w.swept++
	sec := w.swept
	i := sec % wheelSlots
	w.mu.Unlock()
	w.now.Store(sec)
	total := 0
	for {
		w.mu.Lock()
		k := 0
		for ; k < sweepBatch && w.heads[i] != nil; k++ {
			it := w.heads[i]
			w.unlinkLocked(it)
			*it.slot() = slotTicking
			batch[k] = it
		}
		w.mu.Unlock()
		if k == 0 {
			return total
		}
		for j := range k {
			next[j] = batch[j].tick(sec)
		}
		w.mu.Lock()
		for j := range k {
			if sl := batch[j].slot(); *sl == slotTicking {
				*sl = 0
				w.addLocked(batch[j], next[j])
			}
		}
		w.mu.Unlock()
		total += k
	}
}

// sinkConn is the lightest poller.Conn: it takes every frame and keeps
// nothing, so a million of them measure the connection layer alone.
type sinkConn struct{ queued int }

var sinkAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000}

func (c *sinkConn) Send([]byte) error    { return nil }
func (c *sinkConn) Shutdown([]byte)      {}
func (c *sinkConn) Close() error         { return nil }
func (c *sinkConn) QueuedBytes() int     { return c.queued }
func (c *sinkConn) RemoteAddr() net.Addr { return sinkAddr }

// openScale opens n connections (upgrade and SignalR handshake through
// OnData, as the poller would hand them over) on a fresh server.
func openScale(b *testing.B, n int) *Server {
	b.Helper()
	// Opening a million takes longer than a client's time-out, and these
	// clients never ping: the time-outs are out of the way.
	s := newTestServer(b, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ClientTimeout: 24 * time.Hour, KeepAliveInterval: time.Hour})
	up := []byte("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	hs := clientFrame(0x81, []byte(`{"protocol":"json","version":1}`+"\x1e"))
	buf := make([]byte, max(len(up), len(hs)))
	for range n {
		sess := s.OnOpen(&sinkConn{queued: 1})
		sess.OnData(buf[:copy(buf, up)]) // OnData may modify its input
		sess.OnData(buf[:copy(buf, hs)])
	}
	if got := s.router.Hub("chat").Len(); got != n {
		b.Fatalf("%d connections registered, want %d", got, n)
	}
	return s
}

// BenchmarkScaleScrape: one /metrics exposition of the connection layer
// with n open connections (edgeplane_queue_bytes walks every one): ns/conn.
func BenchmarkScaleScrape(b *testing.B) {
	for _, n := range scaleSizes() {
		s := openScale(b, n)
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuNs()
			for b.Loop() {
				s.Metrics().WritePrometheus(io.Discard)
			}
			reportCPU(b, cpu0, float64(b.N)*float64(n), "conn")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/conn")
		})
		s.Close()
	}
}

// BenchmarkScaleDrain: a drain of n connections with no pacing window
// (each gets its SignalR Close and WebSocket 1012): the work per
// connection that a paced drain spreads over its window. ns/conn.
func BenchmarkScaleDrain(b *testing.B) {
	for _, n := range scaleSizes() {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var cpu int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s := openScale(b, n)
				runtime.GC() // the set-up's garbage is not the drain's
				b.StartTimer()
				cpu0 := cpuNs()
				s.Drain(context.Background(), 0)
				cpu += cpuNs() - cpu0
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(cpu)/float64(b.N)/float64(n), "cpu-ns/conn")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/conn")
		})
	}
}
