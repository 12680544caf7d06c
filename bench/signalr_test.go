package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestClientFrameRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte{'a'}, n)
		for i := range payload {
			payload[i] = byte(i)
		}
		frame := AppendClientFrame(nil, opText, payload)
		if frame[1]&0x80 == 0 {
			t.Fatalf("n=%d: client frame not masked", n)
		}
		if n > 8 && bytes.Contains(frame, payload[:8]) && n > 0 {
			// masking must change the bytes (random mask of 0 is possible but vanishingly rare)
			t.Logf("n=%d: payload prefix visible in masked frame", n)
		}
		f, used, err := ParseFrame(append([]byte(nil), frame...))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if used != len(frame) || !f.Fin || f.Op != opText || !bytes.Equal(f.Payload, payload) {
			t.Fatalf("n=%d: used %d of %d, fin %v op %d, payload equal %v", n, used, len(frame), f.Fin, f.Op, bytes.Equal(f.Payload, payload))
		}
		for cut := 0; cut < len(frame); cut += 1 + len(frame)/7 {
			if _, _, err := ParseFrame(append([]byte(nil), frame[:cut]...)); !errors.Is(err, ErrIncomplete) {
				t.Fatalf("n=%d cut=%d: err %v, want ErrIncomplete", n, cut, err)
			}
		}
	}
}

func TestParseServerFrames(t *testing.T) {
	// Two unmasked server frames back to back: a text frame with two records,
	// then a ping.
	in := []byte{0x81, 0x16}
	in = append(in, []byte("{\"type\":6}\x1e{\"type\":6}\x1e")...)
	in = append(in, 0x89, 0x02, 'h', 'i')
	f, n, err := ParseFrame(in)
	if err != nil || f.Op != opText || n != 24 {
		t.Fatalf("first frame: op %d n %d err %v", f.Op, n, err)
	}
	var recs []string
	rest := SplitRecords(f.Payload, func(r []byte) { recs = append(recs, string(r)) })
	if len(recs) != 2 || len(rest) != 0 || RecordType([]byte(recs[0])) != 6 {
		t.Fatalf("records %q rest %q", recs, rest)
	}
	f, n2, err := ParseFrame(in[n:])
	if err != nil || f.Op != opPing || string(f.Payload) != "hi" || n2 != 4 {
		t.Fatalf("ping frame: op %d payload %q err %v", f.Op, f.Payload, err)
	}
	if _, _, err := ParseFrame([]byte{0xF1, 0x00}); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("reserved bits: err %v", err)
	}
}

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
		if !ok || seq != 7 || ts != 1234567890123 || RecordType([]byte(rec)) != 1 {
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
