package hubproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

func unhexT(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMessagePackWritesTheSpecsBytes: each record the server writes, byte
// for byte as HubProtocol.md lays it out and ASP.NET Core writes it
// (length prefix, then the array).
func TestMessagePackWritesTheSpecsBytes(t *testing.T) {
	mp := MessagePack
	args := unhexT(t, "91 a2 6869") // ["hi"]
	mustAppend := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"ping", mp.Ping(), "02 91 06"},
		{"invocation, no id", mustAppend(mp.AppendInvocation(nil, "", "Send", args)), "0e 96 01 80 c0 a4 53656e64 91 a2 6869 90"},
		{"invocation, id, no args", mustAppend(mp.AppendInvocation(nil, "7", "T", nil)), "09 96 01 80 a1 37 a1 54 90 90"},
		{"stream item", mustAppend(mp.AppendStreamItem(nil, "1", unhexT(t, "2a"))), "06 94 02 80 a1 31 2a"},
		{"completion void", mustAppend(mp.AppendCompletion(nil, "1", nil)), "06 94 03 80 a1 31 02"},
		{"completion result", mustAppend(mp.AppendCompletion(nil, "1", unhexT(t, "c3"))), "07 95 03 80 a1 31 03 c3"},
		{"completion error", mp.AppendCompletionError(nil, "1", "no"), "09 95 03 80 a1 31 01 a2 6e6f"},
		{"close, no error", mp.AppendClose(nil, "", false), "04 93 07 c0 c2"},
		{"close, error, reconnect", mp.AppendClose(nil, "bye", true), "07 93 07 a3 627965 c3"},
		{"ack", mp.AppendAck(nil, 300), "05 92 08 cd 012c"},
		{"sequence", mp.AppendSequence(nil, 1), "03 92 09 01"},
	} {
		if want := unhexT(t, tc.want); !bytes.Equal(tc.got, want) {
			t.Errorf("%s: % x, want % x", tc.name, tc.got, want)
		}
	}
}

// TestMessagePackLongRecordPrefix: a record over 127 bytes gets a
// two-byte length prefix, and the body follows it directly.
func TestMessagePackLongRecordPrefix(t *testing.T) {
	long := strings.Repeat("x", 300)
	rec, err := MessagePack.AppendInvocation([]byte("keep"), "", long, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(rec[:4]) != "keep" {
		t.Fatalf("dst's bytes changed: %q", rec[:4])
	}
	n, k, err := readVarInt(rec[4:])
	if err != nil || k != 2 || int(n) != len(rec)-4-2 {
		t.Fatalf("prefix %d (%d bytes), err %v, for a %d-byte record", n, k, err, len(rec)-6)
	}
	var got []Message
	if err := MessagePack.Split(rec[4:], func(r []byte) error {
		m, err := MessagePack.Parse(r)
		got = append(got, m)
		return err
	}); err != nil || len(got) != 1 || got[0].Target != long {
		t.Fatalf("split/parse of a long record: %v %d", err, len(got))
	}
}

// TestMessagePackRoundTrip: what the writers produce, Split and Parse read
// back, several records in one message.
func TestMessagePackRoundTrip(t *testing.T) {
	mp := MessagePack
	var msg []byte
	msg, _ = mp.AppendInvocation(msg, "42", "Send", unhexT(t, "92 a1 61 01"))
	msg, _ = mp.AppendStreamItem(msg, "s1", unhexT(t, "a3 616263"))
	msg, _ = mp.AppendCompletion(msg, "9", unhexT(t, "81 a1 6b 02"))
	msg = mp.AppendCompletionError(msg, "9", "boom")
	msg = mp.AppendClose(msg, "bye", true)
	msg = mp.AppendAck(msg, 5)
	msg = mp.AppendSequence(msg, 6)
	msg = append(msg, mp.Ping()...)
	var got []Message
	err := mp.Split(msg, func(rec []byte) error {
		m, err := mp.Parse(rec)
		if err != nil {
			return err
		}
		if pt := mp.PeekType(rec); pt != m.Type {
			t.Errorf("PeekType %v, Parse %v", pt, m.Type)
		}
		got = append(got, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Message{
		{Type: TypeInvocation, InvocationID: "42", Target: "Send", Arguments: unhexT(t, "92 a1 61 01")},
		{Type: TypeStreamItem, InvocationID: "s1", Arguments: unhexT(t, "a3 616263")},
		{Type: TypeCompletion, InvocationID: "9", Arguments: unhexT(t, "81 a1 6b 02")},
		{Type: TypeCompletion, InvocationID: "9"},
		{Type: TypeClose},
		{Type: TypeAck, SequenceID: 5},
		{Type: TypeSequence, SequenceID: 6},
		{Type: TypePing},
	}
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Type != w.Type || g.InvocationID != w.InvocationID || g.Target != w.Target || !bytes.Equal(g.Arguments, w.Arguments) || g.SequenceID != w.SequenceID {
			t.Errorf("record %d: %+v, want %+v", i, g, w)
		}
	}
	if !mp.IsPing(unhexT(t, "91 06")) || mp.IsPing(unhexT(t, "92 06 00")) {
		t.Error("IsPing")
	}
}

// TestMessagePackParsesWhatClientsSend: the JS client writes Invocation
// with 5 items when it has no streamIds; headers may be present; items a
// type does not define are skipped; an unknown type is not an error.
func TestMessagePackParsesWhatClientsSend(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  string
		want Message
	}{
		{"js invocation, 5 items", "95 01 80 c0 a4 53656e64 91 a2 6869", Message{Type: TypeInvocation, Target: "Send", Arguments: unhexT(t, "91 a2 6869")}},
		{"invocation with headers and streamIds", "96 01 81 a1 6b a1 76 a1 31 a1 54 90 91 a1 73", Message{Type: TypeInvocation, InvocationID: "1", Target: "T", Arguments: []byte{0x90}}},
		{"empty invocation id is non-blocking", "95 01 80 a0 a1 54 90", Message{Type: TypeInvocation, Target: "T", Arguments: []byte{0x90}}},
		{"stream invocation", "95 04 80 a1 31 a1 54 90", Message{Type: TypeStreamInvocation, InvocationID: "1", Target: "T", Arguments: []byte{0x90}}},
		{"cancel", "93 05 80 a1 31", Message{Type: TypeCancelInvocation, InvocationID: "1"}},
		{"close [7, nil] as the JS client writes it", "92 07 c0", Message{Type: TypeClose}},
		{"ack with a 64-bit id", "92 08 cf 0000000100000000", Message{Type: TypeAck, SequenceID: 1 << 32}},
		{"extra trailing items skipped", "93 06 01 a1 78", Message{Type: TypePing}},
		{"unknown type", "92 63 01", Message{Type: 99}},
	} {
		m, err := MessagePack.Parse(unhexT(t, tc.rec))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if m.Type != tc.want.Type || m.InvocationID != tc.want.InvocationID || m.Target != tc.want.Target || !bytes.Equal(m.Arguments, tc.want.Arguments) || m.SequenceID != tc.want.SequenceID {
			t.Errorf("%s: %+v, want %+v", tc.name, m, tc.want)
		}
	}
}

// TestMessagePackRejectsBadRecords: each malformed record is an
// ErrInvalidMessage naming what is wrong, never a panic.
func TestMessagePackRejectsBadRecords(t *testing.T) {
	for _, tc := range []struct {
		name, rec, says string
	}{
		{"not an array", "01", "message"},
		{"empty array", "90", "missing type"},
		{"type not an int", "91 a1 31", "messageType"},
		{"invocation too short", "94 01 80 c0 a1 54", "at least 5"},
		{"empty target", "95 01 80 c0 a0 90", "empty target"},
		{"target not a string", "95 01 80 c0 01 90", "target"},
		{"arguments not an array", "95 01 80 c0 a1 54 01", "arguments"},
		{"header key not a string", "95 01 81 01 a1 76 c0 a1 54 90", "headers"},
		{"empty header value", "95 01 81 a1 6b a0 c0 a1 54 90", "header"},
		{"stream invocation without id", "95 04 80 c0 a1 54 90", "invocation ID"},
		{"stream item without id", "94 02 80 c0 01", "invocation ID"},
		{"completion kind 9", "94 03 80 a1 31 09", "result kind"},
		{"completion error without text", "94 03 80 a1 31 01", "no result"},
		{"close error not a string", "92 07 01", "error"},
		{"close reconnect not a bool", "93 07 c0 01", "allowReconnect"},
		{"ack id not an int", "92 08 a1 31", "sequenceId"},
		{"streamIds with an empty id", "96 01 80 c0 a1 54 90 91 a0", "streamIds"},
		{"bytes after the array", "91 06 00", "bytes after"},
		{"truncated", "95 01 80 c0 a4 5365", "target"},
		{"invalid UTF-8 id", "95 01 80 a1 ff a1 54 90", "invocationId"},
	} {
		_, err := MessagePack.Parse(unhexT(t, tc.rec))
		if !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want ErrInvalidMessage saying %q", tc.name, err, tc.says)
		}
	}
}

func TestMessagePackSplitFraming(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		want      int
		err       error
	}{
		{"two records", "02 91 06 02 91 06", 2, nil},
		{"empty record", "00", 1, nil},
		{"truncated body", "05 91 06", 0, ErrIncompleteRecord},
		{"truncated prefix", "80", 0, ErrIncompleteRecord},
		{"six-byte prefix", "80 80 80 80 80 01", 0, ErrLengthPrefix},
		{"5-byte prefix over 2^32-1", "ff ff ff ff 1f", 0, ErrLengthPrefix},
	} {
		n := 0
		err := MessagePack.Split(unhexT(t, tc.msg), func([]byte) error { n++; return nil })
		if !errors.Is(err, tc.err) || (tc.err == nil && n != tc.want) {
			t.Errorf("%s: %d records, err %v; want %d, %v", tc.name, n, err, tc.want, tc.err)
		}
	}
	// The largest 5-byte prefix still parses as a length.
	if v, k, err := readVarInt(unhexT(t, "ff ff ff ff 0f")); err != nil || k != 5 || v != 1<<32-1 {
		t.Errorf("max prefix: %d %d %v", v, k, err)
	}
}

func TestMessagePackAppendChecksValues(t *testing.T) {
	mp := MessagePack
	dst := []byte("x")
	if got, err := mp.AppendInvocation(dst, "", "T", []byte{0x01}); !errors.Is(err, ErrInvalidMsgpack) || string(got) != "x" {
		t.Errorf("arguments not an array: %v %q", err, got)
	}
	if got, err := mp.AppendStreamItem(dst, "1", []byte{0x92, 0x01}); !errors.Is(err, ErrInvalidMsgpack) || string(got) != "x" {
		t.Errorf("truncated item: %v %q", err, got)
	}
	if got, err := mp.AppendCompletion(dst, "1", []byte{0x01, 0x02}); !errors.Is(err, ErrInvalidMsgpack) || string(got) != "x" {
		t.Errorf("two values as a result: %v %q", err, got)
	}
}

func TestMessagePackHandshake(t *testing.T) {
	// What the JS client sends (version 1 without stateful reconnect).
	h, rest, err := ParseHandshake([]byte("{\"protocol\":\"messagepack\",\"version\":1}\x1e\x02\x91\x06"))
	if err != nil || h.Protocol != MessagePack || !MessagePack.IsPing(rest[1:]) {
		t.Fatalf("handshake: %+v rest % x err %v", h, rest, err)
	}
}

func decodeMP(t testing.TB, b []byte) any {
	t.Helper()
	v, rest, err := msgp.ReadIntfBytes(b)
	if err != nil || len(rest) != 0 {
		t.Fatalf("decode % x: %v (%d left)", b, err, len(rest))
	}
	return v
}

// FuzzMessagePackParse: Parse never panics, and an Invocation it accepts
// survives being written back and parsed again.
func FuzzMessagePackParse(f *testing.F) {
	for _, s := range []string{"95 01 80 c0 a4 53656e64 91 a2 6869", "96 01 81 a1 6b a1 76 a1 31 a1 54 90 91 a1 73", "93 07 a3 627965 c3", "95 03 80 a1 31 03 c3", "91 06"} {
		f.Add(unhexT(f, s))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		m, err := MessagePack.Parse(rec)
		if err != nil || m.Type != TypeInvocation {
			return
		}
		out, err := MessagePack.AppendInvocation(nil, m.InvocationID, m.Target, m.Arguments)
		if err != nil {
			t.Fatalf("% x: parsed, but writing it back failed: %v", rec, err)
		}
		var again Message
		if err := MessagePack.Split(out, func(r []byte) (err error) { again, err = MessagePack.Parse(r); return err }); err != nil {
			t.Fatal(err)
		}
		if again.InvocationID != m.InvocationID || again.Target != m.Target || !bytes.Equal(again.Arguments, m.Arguments) {
			t.Fatalf("% x: %+v then %+v", rec, m, again)
		}
	})
}
