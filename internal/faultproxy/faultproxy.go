package faultproxy

import (
	"errors"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from its loopback address to a target.
// Its methods are safe for concurrent use.
type Proxy struct {
	tb testing.TB
	ln net.Listener

	mu      sync.Mutex
	cond    *sync.Cond // signalled when a link's held state changes or links die
	targets []string   // where new connections go, in turn
	next    int        // the next one's index in targets
	hold    bool       // new connections are blackholed
	links   map[*link]struct{}
	closed  bool

	wg sync.WaitGroup
}

// link is one proxied connection: the client's socket and, once the link
// passes traffic for the first time, the server's.
type link struct {
	client net.Conn
	server net.Conn // set once dialed (under p.mu)
	held   bool     // blackholed (under p.mu)
	n      int      // its place in the round-robin turn (under p.mu)
	dead   bool     // closed or reset (under p.mu)
}

// Start listens on a free loopback port and forwards to target (host:port).
// The proxy and every connection through it close at the end of the test.
func Start(tb testing.TB, target string) *Proxy {
	tb.Helper()
	return StartRoundRobin(tb, target)
}

// StartRoundRobin is Start with several targets: new connections go to
// each in turn, as a round-robin balancer sends them (connection i to
// targets[i % len(targets)]).
func StartRoundRobin(tb testing.TB, targets ...string) *Proxy {
	tb.Helper()
	if len(targets) == 0 {
		tb.Fatal("faultproxy: no target")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("faultproxy: listen: %v", err)
	}
	p := &Proxy{tb: tb, ln: ln, targets: targets, links: make(map[*link]struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port: give it to the client instead of the
// server's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops all forwarding: every open connection holds what it
// reads from either side (and then stops reading, so the senders' socket
// buffers fill), and new connections are accepted and held the same way
// without reaching the server. No socket is closed.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = true
	for l := range p.links {
		l.held = true
	}
}

// Heal resumes forwarding on every connection (what was held flows on)
// and lets new connections through.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = false
	for l := range p.links {
		l.held = false
	}
	p.cond.Broadcast()
}

// Failover sends new connections, and blackholed connections that have
// not reached a server yet, to target from now on and lets them through.
// Connections open to the old server stay as they are: a blackholed one
// stays half-open until its client gives up.
func (p *Proxy) Failover(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets, p.next = []string{target}, 0
	p.hold = false
	for l := range p.links {
		if l.server == nil {
			l.held = false
		}
	}
	p.cond.Broadcast()
}

// Reset closes every open connection with an RST on both sides. New
// connections are handled as before.
func (p *Proxy) Reset() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		p.kill(l, true)
	}
}

// DropClients resets the client side of every open connection (RST) and
// leaves the server side open and silent: the server sees nothing, as
// when a client's network dies and the server has not noticed yet (its
// connection is half-open). The server side is closed at Close. New
// connections are handled as before.
func (p *Proxy) DropClients() {
	p.mu.Lock()
	var clients []net.Conn
	for l := range p.links {
		l.held = true // nothing flows to or from the server side any more
		clients = append(clients, l.client)
	}
	p.mu.Unlock()
	for _, c := range clients {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// Conns is the number of connections open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines. It is called at test cleanup.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.Reset()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.tb.Logf("faultproxy: accept: %v", err)
			}
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		l := &link{client: c, held: p.hold, n: p.next}
		p.next++
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.run(l)
	}
}

// run waits until the link may pass, dials the current target, then
// copies client → server (and starts server → client).
func (p *Proxy) run(l *link) {
	defer p.wg.Done()
	if !p.waitPass(l) {
		return
	}
	p.mu.Lock()
	target := p.targets[l.n%len(p.targets)]
	p.mu.Unlock()
	s, err := net.Dial("tcp", target)
	if err != nil {
		p.kill(l, false) // as a proxy does when its backend refuses
		return
	}
	p.mu.Lock()
	if l.dead {
		p.mu.Unlock()
		_ = s.Close()
		return
	}
	l.server = s
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		p.pump(l, s, l.client)
	}()
	p.pump(l, l.client, s)
}

// pump copies src to dst, holding each chunk while the link is blackholed.
func (p *Proxy) pump(l *link, src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitPass(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				p.kill(l, false)
				return
			}
		}
		if err != nil {
			// Forward the end of the stream once the link passes (a
			// blackholed link forwards nothing, not even a FIN).
			if p.waitPass(l) {
				p.kill(l, false)
			}
			return
		}
	}
}

// waitPass blocks while l is blackholed and reports whether it may pass
// (false once it is dead or the proxy closed).
func (p *Proxy) waitPass(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l.held && !l.dead && !p.closed {
		p.cond.Wait()
	}
	return !l.dead && !p.closed
}

// kill closes both sides of l, with an RST when reset is set.
func (p *Proxy) kill(l *link, reset bool) {
	p.mu.Lock()
	if l.dead {
		p.mu.Unlock()
		return
	}
	l.dead = true
	delete(p.links, l)
	s := l.server
	p.cond.Broadcast()
	p.mu.Unlock()
	for _, c := range []net.Conn{l.client, s} {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}
