package bench

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// FloorCommand is the hidden edgebench subcommand that runs the floor
// server (FloorMain).
const FloorCommand = "_floor"

// Floor write modes: one write(2) of the frame per socket, or one
// writev(2) with the frame as its one iovec (what the node's epoll loop
// issues for a single queued frame).
const (
	FloorWrite  = "write"
	FloorWritev = "writev"
)

// FloorConfig configures the floor server.
type FloorConfig struct {
	// Listen is the client address; Admin the REST/metrics address.
	Listen, Admin string
	// Hub is the only hub served; default "chat".
	Hub string
	// Redis, if set, makes REST sends go through Redis and the server
	// deliver what arrives on {hub}:all and {hub}:group:*, as the nodes do.
	Redis string
	// Writers is the number of threads the broadcast loop is split over;
	// default GOMAXPROCS (the node runs one event loop per core).
	Writers int
	// Mode is the default write mode (FloorWrite); a REST send may pick
	// another with ?mode=.
	Mode string
	// KeepAlive is the interval of the server's pings to each connection,
	// spread over it in 100 ms slots; default 15 s (the node's).
	KeepAlive time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Floor is what the kernel costs, measured with the same client as the
// node: a server that does nothing but the system calls. It answers
// negotiate and the WebSocket upgrade and handshake just well enough for
// the load client, then never parses another byte: one epoll loop reads
// (and drops) the clients' pings and writes its own precompiled ping every
// keep-alive interval, and a broadcast encodes the frame once and loops
// over the recipients' sockets with one non-blocking write (or writev)
// each, split over Writers threads. No queue, no buffer, no per-message
// allocation: the floor any server design pays for the same deliveries.
type Floor struct {
	cfg  FloorConfig
	log  *slog.Logger
	epfd int
	lfd  int
	rdb  *redis.Client
	ping []byte

	// The loop owns conns' states; mu guards the membership (open, ids,
	// groups) that broadcasts read, and is held for reading during a
	// broadcast so that no socket is closed (and its descriptor reused)
	// under the write loop.
	mu     sync.RWMutex
	conns  []fconn // by descriptor
	open   []int32 // open connections, for the keep-alive slots
	ids    map[string]int32
	groups map[string]*floorGroup
	nextID atomic.Uint64

	set        *metrics.Set
	nOpen      atomic.Int64
	broadcasts *metrics.Counter
	writes     *metrics.Counter
	shortW     *metrics.Counter
	wallNs     *metrics.Counter
	cpuNs      *metrics.Counter
	pingsOut   *metrics.Counter
	reads      *metrics.Counter
}

type floorGroup struct {
	members map[int32]struct{}
	list    []int32 // cached members; nil when stale
}

type fconn struct {
	state uint8
	pos   int32 // index in open, -1 when not open
	id    string
	in    []byte // partial request or frame, only while incomplete
}

const (
	fsFree uint8 = iota
	fsHTTP
	fsWS
	fsOpen
)

// NewFloor creates a floor server; Serve runs it.
func NewFloor(cfg FloorConfig) *Floor {
	if cfg.Hub == "" {
		cfg.Hub = "chat"
	}
	if cfg.Writers <= 0 {
		cfg.Writers = runtime.GOMAXPROCS(0)
	}
	if cfg.Mode == "" {
		cfg.Mode = FloorWrite
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	f := &Floor{cfg: cfg, log: cfg.Logger, ids: map[string]int32{}, groups: map[string]*floorGroup{},
		ping: wsframe.TextFrame(hubproto.JSON.Ping()), set: metrics.NewSet()}
	if f.log == nil {
		f.log = slog.Default()
	}
	f.set.NewGauge("floor_connections", func() float64 { return float64(f.nOpen.Load()) })
	f.broadcasts = f.set.NewCounter("floor_broadcasts_total")
	f.writes = f.set.NewCounter("floor_writes_total")
	f.shortW = f.set.NewCounter("floor_short_writes_total")
	f.wallNs = f.set.NewCounter("floor_write_wall_nanoseconds_total")
	f.cpuNs = f.set.NewCounter("floor_write_cpu_nanoseconds_total")
	f.pingsOut = f.set.NewCounter("floor_pings_out_total")
	f.reads = f.set.NewCounter("floor_reads_total")
	return f
}

// FloorStats is what one broadcast loop did.
type FloorStats struct {
	Mode       string `json:"mode"`
	Recipients int    `json:"recipients"`
	Writes     int    `json:"writes"`       // whole frames written
	Short      int    `json:"short_writes"` // partial, EAGAIN or error: the frame did not go out whole
	WallNs     int64  `json:"wall_ns"`      // first write to last, all threads
	CPUNs      int64  `json:"cpu_ns"`       // the writer threads' CPU (user+system) in the loop
}

// Serve listens on both ports and serves until ctx ends.
func (f *Floor) Serve(ctx context.Context) error {
	lfd, err := listenNonblock(f.cfg.Listen)
	if err != nil {
		return err
	}
	f.lfd = lfd
	al, err := net.Listen("tcp", f.cfg.Admin)
	if err != nil {
		unix.Close(lfd)
		return fmt.Errorf("floor: listen %s: %w", f.cfg.Admin, err)
	}
	if f.cfg.Redis != "" {
		opt, err := redis.ParseURL(f.cfg.Redis)
		if err != nil {
			unix.Close(lfd)
			al.Close()
			return fmt.Errorf("floor: redis url: %w", err)
		}
		f.rdb = redis.NewClient(opt)
		defer f.rdb.Close()
		ps := f.rdb.PSubscribe(ctx, f.cfg.Hub+":all", f.cfg.Hub+":group:*")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			unix.Close(lfd)
			al.Close()
			return fmt.Errorf("floor: redis subscribe: %w", err)
		}
		go f.consume(ps.Channel(redis.WithChannelSize(4096)))
	}
	amux := http.NewServeMux()
	amux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		metrics.WritePrometheus(w, true)
		f.set.WritePrometheus(w)
	})
	ok := func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }
	amux.HandleFunc("GET /healthz", ok)
	amux.HandleFunc("GET /readyz", ok)
	amux.HandleFunc("GET /debug/pprof/heap", pprof.Handler("heap").ServeHTTP)
	amux.HandleFunc("POST /api/hubs/{hub}/:send", f.restSend)
	amux.HandleFunc("POST /api/hubs/{hub}/groups/{group}/:send", f.restSend)
	amux.HandleFunc("PUT /api/hubs/{hub}/groups/{group}/connections/{id}", f.restGroupAdd)
	as := &http.Server{Handler: amux, ReadHeaderTimeout: 15 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- as.Serve(al) }()
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	go func() { errc <- f.loop(loopCtx) }()
	f.log.Info("floor listening", "client", f.cfg.Listen, "admin", al.Addr().String(), "mode", f.cfg.Mode, "writers", f.cfg.Writers, "redis", f.cfg.Redis)
	var serr error
	select {
	case <-ctx.Done():
	case serr = <-errc:
	}
	as.Close()
	stopLoop()
	return serr
}

func listenNonblock(addr string) (int, error) {
	ap, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return -1, fmt.Errorf("floor: listen %s: %w", addr, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("floor: socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	sa := &unix.SockaddrInet4{Port: ap.Port}
	copy(sa.Addr[:], ap.IP.To4())
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("floor: bind %s: %w", addr, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("floor: listen %s: %w", addr, err)
	}
	return fd, nil
}

// loop is the one event loop: accepts, the handshakes, the clients'
// pings (read and dropped), the server's pings on 100 ms slots.
func (f *Floor) loop(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("floor: epoll_create: %w", err)
	}
	f.epfd = epfd
	defer unix.Close(epfd)
	defer unix.Close(f.lfd)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, f.lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(f.lfd)}); err != nil {
		return fmt.Errorf("floor: epoll_ctl listener: %w", err)
	}
	events := make([]unix.EpollEvent, 512)
	buf := make([]byte, 64<<10)
	const tick = 100 * time.Millisecond
	slots := max(1, int(f.cfg.KeepAlive/tick))
	next, slot := time.Now().Add(tick), 0
	for ctx.Err() == nil {
		wait := max(0, int(time.Until(next)/time.Millisecond))
		n, err := unix.EpollWait(epfd, events, wait)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("floor: epoll_wait: %w", err)
		}
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			if fd == f.lfd {
				f.accept()
				continue
			}
			f.onReadable(fd, buf)
		}
		for !time.Now().Before(next) {
			f.pingSlot(slot, slots)
			slot = (slot + 1) % slots
			next = next.Add(tick)
		}
	}
	return nil
}

func (f *Floor) accept() {
	for {
		fd, _, err := unix.Accept4(f.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				f.log.Warn("floor: accept", "err", err)
			}
			return
		}
		if err := unix.EpollCtl(f.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
			unix.Close(fd)
			continue
		}
		f.mu.Lock()
		for fd >= len(f.conns) {
			f.conns = append(f.conns, make([]fconn, len(f.conns)+1024)...)
		}
		c := &f.conns[fd]
		c.state, c.pos, c.in, c.id = fsHTTP, -1, nil, ""
		f.mu.Unlock()
	}
}

func (f *Floor) onReadable(fd int, buf []byte) {
	if fd >= len(f.conns) || f.conns[fd].state == fsFree {
		return
	}
	c := &f.conns[fd]
	n, err := unix.Read(fd, buf)
	f.reads.Inc()
	if err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return
		}
		f.closeConn(fd)
		return
	}
	if n == 0 {
		f.closeConn(fd)
		return
	}
	if c.state == fsOpen {
		return // the floor reads a client's ping and drops it
	}
	data := buf[:n]
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		data = c.in
	}
	switch c.state {
	case fsHTTP:
		f.onRequest(fd, c, data)
	case fsWS:
		f.onHandshake(fd, c, data)
	}
}

func (f *Floor) keep(c *fconn, data []byte) {
	if len(c.in) == 0 {
		c.in = append([]byte(nil), data...)
	}
}

var wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func (f *Floor) onRequest(fd int, c *fconn, data []byte) {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		if len(data) > 16<<10 {
			f.closeConn(fd)
			return
		}
		f.keep(c, data)
		return
	}
	head := string(data[:end])
	c.in = nil
	line, rest, _ := strings.Cut(head, "\r\n")
	parts := strings.Fields(line)
	if len(parts) < 2 {
		f.closeConn(fd)
		return
	}
	path, query, _ := strings.Cut(parts[1], "?")
	hubPath := "/" + f.cfg.Hub
	switch {
	case parts[0] == "POST" && path == hubPath+"/negotiate":
		id := "f" + strconv.FormatUint(f.nextID.Add(1), 36)
		body := `{"connectionId":"` + id + `","connectionToken":"` + id + `","negotiateVersion":1,"availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}`
		f.writeAll(fd, []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body))
		f.closeConn(fd)
	case parts[0] == "GET" && path == hubPath:
		key := ""
		for _, h := range strings.Split(rest, "\r\n") {
			if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Sec-WebSocket-Key") {
				key = strings.TrimSpace(v)
			}
		}
		id := ""
		for _, kv := range strings.Split(query, "&") {
			if v, ok := strings.CutPrefix(kv, "id="); ok {
				id = v
			}
		}
		if id == "" {
			id = "f" + strconv.FormatUint(f.nextID.Add(1), 36)
		}
		sum := sha1.Sum([]byte(key + wsGUID))
		f.writeAll(fd, []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
			base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n"))
		c.state, c.id = fsWS, id
		if len(data) > end+4 {
			f.onHandshake(fd, c, data[end+4:])
		}
	default:
		f.writeAll(fd, []byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		f.closeConn(fd)
	}
}

func (f *Floor) onHandshake(fd int, c *fconn, data []byte) {
	fr, n, err := wsframe.ParseFrame(data, 16<<10)
	if err != nil {
		f.closeConn(fd)
		return
	}
	if n == 0 {
		f.keep(c, data)
		return
	}
	c.in = nil
	if fr.Op != wsframe.OpText || !bytes.Contains(fr.Payload, []byte(`"protocol":"json"`)) {
		f.closeConn(fd)
		return
	}
	f.writeAll(fd, wsframe.TextFrame(hubproto.HandshakeOK))
	f.mu.Lock()
	c.state = fsOpen
	c.pos = int32(len(f.open))
	f.open = append(f.open, int32(fd))
	f.ids[c.id] = int32(fd)
	f.mu.Unlock()
	f.nOpen.Add(1)
}

// writeAll writes a handshake answer; these are small and the socket is
// fresh, so anything short of all of it closes the connection.
func (f *Floor) writeAll(fd int, b []byte) {
	if n, err := unix.Write(fd, b); err != nil || n != len(b) {
		f.closeConn(fd)
	}
}

func (f *Floor) closeConn(fd int) {
	if fd >= len(f.conns) || f.conns[fd].state == fsFree {
		return
	}
	f.mu.Lock()
	c := &f.conns[fd]
	if c.state == fsOpen {
		last := f.open[len(f.open)-1]
		f.open[c.pos] = last
		f.conns[last].pos = c.pos
		f.open = f.open[:len(f.open)-1]
		if f.ids[c.id] == int32(fd) {
			delete(f.ids, c.id)
		}
		for _, g := range f.groups {
			if _, ok := g.members[int32(fd)]; ok {
				delete(g.members, int32(fd))
				g.list = nil
			}
		}
		f.nOpen.Add(-1)
	}
	c.state, c.pos, c.in, c.id = fsFree, -1, nil, ""
	_ = unix.EpollCtl(f.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	unix.Close(fd)
	f.mu.Unlock()
}

func (f *Floor) pingSlot(slot, slots int) {
	f.mu.RLock()
	k := 0
	for i := slot; i < len(f.open); i += slots {
		_, _ = rawWrite(int(f.open[i]), f.ping)
		k++
	}
	f.mu.RUnlock()
	f.pingsOut.Add(k)
}

// rawWrite is write(2) through RawSyscall: a non-blocking socket, no
// hand-off of the P (what the node's epoll loop does too).
func rawWrite(fd int, b []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func rawWritev(fd int, iov []unix.Iovec) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func threadCPUNs() int64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// members returns the recipients of a broadcast: a group's members, or
// every open connection. Called with mu held for reading; the cached list
// of a group is rebuilt under the write lock first (rebuildGroup).
func (f *Floor) members(group string) []int32 {
	if group == "" {
		return f.open
	}
	if g := f.groups[group]; g != nil {
		return g.list
	}
	return nil
}

func (f *Floor) rebuildGroup(group string) {
	if group == "" {
		return
	}
	f.mu.RLock()
	g := f.groups[group]
	stale := g != nil && g.list == nil && len(g.members) > 0
	f.mu.RUnlock()
	if !stale {
		return
	}
	f.mu.Lock()
	if g.list == nil {
		g.list = make([]int32, 0, len(g.members))
		for fd := range g.members {
			g.list = append(g.list, fd)
		}
	}
	f.mu.Unlock()
}

// Broadcast writes rec, framed once, to every recipient with mode's
// system call, split over the writer threads, and says what it did.
func (f *Floor) Broadcast(group string, rec []byte, mode string) FloorStats {
	if mode == "" {
		mode = f.cfg.Mode
	}
	frame := wsframe.TextFrame(rec)
	f.rebuildGroup(group)
	f.mu.RLock()
	defer f.mu.RUnlock()
	fds := f.members(group)
	st := FloorStats{Mode: mode, Recipients: len(fds)}
	if len(fds) == 0 {
		return st
	}
	w := min(f.cfg.Writers, len(fds))
	type part struct {
		ok, short int
		cpu       int64
	}
	parts := make([]part, w)
	var wg sync.WaitGroup
	start := time.Now()
	for k := 0; k < w; k++ {
		lo, hi := k*len(fds)/w, (k+1)*len(fds)/w
		wg.Add(1)
		go func(p *part, fds []int32) {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			c0 := threadCPUNs()
			iov := []unix.Iovec{{Base: &frame[0]}}
			iov[0].SetLen(len(frame))
			for _, fd := range fds {
				var n int
				var err error
				if mode == FloorWritev {
					n, err = rawWritev(int(fd), iov)
				} else {
					n, err = rawWrite(int(fd), frame)
				}
				if err == nil && n == len(frame) {
					p.ok++
				} else {
					p.short++
				}
			}
			p.cpu = threadCPUNs() - c0
		}(&parts[k], fds[lo:hi])
	}
	wg.Wait()
	st.WallNs = time.Since(start).Nanoseconds()
	for _, p := range parts {
		st.Writes += p.ok
		st.Short += p.short
		st.CPUNs += p.cpu
	}
	f.broadcasts.Inc()
	f.writes.Add(st.Writes)
	f.shortW.Add(st.Short)
	f.wallNs.Add(int(st.WallNs))
	f.cpuNs.Add(int(st.CPUNs))
	if st.Short > 0 {
		f.log.Warn("floor: frames not written whole (the client will see a broken stream)", "short", st.Short, "recipients", st.Recipients)
	}
	return st
}

func (f *Floor) restSend(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("hub") != f.cfg.Hub {
		http.NotFound(w, r)
		return
	}
	var body sendBody
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Target == "" {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	mode := r.URL.Query().Get("mode")
	if mode != "" && mode != FloorWrite && mode != FloorWritev {
		http.Error(w, "mode is write or writev", http.StatusBadRequest)
		return
	}
	args := body.Arguments
	if len(args) == 0 {
		args = json.RawMessage("[]")
	}
	tj, _ := json.Marshal(body.Target)
	rec := make([]byte, 0, len(args)+len(tj)+40)
	rec = append(rec, `{"type":1,"target":`...)
	rec = append(rec, tj...)
	rec = append(rec, `,"arguments":`...)
	rec = append(rec, args...)
	rec = append(rec, '}', hubproto.RecordSeparator)
	group := r.PathValue("group")
	if f.rdb != nil {
		ch := f.cfg.Hub + ":all"
		if group != "" {
			ch = f.cfg.Hub + ":group:" + group
		}
		if err := f.rdb.Publish(r.Context(), ch, EncodeInvocation(nil, nil, rec)).Err(); err != nil {
			http.Error(w, "backplane unavailable", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}
	st := f.Broadcast(group, rec, mode)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(st)
}

func (f *Floor) restGroupAdd(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("hub") != f.cfg.Hub {
		http.NotFound(w, r)
		return
	}
	group, id := r.PathValue("group"), r.PathValue("id")
	f.mu.Lock()
	fd, ok := f.ids[id]
	if ok {
		g := f.groups[group]
		if g == nil {
			g = &floorGroup{members: map[int32]struct{}{}}
			f.groups[group] = g
		}
		g.members[fd] = struct{}{}
		g.list = nil
	}
	f.mu.Unlock()
	if !ok {
		http.Error(w, "connection not found", http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (f *Floor) consume(ch <-chan *redis.Message) {
	prefix := f.cfg.Hub + ":group:"
	for m := range ch {
		_, rec, err := DecodeInvocation([]byte(m.Payload))
		if err != nil {
			f.log.Warn("floor: bad backplane message", "channel", m.Channel, "err", err)
			continue
		}
		group := ""
		if strings.HasPrefix(m.Channel, prefix) {
			group = strings.TrimPrefix(m.Channel, prefix)
		} else if m.Channel != f.cfg.Hub+":all" {
			continue
		}
		f.Broadcast(group, rec, "")
	}
}

// FloorMain runs the floor server from command-line arguments until ctx
// ends or SIGTERM.
func FloorMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	var cfg FloorConfig
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "client address")
	fs.StringVar(&cfg.Admin, "admin", "127.0.0.1:8081", "REST/metrics address")
	fs.StringVar(&cfg.Hub, "hub", "chat", "hub name")
	fs.StringVar(&cfg.Redis, "redis", "", "redis://host:port (optional)")
	fs.IntVar(&cfg.Writers, "writers", 0, "threads of the broadcast loop (default GOMAXPROCS)")
	fs.StringVar(&cfg.Mode, "mode", FloorWrite, "write or writev")
	fs.DurationVar(&cfg.KeepAlive, "keepalive", 15*time.Second, "server ping interval per connection")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("floor: flags: %w", err)
	}
	if cfg.Mode != FloorWrite && cfg.Mode != FloorWritev {
		return fmt.Errorf("floor: --mode %q: write or writev", cfg.Mode)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	return NewFloor(cfg).Serve(ctx)
}
