package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// echoServer answers every line with its name and the line.
func echoServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 16)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, name+":"+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	return ln.Addr().String()
}

type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// ask writes a line and reads the answer within d ("" and the error if
// none came).
func (c *client) ask(line string, d time.Duration) (string, error) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		return "", err
	}
	return c.read(d)
}

func (c *client) read(d time.Duration) (string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	s, err := c.br.ReadString('\n')
	if len(s) > 0 {
		s = s[:len(s)-1]
	}
	return s, err
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func TestPass(t *testing.T) {
	p := Start(t, echoServer(t, "a"))
	c := dial(t, p.Addr())
	if got, err := c.ask("hi", time.Second); got != "a:hi" || err != nil {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	if n := p.Conns(); n != 1 {
		t.Errorf("Conns = %d, want 1", n)
	}
}

// TestBlackholeHeal: nothing flows and nothing closes while blackholed, for
// open and new connections; after Heal what was held arrives.
func TestBlackholeHeal(t *testing.T) {
	p := Start(t, echoServer(t, "a"))
	old := dial(t, p.Addr())
	if got, err := old.ask("one", time.Second); got != "a:one" || err != nil {
		t.Fatalf("before: %q, %v", got, err)
	}
	p.Blackhole()
	if got, err := old.ask("two", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("open connection while blackholed: %q, %v; want a time-out", got, err)
	}
	fresh := dial(t, p.Addr()) // the connect itself succeeds
	if got, err := fresh.ask("three", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("new connection while blackholed: %q, %v; want a time-out", got, err)
	}
	p.Heal()
	if got, err := old.read(time.Second); got != "a:two" || err != nil {
		t.Fatalf("held line after Heal: %q, %v", got, err)
	}
	if got, err := fresh.read(time.Second); got != "a:three" || err != nil {
		t.Fatalf("new connection's held line after Heal: %q, %v", got, err)
	}
}

// TestFailover: after a blackhole and a failover, new connections reach
// the second server and the old one stays half-open.
func TestFailover(t *testing.T) {
	p := Start(t, echoServer(t, "a"))
	old := dial(t, p.Addr())
	if got, err := old.ask("x", time.Second); got != "a:x" || err != nil {
		t.Fatalf("before: %q, %v", got, err)
	}
	p.Blackhole()
	p.Failover(echoServer(t, "b"))
	fresh := dial(t, p.Addr())
	if got, err := fresh.ask("y", time.Second); got != "b:y" || err != nil {
		t.Fatalf("new connection after Failover: %q, %v", got, err)
	}
	if got, err := old.ask("z", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("old connection after Failover: %q, %v; want it stuck", got, err)
	}
}

// TestReset: every open connection gets an RST; new ones pass.
func TestReset(t *testing.T) {
	p := Start(t, echoServer(t, "a"))
	c := dial(t, p.Addr())
	if got, err := c.ask("x", time.Second); got != "a:x" || err != nil {
		t.Fatalf("before: %q, %v", got, err)
	}
	p.Reset()
	_, err := c.read(time.Second)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after Reset: %v, want ECONNRESET", err)
	}
	testutil.WaitUntil(t, time.Second, "no connection left", func() bool { return p.Conns() == 0 })
	if got, err := dial(t, p.Addr()).ask("y", time.Second); got != "a:y" || err != nil {
		t.Fatalf("new connection after Reset: %q, %v", got, err)
	}
}

// TestRoundRobin: connections go to the targets in turn, in the order
// they arrive; Failover then sends all to one.
func TestRoundRobin(t *testing.T) {
	p := StartRoundRobin(t, echoServer(t, "a"), echoServer(t, "b"), echoServer(t, "c"))
	for i, want := range []string{"a:x", "b:x", "c:x", "a:x", "b:x"} {
		if got, err := dial(t, p.Addr()).ask("x", time.Second); got != want || err != nil {
			t.Fatalf("connection %d: %q, %v; want %q", i, got, err, want)
		}
	}
	p.Failover(echoServer(t, "d"))
	for i := range 2 {
		if got, err := dial(t, p.Addr()).ask("x", time.Second); got != "d:x" || err != nil {
			t.Fatalf("after Failover, connection %d: %q, %v", i, got, err)
		}
	}
}

// TestDropClients: the client side gets an RST, the server side stays
// open and hears nothing (no FIN, no RST, no data) until the proxy
// closes.
func TestDropClients(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := Start(t, ln.Addr().String())
	c := dial(t, p.Addr())
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := io.WriteString(c.c, "hi\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, err := srv.Read(buf); err != nil || string(buf[:n]) != "hi\n" {
		t.Fatalf("server read %q, %v", buf[:n], err)
	}
	p.DropClients()
	if _, err := c.read(time.Second); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after DropClients: %v, want ECONNRESET", err)
	}
	_ = srv.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := srv.Read(buf); !isTimeout(err) {
		t.Fatalf("server side after DropClients: %v, want it open and silent", err)
	}
	p.Close()
	_ = srv.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := srv.Read(buf); err == nil || isTimeout(err) {
		t.Fatalf("server side after Close: %v, want closed", err)
	}
}
