package bench

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/edgeplane/edgeplane/internal/hubproto"
)

func TestParseResponseHead(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		status  int
		clen    int
		retry   string
		wantErr error
	}{
		{"upgrade", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81", 101, -1, "", nil},
		{"negotiate", "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{}", 200, 12, "", nil},
		{"503", "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n", 503, 0, "2", nil},
		{"partial", "HTTP/1.1 200 OK\r\nContent-Le", 0, 0, "", ErrIncomplete},
		{"garbage", "SSH-2.0-OpenSSH\r\n\r\n", 0, 0, "", ErrBadResponse},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := ParseResponseHead([]byte(c.in))
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil || r.Status != c.status || r.ContentLength != c.clen || r.RetryAfter != c.retry {
				t.Fatalf("got %+v err %v", r, err)
			}
			if !strings.HasSuffix(c.in[:r.HeaderLen], "\r\n\r\n") {
				t.Fatalf("header length %d wrong", r.HeaderLen)
			}
		})
	}
}

func TestInvocationArgs(t *testing.T) {
	for _, size := range []int{64, 4096} {
		args := InvocationArgs("bench", 7, 1234567890123, size)
		if !json.Valid([]byte(args)) {
			t.Fatalf("size %d: invalid JSON %s", size, args)
		}
		rec := `{"type":1,"target":"bench","arguments":` + args + "}\x1e"
		if len(rec) != size {
			t.Fatalf("size %d: record is %d bytes", size, len(rec))
		}
		seq, ts, ok := BenchArgs([]byte(rec))
		if !ok || seq != 7 || ts != 1234567890123 || hubproto.JSON.PeekType([]byte(rec)) != hubproto.TypeInvocation {
			t.Fatalf("size %d: BenchArgs = %d %d %v", size, seq, ts, ok)
		}
	}
	// Re-serialised with spaces, as another JSON encoder may do.
	if seq, ts, ok := BenchArgs([]byte(`{"type": 1, "target": "t", "arguments": [ 3, 99, "x"]}`)); !ok || seq != 3 || ts != 99 {
		t.Fatalf("spaced: %d %d %v", seq, ts, ok)
	}
	if _, _, ok := BenchArgs([]byte(`{"type":1,"target":"t","arguments":["a"]}`)); ok {
		t.Fatal("non-bench arguments accepted")
	}
}
