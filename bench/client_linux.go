package bench

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
	"golang.org/x/sys/unix"
)

// LoaderConfig configures one load-client process. The zero value of each
// field takes the default named in its comment.
type LoaderConfig struct {
	// Addr is the node's client address, host:port (IPv4).
	Addr string
	// Hub is the hub name; default "chat".
	Hub string
	// Conns is the number of SignalR connections to open.
	Conns int
	// SrcIPs are the local addresses bound round-robin; default 127.0.0.2.
	SrcIPs []string
	// SkipNegotiate connects straight to /{hub} (skipNegotiation) instead of
	// POST /{hub}/negotiate first.
	SkipNegotiate bool
	// Concurrency bounds the attempts in flight; 0 starts every connection
	// at once (a storm).
	Concurrency int
	// Retry are the delays before each retry of a failed attempt (the
	// official client: 0, 2, 10, 30 s). After the last one the connection
	// is given up.
	Retry []time.Duration
	// KeepAlive is the interval of client pings per connection, spread over
	// the interval; default 15 s.
	KeepAlive time.Duration
	// HandshakeTimeout bounds one attempt; default 15 s.
	HandshakeTimeout time.Duration
	// MessagePack is the fraction of the connections, 0 to 1, that speak
	// the MessagePack hub protocol instead of JSON, spread evenly over the
	// connections (0.5: every other one).
	MessagePack float64
	// Stateful asks for stateful reconnect as the official clients do
	// (withStatefulReconnect): useStatefulReconnect=true on negotiate and
	// hub protocol version 2 in the handshake. Each connection acks what
	// it receives (one Ack per read), so the node's replay buffers stay
	// empty. Needs negotiate (not SkipNegotiate).
	Stateful bool
}

func (c *LoaderConfig) hub() string {
	if c.Hub == "" {
		return "chat"
	}
	return c.Hub
}

func (c *LoaderConfig) keepAlive() time.Duration {
	if c.KeepAlive <= 0 {
		return 15 * time.Second
	}
	return c.KeepAlive
}

func (c *LoaderConfig) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout <= 0 {
		return 15 * time.Second
	}
	return c.HandshakeTimeout
}

// LoaderStats is what a load client reports.
type LoaderStats struct {
	Target      int    `json:"target"`
	Open        int    `json:"open"`         // established now
	EverOpened  int    `json:"ever_opened"`  // reached the handshake at least once
	Attempts    int    `json:"attempts"`     // attempts started
	Failures    int    `json:"failures"`     // attempts that failed
	Rejected503 int    `json:"rejected_503"` // attempts answered 503
	GivenUp     int    `json:"given_up"`     // connections out of retries
	Dropped     int    `json:"dropped"`      // established connections the server closed
	Pings       uint64 `json:"pings"`        // server pings received
	Deliveries  uint64 `json:"deliveries"`   // invocations received
	MessagePack int    `json:"messagepack"`  // connections speaking MessagePack
	BytesIn     uint64 `json:"bytes_in"`
	Settled     bool   `json:"settled"` // every connection open or given up
	// FirstAttemptNano and AllOpenNano are Unix nanoseconds: start of the
	// first attempt and the moment the last connection opened.
	FirstAttemptNano int64 `json:"first_attempt_nano"`
	LastOpenNano     int64 `json:"last_open_nano"`
	// Handshake: one successful attempt, negotiate to handshake answer.
	Handshake *Hist `json:"handshake,omitempty"`
	// Connect: first attempt start to open, retries included.
	Connect *Hist `json:"connect,omitempty"`
	// Latency: send timestamp in the invocation to arrival.
	Latency *Hist `json:"latency,omitempty"`
	// SeqLast maps a message sequence number to the Unix nanoseconds of
	// its last arrival here; SeqCount to its number of arrivals.
	SeqLast  map[string]int64 `json:"seq_last,omitempty"`
	SeqCount map[string]int   `json:"seq_count,omitempty"`
	Errors   map[string]int   `json:"errors,omitempty"` // failure reasons, counted
	// FirstErrors are the first MaxFirstErrors distinct failure reasons,
	// in the order they happened.
	FirstErrors []string `json:"first_errors,omitempty"`
}

type connState uint8

const (
	stWaiting connState = iota // not started or waiting for a retry
	stNegConnect
	stNegRead
	stWSConnect
	stWSUpgrade
	stHandshake
	stOpen
	stGivenUp
)

type cconn struct {
	idx          int
	fd           int
	state        connState
	mp           bool // speaks MessagePack (LoaderConfig.MessagePack)
	attempt      int
	in           []byte // partial input
	msg          []byte // partial fragmented message
	out          []byte // unsent output
	id, token    string
	attemptStart int64
	firstStart   int64
	recv, acked  int64 // stateful reconnect: trackable messages received, and acked
}

type retryItem struct {
	at int64
	c  *cconn
}

type retryHeap []retryItem

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(retryItem)) }
func (h *retryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Loader is an event-driven SignalR load client: one epoll loop, no
// goroutine per connection, a shared read buffer. Run owns all its state;
// other goroutines talk to it through the command channel.
type Loader struct {
	cfg      LoaderConfig
	epfd     int
	dst      unix.SockaddrInet4
	src      [][4]byte
	host     string
	negReq   []byte
	conns    []*cconn
	byFD     []*cconn
	next     int // next connection never started
	inFlight int
	retries  retryHeap
	readBuf  []byte
	pingMsg  []byte
	pingMP   []byte // the MessagePack connections' Ping
	st       LoaderStats
	seqLast  []int64
	seqCount []int32
	handsh   Hist
	connect  Hist
	latency  Hist
	errs     map[string]int
	firstErr []string
	tick     int64
}

// LoaderCmd is a request to a running Loader; the answer goes to Reply.
type LoaderCmd struct {
	// Op: "stats" (full stats), "ids" (connection ids), "reset" (clear the
	// latency figures), "close" (close every connection and stop).
	Op    string
	Reply chan any
}

// NewLoader validates cfg and prepares a loader.
func NewLoader(cfg LoaderConfig) (*Loader, error) {
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("bench: loader address %q: %w", cfg.Addr, err)
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return nil, fmt.Errorf("bench: loader address %q: not IPv4", cfg.Addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("bench: loader port %q: %w", port, err)
	}
	l := &Loader{cfg: cfg, host: cfg.Addr, readBuf: make([]byte, 64<<10), errs: map[string]int{}}
	l.dst.Port = p
	copy(l.dst.Addr[:], ip)
	if len(cfg.SrcIPs) == 0 {
		cfg.SrcIPs = []string{"127.0.0.2"}
	}
	for _, s := range cfg.SrcIPs {
		sip := net.ParseIP(s).To4()
		if sip == nil {
			return nil, fmt.Errorf("bench: source address %q: not IPv4", s)
		}
		var a [4]byte
		copy(a[:], sip)
		l.src = append(l.src, a)
	}
	if cfg.Stateful && cfg.SkipNegotiate {
		return nil, errors.New("bench: stateful reconnect needs negotiate: Stateful with SkipNegotiate")
	}
	l.negReq = NegotiateRequest(l.host, cfg.hub())
	if cfg.Stateful {
		l.negReq = NegotiateRequestStateful(l.host, cfg.hub())
	}
	l.pingMsg = wsframe.AppendClientFrame(nil, wsframe.OpText, hubproto.JSON.Ping())
	l.pingMP = wsframe.AppendClientFrame(nil, wsframe.OpBinary, hubproto.MessagePack.Ping())
	if cfg.MessagePack < 0 || cfg.MessagePack > 1 {
		return nil, fmt.Errorf("bench: MessagePack fraction %v is not within [0, 1]", cfg.MessagePack)
	}
	l.conns = make([]*cconn, cfg.Conns)
	for i := range l.conns {
		l.conns[i] = &cconn{idx: i, fd: -1, mp: speaksMessagePack(i, cfg.MessagePack)}
		if l.conns[i].mp {
			l.st.MessagePack++
		}
	}
	l.st.Target = cfg.Conns
	return l, nil
}

// Run drives the loader until a "close" command or an error. progress, if
// not nil, is called from the loop about every 100 ms with light stats.
func (l *Loader) Run(cmds <-chan LoaderCmd, progress func(LoaderStats)) error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("bench: epoll_create: %w", err)
	}
	l.epfd = epfd
	defer unix.Close(epfd)
	events := make([]unix.EpollEvent, 512)
	const tickEvery = 100 * time.Millisecond
	slots := int(l.cfg.keepAlive() / tickEvery)
	if slots < 1 {
		slots = 1
	}
	lastTick := time.Now()
	lastProgress := time.Now()
	lastTimeoutScan := time.Now()
	for {
		now := time.Now()
		l.startPending(now.UnixNano())
		n, err := unix.EpollWait(epfd, events, 10)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("bench: epoll_wait: %w", err)
		}
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			if fd < 0 || fd >= len(l.byFD) || l.byFD[fd] == nil {
				continue
			}
			l.onEvent(l.byFD[fd], events[i].Events)
		}
		now = time.Now()
		for now.Sub(lastTick) >= tickEvery {
			lastTick = lastTick.Add(tickEvery)
			l.keepAliveSlot(int(l.tick%int64(slots)), slots)
			l.tick++
		}
		if now.Sub(lastTimeoutScan) >= time.Second {
			lastTimeoutScan = now
			l.expireAttempts(now.UnixNano())
		}
		if progress != nil && now.Sub(lastProgress) >= 100*time.Millisecond {
			lastProgress = now
			progress(l.light())
		}
		for {
			select {
			case c := <-cmds:
				if l.command(c) {
					return nil
				}
				continue
			default:
			}
			break
		}
	}
}

func (l *Loader) command(c LoaderCmd) (stop bool) {
	switch c.Op {
	case "stats":
		c.Reply <- l.full()
	case "ids":
		ids := make([]string, 0, len(l.conns))
		for _, cc := range l.conns {
			if cc.state == stOpen && cc.id != "" {
				ids = append(ids, cc.id)
			}
		}
		c.Reply <- ids
	case "reset":
		l.latency = Hist{}
		l.seqLast, l.seqCount = nil, nil
		l.st.Deliveries = 0
		c.Reply <- true
	case "close":
		for _, cc := range l.conns {
			if cc.fd >= 0 {
				unix.Close(cc.fd)
				cc.fd = -1
			}
		}
		c.Reply <- true
		return true
	default:
		c.Reply <- fmt.Errorf("bench: unknown loader command %q", c.Op)
	}
	return false
}

func (l *Loader) light() LoaderStats {
	s := l.st
	s.Settled = s.Open+s.GivenUp+s.Dropped >= s.Target && l.next >= len(l.conns) && l.inFlight == 0 && len(l.retries) == 0
	return s
}

func (l *Loader) full() LoaderStats {
	s := l.light()
	h, c, lat := l.handsh, l.connect, l.latency
	s.Handshake, s.Connect, s.Latency = &h, &c, &lat
	s.SeqLast = map[string]int64{}
	s.SeqCount = map[string]int{}
	for i, t := range l.seqLast {
		if t != 0 {
			s.SeqLast[strconv.Itoa(i)] = t
			s.SeqCount[strconv.Itoa(i)] = int(l.seqCount[i])
		}
	}
	s.Errors = map[string]int{}
	for k, v := range l.errs {
		s.Errors[k] = v
	}
	s.FirstErrors = append([]string(nil), l.firstErr...)
	return s
}

// startPending starts never-started connections within the concurrency
// bound, and retries that are due.
func (l *Loader) startPending(now int64) {
	for len(l.retries) > 0 && l.retries[0].at <= now {
		if l.cfg.Concurrency > 0 && l.inFlight >= l.cfg.Concurrency {
			break
		}
		it := heap.Pop(&l.retries).(retryItem)
		l.begin(it.c, now)
	}
	for l.next < len(l.conns) && (l.cfg.Concurrency <= 0 || l.inFlight < l.cfg.Concurrency) {
		c := l.conns[l.next]
		l.next++
		c.firstStart = now
		if l.st.FirstAttemptNano == 0 {
			l.st.FirstAttemptNano = now
		}
		l.begin(c, now)
	}
}

func (l *Loader) begin(c *cconn, now int64) {
	l.inFlight++
	l.st.Attempts++
	c.attemptStart = now
	c.in, c.msg, c.out = nil, nil, nil
	if l.cfg.SkipNegotiate {
		l.dial(c, stWSConnect)
	} else {
		l.dial(c, stNegConnect)
	}
}

func (l *Loader) dial(c *cconn, st connState) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.fail(c, "socket: "+errName(err))
		return
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: l.src[c.idx%len(l.src)]}); err != nil {
		unix.Close(fd)
		l.fail(c, "bind: "+errName(err))
		return
	}
	dst := l.dst
	if err := unix.Connect(fd, &dst); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		l.fail(c, "connect: "+errName(err))
		return
	}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		l.fail(c, "epoll_ctl: "+errName(err))
		return
	}
	for fd >= len(l.byFD) {
		l.byFD = append(l.byFD, make([]*cconn, len(l.byFD)+1024)...)
	}
	l.byFD[fd] = c
	c.fd = fd
	c.state = st
}

func errName(err error) string {
	var en unix.Errno
	if errors.As(err, &en) {
		return unix.ErrnoName(en)
	}
	return err.Error()
}

func (l *Loader) closeFD(c *cconn) {
	if c.fd >= 0 {
		l.byFD[c.fd] = nil
		unix.Close(c.fd)
		c.fd = -1
	}
	c.in, c.msg, c.out = nil, nil, nil
}

// fail ends the current attempt and schedules a retry or gives up.
func (l *Loader) fail(c *cconn, reason string) {
	l.closeFD(c)
	l.inFlight--
	l.st.Failures++
	l.noteErr(reason)
	if c.attempt < len(l.cfg.Retry) {
		d := l.cfg.Retry[c.attempt]
		c.attempt++
		c.state = stWaiting
		heap.Push(&l.retries, retryItem{at: time.Now().Add(d).UnixNano(), c: c})
		return
	}
	c.state = stGivenUp
	l.st.GivenUp++
}

// drop handles the loss of an established connection.
func (l *Loader) drop(c *cconn, reason string) {
	l.closeFD(c)
	c.state = stGivenUp
	l.st.Open--
	l.st.Dropped++
	l.noteErr("dropped: " + reason)
}

// noteErr counts a failure reason and keeps the first few distinct ones.
func (l *Loader) noteErr(reason string) {
	if l.errs[reason] == 0 && len(l.firstErr) < MaxFirstErrors {
		l.firstErr = append(l.firstErr, reason)
	}
	l.errs[reason]++
}

func (l *Loader) lost(c *cconn, reason string) {
	if c.state == stOpen {
		l.drop(c, reason)
	} else {
		l.fail(c, reason)
	}
}

func (l *Loader) expireAttempts(now int64) {
	limit := int64(l.cfg.handshakeTimeout())
	for _, c := range l.conns {
		if c.state >= stNegConnect && c.state <= stHandshake && now-c.attemptStart > limit {
			l.fail(c, "attempt timeout")
		}
	}
}

func (l *Loader) keepAliveSlot(slot, slots int) {
	for i := slot; i < len(l.conns); i += slots {
		c := l.conns[i]
		if c.state == stOpen {
			if c.mp {
				l.write(c, l.pingMP)
			} else {
				l.write(c, l.pingMsg)
			}
		}
	}
}

func (l *Loader) write(c *cconn, b []byte) {
	if len(c.out) > 0 {
		c.out = append(c.out, b...)
		return
	}
	n, err := unix.Write(c.fd, b)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		l.lost(c, "write: "+errName(err))
		return
	}
	if n < 0 {
		n = 0
	}
	if n < len(b) {
		c.out = append([]byte(nil), b[n:]...)
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: int32(c.fd)})
	}
}

func (l *Loader) flush(c *cconn) {
	if len(c.out) == 0 {
		return
	}
	n, err := unix.Write(c.fd, c.out)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		l.lost(c, "write: "+errName(err))
		return
	}
	if n > 0 {
		c.out = c.out[n:]
	}
	if len(c.out) == 0 {
		c.out = nil
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)})
	}
}

func (l *Loader) onEvent(c *cconn, ev uint32) {
	switch c.state {
	case stNegConnect, stWSConnect:
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if e, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
			l.fail(c, "connect: "+unix.ErrnoName(unix.Errno(e)))
			return
		}
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)})
		if c.state == stNegConnect {
			c.state = stNegRead
			l.write(c, l.negReq)
		} else {
			c.state = stWSUpgrade
			l.write(c, UpgradeRequest(l.host, l.cfg.hub(), c.token))
		}
		return
	}
	if ev&unix.EPOLLOUT != 0 {
		l.flush(c)
		if c.fd < 0 {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
		return
	}
	n, err := unix.Read(c.fd, l.readBuf)
	if err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		l.lost(c, "read: "+errName(err))
		return
	}
	if n == 0 {
		if c.state == stNegRead {
			l.onNegotiate(c, true)
			return
		}
		l.lost(c, "eof")
		return
	}
	l.st.BytesIn += uint64(n)
	data := l.readBuf[:n]
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		data = c.in
	}
	switch c.state {
	case stNegRead:
		if len(c.in) == 0 {
			c.in = append([]byte(nil), data...)
		}
		l.onNegotiate(c, false)
	case stWSUpgrade:
		r, err := ParseResponseHead(data)
		if errors.Is(err, ErrIncomplete) {
			if len(c.in) == 0 {
				c.in = append([]byte(nil), data...)
			}
			return
		}
		if err != nil {
			l.fail(c, "upgrade: bad response")
			return
		}
		if r.Status != 101 {
			if r.Status == 503 {
				l.st.Rejected503++
			}
			l.fail(c, "upgrade: status "+strconv.Itoa(r.Status))
			return
		}
		c.state = stHandshake
		req := handshakeRequest
		if c.mp {
			req = handshakeRequestMP
		}
		if l.cfg.Stateful {
			req = handshakeRequestV2
			if c.mp {
				req = handshakeRequestMPV2
			}
		}
		l.write(c, wsframe.AppendClientFrame(nil, wsframe.OpText, req)) // text, as @microsoft/signalr sends it
		if c.fd < 0 {
			return
		}
		l.onFrames(c, data[r.HeaderLen:])
	case stHandshake, stOpen:
		l.onFrames(c, data)
	}
}

type negotiateResponse struct {
	ConnectionID    string `json:"connectionId"`
	ConnectionToken string `json:"connectionToken"`
	Error           string `json:"error"`
}

func (l *Loader) onNegotiate(c *cconn, eof bool) {
	r, err := ParseResponseHead(c.in)
	if errors.Is(err, ErrIncomplete) {
		if eof {
			l.fail(c, "negotiate: eof in head")
		}
		return
	}
	if err != nil {
		l.fail(c, "negotiate: bad response")
		return
	}
	body := c.in[r.HeaderLen:]
	if r.ContentLength >= 0 {
		if len(body) < r.ContentLength {
			if eof {
				l.fail(c, "negotiate: eof in body")
			}
			return
		}
		body = body[:r.ContentLength]
	} else if !eof {
		return
	}
	if r.Status != 200 {
		if r.Status == 503 {
			l.st.Rejected503++
		}
		l.fail(c, "negotiate: status "+strconv.Itoa(r.Status))
		return
	}
	var nr negotiateResponse
	if err := json.Unmarshal(body, &nr); err != nil || nr.Error != "" {
		l.fail(c, "negotiate: bad body")
		return
	}
	c.id = nr.ConnectionID
	c.token = nr.ConnectionToken
	if c.token == "" {
		c.token = nr.ConnectionID
	}
	l.closeFD(c)
	l.dial(c, stWSConnect)
}

func (l *Loader) onFrames(c *cconn, data []byte) {
	for len(data) > 0 {
		f, n, err := wsframe.ParseFrame(data, maxServerFrame)
		if err != nil {
			l.lost(c, "frame: "+err.Error())
			return
		}
		if n == 0 {
			break
		}
		data = data[n:]
		switch f.Op {
		case wsframe.OpText, wsframe.OpBinary, wsframe.OpContinuation:
			if !f.Fin || len(c.msg) > 0 {
				c.msg = append(c.msg, f.Payload...)
				if !f.Fin {
					continue
				}
				l.onMessage(c, c.msg)
				c.msg = nil
			} else {
				l.onMessage(c, f.Payload)
			}
		case wsframe.OpPing:
			l.write(c, wsframe.AppendClientFrame(nil, wsframe.OpPong, f.Payload))
		case wsframe.OpPong:
		case wsframe.OpClose:
			code := 0
			if len(f.Payload) >= 2 {
				code = int(f.Payload[0])<<8 | int(f.Payload[1])
			}
			l.write(c, wsframe.AppendClientFrame(nil, wsframe.OpClose, f.Payload[:min(2, len(f.Payload))]))
			l.lost(c, "close "+strconv.Itoa(code))
			return
		}
		if c.fd < 0 {
			return
		}
	}
	if c.fd < 0 {
		return
	}
	if len(data) == 0 {
		c.in = nil
	} else {
		c.in = append(c.in[:0:0], data...)
	}
}

func (l *Loader) onMessage(c *cconn, payload []byte) {
	if l.cfg.Stateful {
		defer l.ack(c)
	}
	if c.mp {
		l.onMessagePack(c, payload)
		return
	}
	_ = hubproto.JSON.Split(payload, func(rec []byte) error {
		if c.fd < 0 {
			return nil
		}
		if c.state == stHandshake {
			l.onHandshake(c, rec)
			return nil
		}
		l.onRecord(c, hubproto.JSON.PeekType(rec), func() (int64, int64, bool) { return BenchArgs(rec) }, func() string { return closeError(rec) })
		return nil
	})
}

// onMessagePack handles a MessagePack connection's message: the JSON
// handshake response first (in a binary frame, as ASP.NET Core sends it),
// then length-prefixed MessagePack records.
func (l *Loader) onMessagePack(c *cconn, payload []byte) {
	if c.state == stHandshake {
		i := bytes.IndexByte(payload, hubproto.RecordSeparator)
		if i < 0 {
			l.fail(c, "handshake: "+string(payload))
			return
		}
		l.onHandshake(c, payload[:i])
		payload = payload[i+1:]
	}
	err := hubproto.MessagePack.Split(payload, func(rec []byte) error {
		if c.fd >= 0 && c.state == stOpen {
			l.onRecord(c, hubproto.MessagePack.PeekType(rec), func() (int64, int64, bool) { return BenchArgsMessagePack(rec) }, func() string { return "" })
		}
		return nil
	})
	if err != nil && c.fd >= 0 {
		l.lost(c, "messagepack: "+err.Error())
	}
}

// onHandshake handles the handshake response record (JSON, separator
// removed).
func (l *Loader) onHandshake(c *cconn, rec []byte) {
	if hubproto.JSON.PeekType(rec) != 0 || len(rec) > 2 && string(rec[:min(8, len(rec))]) == `{"error"` {
		l.fail(c, "handshake: "+string(rec))
		return
	}
	now := time.Now().UnixNano()
	c.state = stOpen
	l.inFlight--
	l.st.Open++
	l.st.EverOpened++
	l.st.LastOpenNano = now
	l.handsh.Record(time.Duration(now - c.attemptStart))
	l.connect.Record(time.Duration(now - c.firstStart))
}

// ack sends a stateful connection's Ack for the trackable messages it
// received since the last one (the official clients ack on a timer; one
// Ack per read keeps the node's replay buffer as small as it gets).
func (l *Loader) ack(c *cconn) {
	if c.fd < 0 || c.state != stOpen || c.recv == c.acked {
		return
	}
	c.acked = c.recv
	if c.mp {
		l.write(c, wsframe.AppendClientFrame(nil, wsframe.OpBinary, hubproto.MessagePack.AppendAck(nil, c.recv)))
	} else {
		l.write(c, wsframe.AppendClientFrame(nil, wsframe.OpText, hubproto.JSON.AppendAck(nil, c.recv)))
	}
}

// trackable reports whether stateful reconnect numbers messages of type
// t (all but Ping, Close, Ack and Sequence).
func trackable(t hubproto.MessageType) bool {
	return t != hubproto.TypePing && t != hubproto.TypeClose && t != hubproto.TypeAck && t != hubproto.TypeSequence
}

// onRecord counts a record of type t of an open connection; args reads an
// invocation's sequence number and send time, closeText a Close record's
// error text.
func (l *Loader) onRecord(c *cconn, t hubproto.MessageType, args func() (seq, sentNano int64, ok bool), closeText func() string) {
	if trackable(t) {
		c.recv++
	}
	switch t {
	case hubproto.TypePing:
		l.st.Pings++
	case hubproto.TypeInvocation:
		l.st.Deliveries++
		if seq, sent, ok := args(); ok && seq >= 0 && seq < 1<<20 {
			now := time.Now().UnixNano()
			l.latency.Record(time.Duration(now - sent))
			for int(seq) >= len(l.seqLast) {
				l.seqLast = append(l.seqLast, 0)
				l.seqCount = append(l.seqCount, 0)
			}
			l.seqLast[seq] = now
			l.seqCount[seq]++
		}
	case hubproto.TypeClose:
		l.lost(c, "signalr close: "+closeText())
	}
}

// speaksMessagePack reports whether connection i of a loader speaks
// MessagePack when a fraction frac of them do: the fraction's multiples
// spread evenly (0.5: the odd ones).
func speaksMessagePack(i int, frac float64) bool {
	return int(float64(i+1)*frac) > int(float64(i)*frac)
}

// closeError is the "error" text of a SignalR Close record (what the
// server says the close was for), at most 80 bytes; "" without one.
func closeError(rec []byte) string {
	var m struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(bytes.TrimSuffix(rec, []byte{hubproto.RecordSeparator}), &m)
	if len(m.Error) > 80 {
		return m.Error[:80]
	}
	return m.Error
}
