package poller

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPollerDensity measures the memory each idle connection costs a
// poller: for every registered backend, a server runs in a child process
// (so each backend starts from a clean baseline) with a minimal echo
// Session, this process opens N idle connections to it, and the server
// reports its RSS and Go heap+stack growth divided by N. Run it with
//
//	go test -run '^$' -bench PollerDensity -benchtime 1x ./poller/
//
// N is EDGEPLANE_DENSITY_N (default 9000). With
// EDGEPLANE_DENSITY_HEAPPROFILE=/path/prefix each server also writes an
// exact heap profile (MemProfileRate 1) to prefix.BACKEND.pprof.
func BenchmarkPollerDensity(b *testing.B) {
	if os.Getenv("EPOLL_HELPER") == "density" {
		densityServer()
		os.Exit(0)
	}
	n := 9000
	if v, err := strconv.Atoi(os.Getenv("EDGEPLANE_DENSITY_N")); err == nil && v > 0 {
		n = v
	}
	names := Backends()
	sort.Strings(names)
	for _, backend := range names {
		b.Run(backend, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				r := runDensity(b, backend, n)
				b.ReportMetric(r.rssPerConn, "rss-B/conn")
				b.ReportMetric(r.heapPerConn, "heap+stack-B/conn")
				b.ReportMetric(float64(r.goroutines), "goroutines")
				b.ReportMetric(float64(r.conns), "conns")
			}
		})
	}
}

type densityResult struct {
	conns       int
	rssPerConn  float64
	heapPerConn float64
	goroutines  int
}

func runDensity(b *testing.B, backend string, n int) densityResult {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkPollerDensity$", "-test.benchtime=1x")
	cmd.Env = append(os.Environ(), "EPOLL_HELPER=density", "EPOLL_BACKEND="+backend, "EPOLL_N="+strconv.Itoa(n))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	r := bufio.NewReader(stdout)
	addr, err := readPrefixed(r, "addr=")
	if err != nil {
		b.Fatal(err)
	}

	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for len(conns) < n {
		// Batches below the accept backlog, so no connection is lost to
		// SYN cookies.
		for k := 0; k < 500 && len(conns) < n; k++ {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				b.Fatalf("dial %d: %v", len(conns), err)
			}
			conns = append(conns, c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintln(stdin, "dialed")
	line, err := readPrefixed(r, "conns=")
	if err != nil {
		b.Fatal(err)
	}
	var res densityResult
	var rss0, rss1, heap0, heap1 int64
	if _, err := fmt.Sscanf(line, "%d rss0=%d rss1=%d heap0=%d heap1=%d goroutines=%d",
		&res.conns, &rss0, &rss1, &heap0, &heap1, &res.goroutines); err != nil {
		b.Fatalf("server said %q: %v", line, err)
	}
	if res.conns != n {
		b.Fatalf("server holds %d connections, want %d", res.conns, n)
	}
	res.rssPerConn = float64(rss1-rss0) / float64(n)
	res.heapPerConn = float64(heap1-heap0) / float64(n)
	b.Logf("%s: %d idle connections: RSS %.1f -> %.1f MiB (%.0f B/conn), Go heap+stack %.0f B/conn, %d goroutines",
		backend, n, float64(rss0)/(1<<20), float64(rss1)/(1<<20), res.rssPerConn, res.heapPerConn, res.goroutines)
	return res
}

// densityEcho is the minimal Session of the density benchmark.
type densityEcho struct{ c Conn }

func (s *densityEcho) OnData(b []byte) { s.c.Send(append([]byte(nil), b...)) }
func (s *densityEcho) OnClose(error)   {}

type densityHandler struct{}

func (densityHandler) OnOpen(c Conn) Session { return &densityEcho{c: c} }

// densityServer is the child side of BenchmarkPollerDensity.
func densityServer() {
	profile := os.Getenv("EDGEPLANE_DENSITY_HEAPPROFILE") // a path prefix
	if profile != "" {
		runtime.MemProfileRate = 1
	}
	n, _ := strconv.Atoi(os.Getenv("EPOLL_N"))
	p, err := New(os.Getenv("EPOLL_BACKEND"), Config{}, densityHandler{})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	defer p.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error", err)
		return
	}
	if err := p.Serve(ln); err != nil {
		fmt.Println("error", err)
		return
	}
	rss0, heap0 := settledMemory()
	fmt.Printf("addr=%s\n", ln.Addr())
	in := bufio.NewReader(os.Stdin)
	in.ReadString('\n') // the client has dialed
	for deadline := time.Now().Add(30 * time.Second); p.Conns() < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // idle
	rss1, heap1 := settledMemory()
	if profile != "" {
		if f, err := os.Create(profile + "." + os.Getenv("EPOLL_BACKEND") + ".pprof"); err == nil {
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}
	fmt.Printf("conns=%d rss0=%d rss1=%d heap0=%d heap1=%d goroutines=%d\n",
		p.Conns(), rss0, rss1, heap0, heap1, runtime.NumGoroutine())
	in.ReadString('\n') // stdin closed: done
}

// settledMemory returns RSS and Go heap+stack in use after a GC that
// returns freed memory to the OS.
func settledMemory() (rss, heap int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/statm")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			rss = pages * int64(os.Getpagesize())
		}
	}
	return rss, int64(ms.HeapInuse + ms.StackInuse)
}

// BenchmarkPollerBroadcast sends one shared 64-byte frame to every one of
// N connections per operation, on each backend, and waits until the
// clients (in this process, one reading goroutine each) have received
// everything. Compare backends by ns/op from the same run:
//
//	go test -run '^$' -bench PollerBroadcast ./poller/
func BenchmarkPollerBroadcast(b *testing.B) {
	names := Backends()
	sort.Strings(names)
	for _, backend := range names {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/conns=%d", backend, n), func(b *testing.B) { benchBroadcast(b, backend, n) })
		}
	}
}

type collectHandler struct {
	mu    sync.Mutex
	conns []Conn
}

func (h *collectHandler) OnOpen(c Conn) Session {
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
	return &densityEcho{c: c}
}

func benchBroadcast(b *testing.B, backend string, n int) {
	h := &collectHandler{}
	p, err := New(backend, Config{MaxQueueBytes: 64 << 20}, h)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Serve(ln); err != nil {
		b.Fatal(err)
	}
	var received atomic.Int64
	var wg sync.WaitGroup
	clients := make([]net.Conn, n)
	for i := range clients {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				k, err := c.Read(buf)
				received.Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
	}()
	var conns []Conn
	for deadline := time.Now().Add(10 * time.Second); len(conns) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d connections open", len(conns), n)
		}
		h.mu.Lock() // Conns counts at admission, before OnOpen: wait for OnOpen
		conns = h.conns
		h.mu.Unlock()
	}
	frame := make([]byte, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame) * n))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, c := range conns {
			if err := c.Send(frame); err != nil {
				b.Fatal(err)
			}
		}
	}
	want := int64(b.N) * int64(len(frame)*n)
	for deadline := time.Now().Add(30 * time.Second); received.Load() < want; time.Sleep(50 * time.Microsecond) {
		if time.Now().After(deadline) {
			b.Fatalf("received %d of %d bytes", received.Load(), want)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/recipient")
}

// readPrefixed reads lines from a child process until one starts with
// prefix (the test framework may print its own lines first) and returns
// the rest of it.
func readPrefixed(r *bufio.Reader, prefix string) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(line, prefix)), nil
		}
		if err != nil {
			return "", fmt.Errorf("child exited before printing %q: %w", prefix, err)
		}
	}
}
