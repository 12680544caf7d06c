//go:build linux

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
	cmd := exec.Command(os.Args[0], "-test.run=^TestEpollHelperProcess$")
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
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "addr=") {
		b.Fatalf("server said %q, %v", line, err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "addr="))

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
	line, err = r.ReadString('\n')
	if err != nil {
		b.Fatalf("server: %v", err)
	}
	var res densityResult
	var rss0, rss1, heap0, heap1 int64
	if _, err := fmt.Sscanf(line, "conns=%d rss0=%d rss1=%d heap0=%d heap1=%d goroutines=%d",
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
