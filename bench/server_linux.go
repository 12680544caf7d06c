package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgeplane/edgeplane/poller"
)

// Kind of server under test.
type Kind string

// Server kinds.
const (
	KindEdgeplane Kind = "edgeplane"
	KindBaseline  Kind = "baseline"
	// KindFloor is the floor server (Floor): the system calls only.
	KindFloor Kind = "floor"
)

// SystemSpec names one system under test: edgeplane with a poller backend,
// or the baseline.
type SystemSpec struct {
	Name   string `json:"name"` // "edgeplane-netpoll", "baseline", …
	Kind   Kind   `json:"kind"`
	Poller string `json:"poller,omitempty"` // edgeplane only
	// MessagePack is the fraction of the load clients' connections on the
	// MessagePack hub protocol (edgeplane only: the baseline speaks JSON).
	MessagePack float64 `json:"messagepack,omitempty"`
	// Stateful: the load clients ask for stateful reconnect (edgeplane
	// only; LoaderConfig.Stateful).
	Stateful bool   `json:"stateful,omitempty"`
	Mode     string `json:"mode,omitempty"` // floor only: write or writev
}

// ServerConfig starts one server process.
type ServerConfig struct {
	Spec SystemSpec
	// Edgeplane is the node binary; default bin/edgeplane.
	Edgeplane string
	// Self is the edgebench binary (for the baseline); default os.Args[0].
	Self string
	// Redis URL, optional.
	Redis string
	// Hub; default "chat".
	Hub string
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
	// Stderr receives the server's log; default: discarded.
	Stderr io.Writer
}

// Server is a running server process.
type Server struct {
	Spec   SystemSpec
	Listen string
	Admin  string
	// fdReserve is what the server keeps free under its descriptor limit
	// (edgeplane's --fd-reserve); Room leaves it out.
	fdReserve int
	cmd       *exec.Cmd
	done      chan struct{}
	err       error
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartServer starts the process and waits until /healthz answers.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	lp, err := freePort()
	if err != nil {
		return nil, err
	}
	ap, err := freePort()
	if err != nil {
		return nil, err
	}
	hub := cfg.Hub
	if hub == "" {
		hub = "chat"
	}
	s := &Server{Spec: cfg.Spec, Listen: "127.0.0.1:" + strconv.Itoa(lp), Admin: "127.0.0.1:" + strconv.Itoa(ap), done: make(chan struct{})}
	var args []string
	var bin string
	switch cfg.Spec.Kind {
	case KindEdgeplane:
		bin = cfg.Edgeplane
		if bin == "" {
			bin = "bin/edgeplane"
		}
		args = []string{"--listen", s.Listen, "--admin", s.Admin, "--hub", hub}
		if cfg.Spec.Poller != "" {
			args = append(args, "--poller", cfg.Spec.Poller)
		}
	case KindBaseline:
		bin = cfg.Self
		if bin == "" {
			bin = os.Args[0]
		}
		args = []string{"baseline", "--listen", s.Listen, "--admin", s.Admin, "--hub", hub}
	case KindFloor:
		bin = cfg.Self
		if bin == "" {
			bin = os.Args[0]
		}
		args = []string{FloorCommand, "--listen", s.Listen, "--admin", s.Admin, "--hub", hub}
		if cfg.Spec.Mode != "" {
			args = append(args, "--mode", cfg.Spec.Mode)
		}
	default:
		return nil, fmt.Errorf("bench: unknown server kind %q", cfg.Spec.Kind)
	}
	if cfg.Redis != "" {
		args = append(args, "--redis", cfg.Redis)
	}
	args = append(args, cfg.ExtraArgs...)
	if cfg.Spec.Kind == KindEdgeplane {
		s.fdReserve = poller.DefaultFDReserve
		if v := os.Getenv("EDGEPLANE_FD_RESERVE"); v != "" {
			s.fdReserve, _ = strconv.Atoi(v)
		}
		if v, ok := flagValue(cfg.ExtraArgs, "fd-reserve"); ok {
			s.fdReserve, _ = strconv.Atoi(v)
		}
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout = cfg.Stderr
	s.cmd.Stderr = cfg.Stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", bin, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + s.Admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("bench: %s exited during startup: %v", s.Spec.Name, s.err)
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("bench: %s did not become healthy in 15 s", s.Spec.Name)
		}
	}
}

// flagValue finds --name V, --name=V, -name V or -name=V in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// RoomSlack is what Room leaves free beyond the server's own reserve: the
// negotiate requests in flight (each its own short TCP connection) and
// the server's other descriptors while connecting.
const RoomSlack = 256

// Room is how many more client connections the server can hold within its
// descriptor limit: RLIMIT_NOFILE (soft) less its open descriptors, its
// descriptor reserve and RoomSlack. A load never asks a node for more.
func (s *Server) Room() (int, error) {
	limit, err := nofileLimit(s.PID())
	if err != nil {
		return 0, err
	}
	p, err := ReadProc(s.PID())
	if err != nil {
		return 0, err
	}
	return max(0, int(limit)-p.OpenFDs-max(0, s.fdReserve)-RoomSlack), nil
}

// nofileLimit reads the soft "Max open files" of pid from /proc/PID/limits.
func nofileLimit(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0, fmt.Errorf("bench: limits of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				if f[0] == "unlimited" {
					return 1 << 30, nil
				}
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("bench: limits of %d: no Max open files line", pid)
}

// PID of the server process.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Alive reports whether the process still runs.
func (s *Server) Alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM, then SIGKILL after 5 s.
func (s *Server) Stop() {
	if !s.Alive() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// HeapProfile fetches /debug/pprof/heap from the admin port (after a GC)
// into path. It returns ErrNoProfile when the server does not serve it.
func (s *Server) HeapProfile(path string) error {
	c := http.Client{Timeout: 60 * time.Second}
	resp, err := c.Get("http://" + s.Admin + "/debug/pprof/heap?gc=1")
	if err != nil {
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%w (status %d)", ErrNoProfile, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	return nil
}

// ErrNoProfile: the server does not serve /debug/pprof/heap.
var ErrNoProfile = errors.New("bench: server serves no heap profile")

// TopOfProfile runs `go tool pprof -top` on a heap profile and returns its
// first lines (in-use space), or nil when the go tool is not available.
func TopOfProfile(path string, lines int) []string {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-sample_index=inuse_space", path).Output()
	if err != nil {
		return nil
	}
	all := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(all) > lines {
		all = all[:lines]
	}
	return all
}

// ProcSample is a reading of a process from /proc.
type ProcSample struct {
	RSS      int64   // bytes (VmRSS)
	CPUSec   float64 // utime+stime
	Threads  int
	At       time.Time
	OpenFDs  int
	HasProcs bool
}

// ReadProc reads VmRSS, threads and CPU time of pid.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, fmt.Errorf("bench: read status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			s.RSS = kb * 1024
		case "Threads:":
			s.Threads, _ = strconv.Atoi(f[1])
		}
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return s, fmt.Errorf("bench: read stat of %d: %w", pid, err)
	}
	// Fields after the command name in parentheses; utime and stime are
	// fields 14 and 15 overall, 12 and 13 after ")".
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) > 13 {
		ut, _ := strconv.ParseFloat(f[11], 64)
		stt, _ := strconv.ParseFloat(f[12], 64)
		s.CPUSec = (ut + stt) / 100 // CLK_TCK is 100 on Linux
	}
	if ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd"); err == nil {
		s.OpenFDs = len(ents)
	}
	s.HasProcs = true
	return s, nil
}

// Metrics scrapes the server's /metrics into name{labels} → value.
func (s *Server) Metrics() (map[string]float64, error) {
	return ScrapeMetrics("http://" + s.Admin + "/metrics")
}

// ScrapeMetrics reads a Prometheus text exposition.
func ScrapeMetrics(url string) (map[string]float64, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, fmt.Errorf("bench: scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("bench: scrape %s: status %d", url, resp.StatusCode)
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics parses Prometheus text format (no timestamps needed).
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name, val := strings.TrimSpace(line[:i]), line[i+1:]
		// "name{…} value timestamp": drop a trailing timestamp.
		if j := strings.LastIndexByte(name, ' '); j >= 0 && !strings.Contains(name[j:], "}") {
			val, name = name[j+1:], strings.TrimSpace(name[:j])
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		out[name] = v
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("bench: parse metrics: %w", err)
	}
	return out, nil
}

// socketCaches are the slab caches an idle TCP socket allocates from:
// the socket itself, its inode, dentry and file, its epoll item, bind
// buckets, request socks while connecting.
var socketCaches = map[string]bool{
	"TCP": true, "tcp_bind_bucket": true, "tcp_bind2_bucket": true, "sock_inode_cache": true, "dentry": true, "filp": true,
	"eventpoll_epi": true, "eventpoll_pwq": true, "skbuff_head_cache": true, "request_sock_TCP": true, "inet_peer_cache": true,
}

// Kernel memory sources, best first.
const (
	// KernelSlabinfo: active objects × object size of /proc/slabinfo
	// (root only). Active, not total, objects: freed objects stay in
	// their slabs for reuse and would hide the growth.
	KernelSlabinfo = "slabinfo active objects"
	// KernelMeminfo: Slab: of /proc/meminfo (readable by anyone), every
	// cache and whole slabs, so noisier; used when slabinfo is not
	// readable.
	KernelMeminfo = "meminfo Slab"
)

// KernelMem is a reading of the kernel memory that sockets use.
type KernelMem struct {
	Source string `json:"source"` // KernelSlabinfo or KernelMeminfo
	// SocketSlab is the socket-related caches (socketCaches; with
	// KernelMeminfo, all of the slab); TotalSlab every cache.
	SocketSlab int64 `json:"socket_slab_bytes"`
	TotalSlab  int64 `json:"total_slab_bytes"`
	// TCPMemPages is /proc/net/sockstat's TCP "mem": pages of socket
	// buffers (data queued in or out), not the sockets themselves.
	TCPMemPages int64 `json:"tcp_mem_pages"`
	// TCPInUse is sockstat's TCP "inuse" (sockets in use, all states but
	// TIME_WAIT).
	TCPInUse int64 `json:"tcp_inuse"`
}

// ReadKernelMem reads /proc/slabinfo (or, not readable, /proc/meminfo)
// and /proc/net/sockstat.
func ReadKernelMem() (KernelMem, error) {
	var k KernelMem
	if b, err := os.ReadFile("/proc/net/sockstat"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "TCP: "); ok {
				f := strings.Fields(rest)
				for i := 0; i+1 < len(f); i += 2 {
					v, _ := strconv.ParseInt(f[i+1], 10, 64)
					switch f[i] {
					case "mem":
						k.TCPMemPages = v
					case "inuse":
						k.TCPInUse = v
					}
				}
			}
		}
	}
	slabErr := k.readSlabinfo()
	if slabErr == nil {
		return k, nil
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return k, fmt.Errorf("bench: kernel memory: %v; meminfo: %w", slabErr, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Slab:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				k.Source, k.SocketSlab, k.TotalSlab = KernelMeminfo, kb<<10, kb<<10
				return k, nil
			}
		}
	}
	return k, fmt.Errorf("bench: kernel memory: %v; meminfo has no Slab line", slabErr)
}

func (k *KernelMem) readSlabinfo() error {
	f, err := os.Open("/proc/slabinfo")
	if err != nil {
		return fmt.Errorf("bench: slabinfo: %w", err)
	}
	defer f.Close()
	var socket, total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || strings.HasPrefix(fs[0], "#") || fs[0] == "slabinfo" {
			continue
		}
		active, _ := strconv.ParseInt(fs[1], 10, 64)
		size, _ := strconv.ParseInt(fs[3], 10, 64)
		total += active * size
		if socketCaches[fs[0]] {
			socket += active * size
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("bench: slabinfo: %w", err)
	}
	if total == 0 {
		return errors.New("bench: slabinfo: empty")
	}
	k.Source, k.SocketSlab, k.TotalSlab = KernelSlabinfo, socket, total
	return nil
}
