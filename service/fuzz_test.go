package service

import (
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/serviceproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// pipeConn is an in-memory poller.Conn.
type pipeConn struct {
	mu     sync.Mutex
	out    int
	closed bool
}

func (p *pipeConn) Send(f []byte) error {
	p.mu.Lock()
	p.out += len(f)
	p.mu.Unlock()
	return nil
}
func (p *pipeConn) Shutdown([]byte)      { p.mu.Lock(); p.closed = true; p.mu.Unlock() }
func (p *pipeConn) Close() error         { p.Shutdown(nil); return nil }
func (p *pipeConn) QueuedBytes() int     { return 0 }
func (p *pipeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// maskedFrame is a client frame of payload.
func maskedFrame(op wsframe.OpCode, payload []byte) []byte {
	return wsframe.AppendClientFrame(nil, op, payload)
}

// FuzzServerStream: whatever an app server sends after its handshake —
// any bytes, in binary frames — the service never panics, handles it
// or closes the connection, and stays usable.
//
//	go test -run XXX -fuzz FuzzServerStream -fuzztime 30s ./service/
func FuzzServerStream(f *testing.F) {
	raw, err := os.ReadFile("../internal/serviceproto/testdata/asrs-service-protocol.json")
	if err != nil {
		f.Fatal(err)
	}
	var v struct {
		Vectors []struct {
			FramedHex string `json:"framed_hex"`
		} `json:"vectors"`
	}
	json.Unmarshal(raw, &v)
	var all []byte
	for _, x := range v.Vectors {
		b, _ := hex.DecodeString(x.FramedHex)
		f.Add(b)
		all = append(all, b...)
	}
	f.Add(all)
	router := fanout.NewRouter([]string{"chathub"}, nil)
	bp := backplane.NewMemory()
	bp.Start(router)
	s := New(Config{Logger: slog.New(slog.DiscardHandler)}, router, bp)
	f.Cleanup(func() { s.Close() })
	hs := maskedFrame(wsframe.OpBinary, serviceproto.Frame(&serviceproto.HandshakeRequest{Version: 1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		sess, err := s.AcceptServer(httptest.NewRequest("GET", "/server/?hub=chathub", nil), "chathub")
		if err != nil {
			t.Fatal(err)
		}
		pc := &pipeConn{}
		sess.Start(pc)
		sc := sess.(*serverConn)
		sess.OnData(hs)
		sess.OnData(maskedFrame(wsframe.OpBinary, data))
		deadline := time.Now().Add(5 * time.Second)
		for sc.queued.Load() > 0 && sc.state.Load() != scClosed && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond)
		}
		sess.OnClose(nil)
	})
}
