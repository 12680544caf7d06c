package backplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// subscriber is one subscription connection to one Redis server (the
// single server, or one cluster master) and the goroutine that dials,
// subscribes and reads it (run). A cluster node needs one per master, not
// one per hash slot: one SSUBSCRIBE may only name channels of one slot,
// so each slot's channels go in commands of their own on the master's one
// connection.
//
// Liveness is proven, not assumed: a connection that has read nothing for
// half a health interval is sent a PING, and one that has read nothing for
// a whole interval is closed and dialed again, with every channel
// subscribed anew (a half-open socket, a paused Redis, a Redis that moved
// behind a stable address). A connection counts as up again only once a
// PING written after its SUBSCRIBEs is answered (replies come in order, so
// they are in effect by then); until then the node is not ready.
//
// The read goroutine calls Receiver.Deliver itself: nothing is buffered
// between Redis and the receiver. A receiver that is slow holds up
// reading; Redis then buffers for this client up to its
// client-output-buffer-limit for pubsub (default 32 MB hard, 8 MB for 60 s
// soft) and beyond that disconnects it: counted as a gap.
type subscriber struct {
	r    *Redis
	addr string

	// wmu serializes writes and guards the fields below.
	wmu  sync.Mutex
	nc   net.Conn // the socket being set up or in use; closed by close
	conn *subConn // the connection commands go to; nil while not connected
	seq  uint64   // sync PINGs written
	wbuf []byte

	// nslots: cluster slots whose channels this subscriber carries
	// (guarded by r.mu).
	nslots int

	// Guarded by r.stateMu.
	fault  *fault // not working: down, or resubscribed but not yet confirmed
	closed bool

	synced atomic.Uint64 // the last sync PING answered
	alive  atomic.Int64  // unix nanoseconds: bytes were last read
	// prevRead is when the read before the latest one returned (read
	// goroutine only): bytes that arrived with the latest read, such as a
	// dropped subscription, were sent after it at the earliest (loopback
	// aside, at least as late as anything read before).
	prevRead time.Time
	reset    atomic.Pointer[string]

	ctx    context.Context // canceled by close: ends dials
	cancel context.CancelFunc
	done   chan struct{}

	// Read-goroutine scratch, reused for every message.
	rep      respReply
	msg      Message
	excluded []string
}

// subConn is one established connection of a subscriber.
type subConn struct {
	nc net.Conn
	rd *respReader
	// unsubs counts the (S)UNSUBSCRIBE confirmations this node asked for
	// and has not read yet, by channel: any other is Redis dropping a
	// subscription (a cluster slot that moved).
	mu     sync.Mutex
	unsubs map[string]int
}

// Reasons a subscription stopped working; the reason label of
// edgeplane_backplane_gaps_total.
const (
	reasonStart         = "start"            // not subscribed yet (not a gap)
	reasonConnection    = "connection_error" // the connection failed or could not be made
	reasonNoPong        = "no_pong"          // nothing read, not even a PONG, for a health interval
	reasonSlotMoved     = "slot_moved"       // Redis dropped a slot's subscriptions (failover, resharding) or redirected them
	reasonNotSubscribed = "not_subscribed"   // a publish to a channel this node subscribes to reached no subscriber
	reasonErrorReply    = "error_reply"      // Redis refused a subscription command
)

var errNoPong = errors.New("no reply from Redis within the health interval (not even to a PING)")

const (
	subDialTimeout = time.Second
	// subChunk bounds the channels named in one (S)SUBSCRIBE.
	subChunk = 1000
	// syncPrefix marks the PINGs whose PONG confirms what was written
	// before them; alivePing is the liveness PING.
	syncPrefix = "edgeplane-sync:"
	alivePing  = "edgeplane-alive"
)

// newSubscriberLocked creates the subscriber for addr and starts it. Until
// the backplane has been up once it counts as down (not subscribed yet);
// later ones count as up until something fails. r.subMu must be held.
func (r *Redis) newSubscriberLocked(addr string) *subscriber {
	s := &subscriber{r: r, addr: addr, done: make(chan struct{}), excluded: make([]string, 0, 16)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.alive.Store(time.Now().UnixNano())
	r.subs[addr] = s
	r.m.subConns.Inc()
	r.stateMu.Lock()
	if !r.everUp {
		r.addFaultLocked(&s.fault, &fault{reason: reasonStart, since: time.Now()})
	}
	r.stateMu.Unlock()
	go s.run()
	return s
}

// subscriber returns the subscriber for addr, creating it if needed.
func (r *Redis) subscriber(addr string) *subscriber {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	if s := r.subs[addr]; s != nil {
		return s
	}
	return r.newSubscriberLocked(addr)
}

// run dials, subscribes and reads until the subscriber is closed,
// reconnecting with a capped backoff.
func (s *subscriber) run() {
	defer close(s.done)
	r := s.r
	backoff := minBackoff
	for {
		c, err := s.connect()
		if err == nil {
			backoff = minBackoff
			err = s.read(c)
			s.disconnect(c)
		}
		if s.ctx.Err() != nil || r.closed.Load() {
			return
		}
		reason := reasonConnection
		switch {
		case errors.Is(err, errNoPong):
			reason = reasonNoPong
		case errors.Is(err, errErrorReply):
			reason = reasonErrorReply
		}
		if why := s.reset.Swap(nil); why != nil {
			reason = *why
		}
		r.subscriptionLost(s, reason, time.Unix(0, s.alive.Load()), err)
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// connect dials, authenticates, subscribes every channel this subscriber
// carries and writes a sync PING; the subscriber counts as up once its
// PONG is read.
func (s *subscriber) connect() (*subConn, error) {
	r := s.r
	if r.hooks != nil && r.hooks.dial != nil {
		r.hooks.dial(s.addr)
	}
	ctx, cancel := context.WithTimeout(s.ctx, subDialTimeout)
	nc, err := r.dialSub(ctx, s.addr)
	cancel()
	if err != nil {
		return nil, err
	}
	s.wmu.Lock()
	if s.ctx.Err() != nil {
		s.wmu.Unlock()
		_ = nc.Close()
		return nil, s.ctx.Err()
	}
	s.nc = nc
	s.wmu.Unlock()
	s.alive.Store(time.Now().UnixNano())
	c := &subConn{nc: nc, unsubs: make(map[string]int)}
	c.rd = newRESPReader(&aliveReader{s: s, c: c})
	if err := s.auth(c); err != nil {
		_ = nc.Close()
		return nil, err
	}

	s.wmu.Lock()
	defer s.wmu.Unlock()
	bySlot := r.channelsOf(s)
	b := s.wbuf[:0]
	for _, chans := range bySlot {
		b = r.appendSubscribe(b, chans)
	}
	s.seq++
	seq := s.seq
	b = appendCommand(b, "PING", syncPrefix+strconv.FormatUint(seq, 10))
	err = c.write(b, r.cfg.PublishTimeout)
	s.keepBuf(b)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	n := 0
	for _, chans := range bySlot {
		n += len(chans)
	}
	if n > 0 {
		r.m.subscribeCmds.Add(len(bySlot))
	}
	s.conn = c
	r.stateMu.Lock()
	r.writtenLocked(s, seq)
	r.stateMu.Unlock()
	return c, nil
}

// auth sends AUTH when the configuration has a password.
func (s *subscriber) auth(c *subConn) error {
	user, pass := s.r.credentials()
	if pass == "" {
		return nil
	}
	args := []string{pass}
	if user != "" {
		args = []string{user, pass}
	}
	if err := c.write(appendCommand(nil, "AUTH", args...), s.r.cfg.PublishTimeout); err != nil {
		return err
	}
	var rep respReply
	if err := c.rd.read(&rep); err != nil {
		return err
	}
	if rep.kind == '-' {
		return fmt.Errorf("backplane: redis AUTH on the subscription connection to %s: %s", s.addr, rep.text)
	}
	return nil
}

// disconnect forgets c and closes it.
func (s *subscriber) disconnect(c *subConn) {
	s.wmu.Lock()
	if s.conn == c {
		s.conn = nil
	}
	if s.nc == c.nc {
		s.nc = nil
	}
	s.wmu.Unlock()
	_ = c.nc.Close()
}

// restart closes the current connection; run dials again and counts the
// gap with reason.
func (s *subscriber) restart(reason string) {
	s.reset.Store(&reason)
	s.wmu.Lock()
	if s.nc != nil {
		_ = s.nc.Close()
	}
	s.wmu.Unlock()
}

// chanChange is a batch of subscription changes for one slot (all of a
// single server's channels are slot 0).
type chanChange struct {
	subs, unsubs []string
}

// change writes (S)SUBSCRIBE (sub) or (S)UNSUBSCRIBE commands for chans,
// which must all be of one slot in a cluster, and, with sync, a sync PING.
// It returns the sync's sequence number, 0 when not connected: then the
// next connection subscribes whatever the subscriber carries by then.
func (s *subscriber) change(chans []string, sub, sync bool) uint64 {
	if sub {
		return s.changes([]chanChange{{subs: chans}}, sync)
	}
	return s.changes([]chanChange{{unsubs: chans}}, sync)
}

// changes writes the unsubscriptions and subscriptions of every batch
// (each of one slot) in one write, followed, with sync, by a sync PING
// whose sequence number it returns (0: not connected, or no sync).
func (s *subscriber) changes(batches []chanChange, sync bool) uint64 {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.changesLocked(batches, sync)
}

// changesLocked is changes with s.wmu held.
func (s *subscriber) changesLocked(batches []chanChange, sync bool) uint64 {
	r := s.r
	c := s.conn
	if c == nil {
		return 0
	}
	b := s.wbuf[:0]
	n := 0
	for _, ch := range batches {
		if len(ch.unsubs) > 0 {
			c.mu.Lock()
			for _, x := range ch.unsubs {
				c.unsubs[x]++
			}
			c.mu.Unlock()
			b = r.appendUnsubscribe(b, ch.unsubs)
			n++
		}
		if len(ch.subs) > 0 {
			b = r.appendSubscribe(b, ch.subs)
			n++
		}
	}
	var seq uint64
	if sync {
		s.seq++
		seq = s.seq
		b = appendCommand(b, "PING", syncPrefix+strconv.FormatUint(seq, 10))
	}
	if len(b) == 0 {
		return 0
	}
	r.m.subscribeCmds.Add(n)
	err := c.write(b, r.cfg.PublishTimeout)
	s.keepBuf(b)
	if err != nil {
		// The read loop sees the closed connection and reconnects, which
		// subscribes everything carried then.
		r.log.Debug("subscription commands not written; the reconnect restores the subscriptions", "redis", s.addr, "commands", n, "err", err)
		_ = c.nc.Close()
		return 0
	}
	return seq
}

// ping writes a sync PING and returns its sequence number (0: not
// connected). For tests (settle).
func (s *subscriber) ping() uint64 { return s.change(nil, true, true) }

func (s *subscriber) keepBuf(b []byte) {
	if cap(b) <= maxPooledBuf {
		s.wbuf = b[:0]
	} else {
		s.wbuf = nil
	}
}

// appendSubscribe appends SUBSCRIBE (SSUBSCRIBE in a cluster) commands for
// chans, at most subChunk channels each.
func (r *Redis) appendSubscribe(b []byte, chans []string) []byte {
	cmd := "SUBSCRIBE"
	if r.cluster {
		cmd = "SSUBSCRIBE"
	}
	for len(chans) > 0 {
		n := min(len(chans), subChunk)
		b = appendCommand(b, cmd, chans[:n]...)
		chans = chans[n:]
	}
	return b
}

func (r *Redis) appendUnsubscribe(b []byte, chans []string) []byte {
	cmd := "UNSUBSCRIBE"
	if r.cluster {
		cmd = "SUNSUBSCRIBE"
	}
	for len(chans) > 0 {
		n := min(len(chans), subChunk)
		b = appendCommand(b, cmd, chans[:n]...)
		chans = chans[n:]
	}
	return b
}

// write writes b with a deadline.
func (c *subConn) write(b []byte, timeout time.Duration) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.nc.Write(b)
	return err
}

// unsubscribed reports whether this node asked for the (S)UNSUBSCRIBE
// whose confirmation for ch was just read, and consumes it.
func (c *subConn) unsubscribed(ch []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.unsubs[string(ch)]
	switch {
	case n == 0:
		return false
	case n == 1:
		delete(c.unsubs, string(ch))
	default:
		c.unsubs[string(ch)] = n - 1
	}
	return true
}

// close stops the subscriber: closes its connection and waits for its
// goroutine. Its fault, if any, no longer counts (whoever closes it has
// moved its channels elsewhere, or the backplane is closing).
func (s *subscriber) close() {
	r := s.r
	r.stateMu.Lock()
	if s.closed {
		r.stateMu.Unlock()
		return
	}
	s.closed = true
	if s.fault != nil {
		r.dropFaultLocked(&s.fault, time.Now())
	}
	r.stateMu.Unlock()
	s.cancel()
	s.wmu.Lock()
	if s.nc != nil {
		_ = s.nc.Close()
	}
	s.wmu.Unlock()
	<-s.done
	r.m.subConns.Dec()
}

// aliveReader is the subscription connection as the RESP reader sees it:
// a read that waits half a health interval for bytes sends a PING, and one
// that then waits another half fails with errNoPong. A timed-out read is
// retried here, invisibly to the parser, so a reply split across reads is
// never torn.
type aliveReader struct {
	s *subscriber
	c *subConn
}

func (a *aliveReader) Read(p []byte) (int, error) {
	half := a.s.r.cfg.HealthInterval / 2
	pinged := false
	for {
		_ = a.c.nc.SetReadDeadline(time.Now().Add(half))
		n, err := a.c.nc.Read(p)
		if n > 0 {
			now := time.Now()
			a.s.prevRead = time.Unix(0, a.s.alive.Swap(now.UnixNano()))
			return n, err
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, err
		}
		if pinged {
			return 0, errNoPong
		}
		a.s.wmu.Lock()
		err = a.c.write(appendCommand(nil, "PING", alivePing), half)
		a.s.wmu.Unlock()
		if err != nil {
			return 0, err
		}
		pinged = true
	}
}

// dialSub opens a subscription connection to addr with the client's
// network, TLS settings and timeouts.
func (r *Redis) dialSub(ctx context.Context, addr string) (net.Conn, error) {
	network := "tcp"
	var tlsCfg *tls.Config
	if r.sc != nil {
		o := r.sc.Options()
		network, tlsCfg = o.Network, o.TLSConfig
	} else {
		tlsCfg = r.cc.Options().TLSConfig
	}
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if tlsCfg == nil {
		return nc, nil
	}
	tc := tls.Client(nc, tlsCfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, err
	}
	return tc, nil
}

// credentials are the user and password the client authenticates with.
func (r *Redis) credentials() (user, pass string) {
	if r.sc != nil {
		o := r.sc.Options()
		return o.Username, o.Password
	}
	o := r.cc.Options()
	return o.Username, o.Password
}
