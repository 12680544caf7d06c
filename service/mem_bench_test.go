package service_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/sdkfake"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/internal/wsframe"
	"github.com/edgeplane/edgeplane/service"
)

// BenchmarkRelayedClientMemory: the node's heap per idle client, relayed
// to the app (/client/, service mode) and plain (/{hub}), on the same
// node:
//
//	go test -run XXX -bench RelayedClientMemory -benchtime 1x ./service/
//
// The clients, the fake app and the node share the process, so the heap
// is the node's only: every allocation is profiled (MemProfileRate 1)
// and those whose stack passes through the fake app or this file's
// clients are left out. node-B/client is the in-use heap the node gained
// per client, after GC, with the clients connected and idle.
func BenchmarkRelayedClientMemory(b *testing.B) {
	const clients = 2000
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	for _, relayed := range []bool{false, true} {
		name := "plain"
		if relayed {
			name = "relayed"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				per := relayedClientMemory(b, clients, relayed)
				b.ReportMetric(per, "node-B/client")
				b.StartTimer()
			}
		})
	}
}

func relayedClientMemory(b *testing.B, clients int, relayed bool) float64 {
	n := nodetest.Start(b, node.Config{Hubs: []node.Hub{{Name: "chathub"}}, Service: &service.Config{}})
	defer n.Close()
	a, err := sdkfake.Start(sdkfake.Config{Endpoint: "http://" + n.Addr().String(), AccessKey: key,
		Hubs: []*sdkfake.Hub{{Name: "ChatHub"}}})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.WaitConnected(ctx, 5); err != nil {
		b.Fatal(err)
	}
	base, err := a.ListenNegotiate("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := n.Addr().String()
	path, query, token := "/chathub", "", ""
	if relayed { // as edgebench: one redirect from the app for every client
		_, body := post(b, base+"/ChatHub/negotiate?negotiateVersion=1", "")
		var r struct{ URL, AccessToken string }
		if err := json.Unmarshal(body, &r); err != nil {
			b.Fatalf("app negotiate: %s", body)
		}
		u, _ := url.Parse(r.URL)
		path, query, token = u.Path, u.RawQuery+"&", r.AccessToken
	}
	before := nodeHeap()
	conns := make([]net.Conn, 0, clients)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range clients {
		conns = append(conns, memClientDial(b, addr, path, query, token))
	}
	// Every client open and nothing else (the negotiates' sockets gone);
	// 5 server connections in service mode.
	testutil.WaitUntil(b, 10*time.Second, "only the clients and the app's connections open", func() bool {
		return n.Conns() == clients+5
	})
	after := nodeHeap()
	if got := n.Conns(); got != clients+5 {
		b.Fatalf("%d connections open after measuring, want %d", got, clients+5)
	}
	return float64(after-before) / float64(clients)
}

// nodeHeap is the in-use heap allocated by neither the fake app nor this
// file's clients, after two GCs (the profile is the last GC's).
func nodeHeap() int64 {
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+100)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	var sum int64
	for i := range recs {
		r := &recs[i]
		if r.InUseBytes() == 0 || notNodes(r.Stack()) {
			continue
		}
		sum += r.InUseBytes()
	}
	return sum
}

// notNodes reports whether an allocation is the fake app's, a client's,
// the profiler's, or a goroutine's (the fake app runs one per client;
// the node none).
func notNodes(stk []uintptr) bool {
	frames := runtime.CallersFrames(stk)
	for {
		f, more := frames.Next()
		if strings.Contains(f.Function, "internal/sdkfake") || strings.Contains(f.Function, "memClientDial") ||
			strings.Contains(f.Function, "net/http.(*Transport)") || strings.Contains(f.Function, "net/http.(*persistConn)") ||
			strings.Contains(f.Function, "relayedClientMemory") || strings.Contains(f.Function, "runtime.MemProfile") ||
			strings.HasPrefix(f.Function, "runtime.newproc") {
			return true
		}
		if !more {
			return false
		}
	}
}

// memClientDial negotiates, upgrades and completes the JSON handshake on
// a raw TCP connection, then leaves it idle (nothing reads it).
func memClientDial(b *testing.B, addr, path, query, token string) net.Conn {
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	code, body := post(b, "http://"+addr+path+negotiatePath(path)+"?"+query+"negotiateVersion=1", token)
	var neg struct{ ConnectionToken string }
	if json.Unmarshal(body, &neg) != nil || code != 200 {
		b.Fatalf("negotiate %d %s", code, body)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(c, "GET %s?%sid=%s HTTP/1.1\r\nHost: %s\r\n%sUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", path, query, url.QueryEscape(neg.ConnectionToken), addr, auth)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		b.Fatalf("upgrade: %v %v", resp, err)
	}
	if _, err := c.Write(wsframe.AppendClientFrame(nil, wsframe.OpText, []byte(`{"protocol":"json","version":1}`+"\x1e"))); err != nil {
		b.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		b.Fatalf("handshake: %v", err)
	}
	msg := make([]byte, hdr[1]&0x7f)
	if _, err := io.ReadFull(br, msg); err != nil || string(msg) != "{}\x1e" {
		b.Fatalf("handshake %q %v", msg, err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}

// negotiatePath is the negotiate path of a connect path: /chathub →
// /chathub/negotiate, /client/ → /client/negotiate.
func negotiatePath(path string) string {
	if strings.HasSuffix(path, "/") {
		return "negotiate"
	}
	return "/negotiate"
}
