package backplane

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/edgeplane/edgeplane/backplane/wire"
)

func TestRESPAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, "SSUBSCRIBE", "a", "", "ü"))
	want := "*4\r\n$10\r\nSSUBSCRIBE\r\n$1\r\na\r\n$0\r\n\r\n$2\r\nü\r\n"
	if got != want {
		t.Errorf("appendCommand = %q, want %q", got, want)
	}
}

// TestRESPRead: every reply a subscribed connection gets.
func TestRESPRead(t *testing.T) {
	in := "*3\r\n$7\r\nmessage\r\n$8\r\nchat:all\r\n$5\r\nhello\r\n" +
		"*3\r\n$10\r\nssubscribe\r\n$1\r\nx\r\n:1\r\n" +
		"*3\r\n$12\r\nsunsubscribe\r\n$1\r\nx\r\n:0\r\n" +
		"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n" +
		"*2\r\n$4\r\npong\r\n$0\r\n\r\n" +
		"*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$2\r\npq\r\n$3\r\nbin\r\n" +
		"+PONG\r\n-MOVED 12 127.0.0.1:7000\r\n:42\r\n$3\r\nabc\r\n$-1\r\n" +
		"*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$4\r\na\r\nb\r\n"
	rd := newRESPReader(strings.NewReader(in))
	type want struct {
		kind    byte
		text    string
		elems   []string
		payload string
	}
	wants := []want{
		{kind: '*', elems: []string{"message", "chat:all", "hello"}, payload: "hello"},
		{kind: '*', elems: []string{"ssubscribe", "x", "1"}},
		{kind: '*', elems: []string{"sunsubscribe", "x", "0"}},
		{kind: '*', elems: []string{"unsubscribe", "", "0"}},
		{kind: '*', elems: []string{"pong", ""}},
		{kind: '*', elems: []string{"pmessage", "p*", "pq", "bin"}, payload: "bin"},
		{kind: '+', text: "PONG"},
		{kind: '-', text: "MOVED 12 127.0.0.1:7000"},
		{kind: ':', text: "42"},
		{kind: '$', text: "abc"},
		{kind: '$'},
		{kind: '*', elems: []string{"smessage", "c", "a\r\nb"}, payload: "a\r\nb"},
	}
	var kept [][]byte
	for i, w := range wants {
		var rep respReply
		if err := rd.read(&rep); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if rep.kind != w.kind || string(rep.text) != w.text || string(rep.payload) != w.payload || rep.n != len(w.elems) {
			t.Fatalf("reply %d = %c %q n=%d payload %q, want %c %q n=%d payload %q", i, rep.kind, rep.text, rep.n, rep.payload, w.kind, w.text, len(w.elems), w.payload)
		}
		for j, e := range w.elems {
			if string(rep.elems[j]) != e {
				t.Fatalf("reply %d element %d = %q, want %q", i, j, rep.elems[j], e)
			}
		}
		if rep.payload != nil {
			kept = append(kept, rep.payload)
		}
	}
	// Payloads are the caller's: later reads do not touch them.
	if string(kept[0]) != "hello" || string(kept[1]) != "bin" {
		t.Errorf("kept payloads changed: %q", kept)
	}
	if err := rd.read(&respReply{}); !errors.Is(err, io.EOF) {
		t.Errorf("read at the end: %v, want EOF", err)
	}
}

// TestRESPReadErrors: each kind of malformed input gets its own clear error
// (wrapping errRESP), and a stream cut short is the connection's error.
func TestRESPReadErrors(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"unknown type", "!x\r\n", "unknown reply type"},
		{"no CR", "+OK\n", "bad line"},
		{"empty line", "\r\n", "bad line"},
		{"bad array length", "*x\r\n", "bad length"},
		{"negative length", "*-5\r\n", "bad length"},
		{"empty array", "*0\r\n", "array of 0 elements"},
		{"array too long", "*5\r\n", "array of 5 elements"},
		{"nested array", "*1\r\n*1\r\n", "array element of type '*'"},
		{"status in array", "*1\r\n+OK\r\n", "array element of type '+'"},
		{"bulk too long", "$536870913\r\n", "bulk string of 536870913 bytes"},
		{"length overflow", "$99999999999\r\n", "bad length"},
		{"bulk without CRLF", "$3\r\nabcd\r\n", "not followed by CRLF"},
		{"line too long", "+" + strings.Repeat("x", respReadBuffer+10) + "\r\n", "line longer than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := newRESPReader(strings.NewReader(c.in)).read(&respReply{})
			if !errors.Is(err, errRESP) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("read(%.40q) = %v, want an errRESP about %q", c.in, err, c.want)
			}
		})
	}
	for _, in := range []string{"$5\r\nab", "*3\r\n$7\r\nmessage\r\n", "+OK"} {
		err := newRESPReader(strings.NewReader(in)).read(&respReply{})
		if errors.Is(err, errRESP) || (!errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF)) {
			t.Errorf("read(%q) cut short = %v, want the stream's EOF", in, err)
		}
	}
}

// FuzzRESPRead: any input either parses or fails with an error; the reader
// never panics, and a parsed message keeps its payload.
func FuzzRESPRead(f *testing.F) {
	f.Add([]byte("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n"))
	f.Add([]byte("*3\r\n$10\r\nssubscribe\r\n$1\r\nx\r\n:1\r\n"))
	f.Add([]byte("-MOVED 1 a:1\r\n+PONG\r\n$-1\r\n:7\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := newRESPReader(strings.NewReader(string(b)))
		for i := 0; i < 64; i++ {
			var rep respReply
			if err := rd.read(&rep); err != nil {
				return
			}
			if rep.kind == '*' && (rep.n < 1 || rep.n > respMaxArray) {
				t.Fatalf("array of %d elements accepted", rep.n)
			}
		}
	})
}

// TestRESPLargeBulk: a large payload arrives whole; a length line that
// promises more than arrives costs only what arrived.
func TestRESPLargeBulk(t *testing.T) {
	big := strings.Repeat("z", 3<<20)
	in := "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$" + strconv.Itoa(len(big)) + "\r\n" + big + "\r\n"
	var rep respReply
	if err := newRESPReader(strings.NewReader(in)).read(&rep); err != nil || string(rep.payload) != big {
		t.Fatalf("large message: %v (payload %d bytes)", err, len(rep.payload))
	}
	err := newRESPReader(strings.NewReader("$400000000\r\nshort")).read(&rep)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("bulk cut short: %v, want ErrUnexpectedEOF", err)
	}
}

// loopReader repeats b forever.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

// BenchmarkRedisReadPath measures a subscription connection's receive
// path for one message: RESP parse (the payload in memory of its own, the
// one allocation), route lookup, MessagePack decode, Deliver.
func BenchmarkRedisReadPath(b *testing.B) {
	bp, err := NewRedis(RedisConfig{Logger: slog.New(slog.NewTextHandler(ioDiscard{}, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer bp.Close()
	var n int
	bp.recv = countingReceiver{&n}
	bp.routes["chat:group:g"] = route{hub: "chat", kind: chanGroup, name: "g"}
	payload := wire.AppendInvocation(nil, []string{"conn-1"}, rec("hello world"))
	msg := appendCommand(nil, "message", "chat:group:g", string(payload)) // a push has the same framing
	s := &subscriber{r: bp, excluded: make([]string, 0, 16)}
	c := &subConn{unsubs: map[string]int{}}
	c.rd = newRESPReader(&loopReader{b: bytes.Repeat(msg, 64)})
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := c.rd.read(&s.rep); err != nil {
			b.Fatal(err)
		}
		if err := s.push(c, &s.rep); err != nil {
			b.Fatal(err)
		}
	}
	if n != b.N {
		b.Fatalf("delivered %d of %d", n, b.N)
	}
}
