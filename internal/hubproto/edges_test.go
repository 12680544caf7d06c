package hubproto

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestVarIntEdges: the length prefix at each boundary of its 7-bit
// groups is written in as many bytes as it needs, and reads back.
func TestVarIntEdges(t *testing.T) {
	for _, tc := range []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0}}, {127, []byte{0x7f}}, {128, []byte{0x80, 0x01}},
		{16383, []byte{0xff, 0x7f}}, {16384, []byte{0x80, 0x80, 0x01}},
	} {
		got := appendVarInt(nil, tc.v)
		if !bytes.Equal(got, tc.want) || varIntLen(tc.v) != len(tc.want) {
			t.Errorf("%d: %x (len %d), want %x", tc.v, got, varIntLen(tc.v), tc.want)
		}
		v, n, err := readVarInt(got)
		if err != nil || v != tc.v || n != len(got) {
			t.Errorf("%d read back as %d, %d bytes, %v", tc.v, v, n, err)
		}
	}
}

// TestIDString: a protocol's id names it; an id past the last says so.
func TestIDString(t *testing.T) {
	if got := ID(NumIDs - 1).String(); got != ByID(NumIDs-1).Name() {
		t.Errorf("last id: %q", got)
	}
	if got := NumIDs.String(); got != "ID("+strconv.Itoa(int(NumIDs))+")" {
		t.Errorf("ID(NumIDs) = %q", got)
	}
}

// TestJSONToMessagePackTrailingSpace: white space after the value ends
// the input cleanly.
func TestJSONToMessagePackTrailingSpace(t *testing.T) {
	got, err := JSONToMessagePack(nil, []byte("[1] \n"))
	if err != nil || !bytes.Equal(got, []byte{0x91, 0x01}) {
		t.Errorf("%x, %v; want 9101", got, err)
	}
}

// TestMessagePackToJSONEdges: maps nested past the limit are refused as
// arrays are; string keys of every string encoding convert; a timestamp
// with 10^9 nanoseconds (one second too many) is refused.
func TestMessagePackToJSONEdges(t *testing.T) {
	var deep []byte
	for range maxDepth + 2 {
		deep = append(deep, 0x81, 0xa1, 'k') // {"k": ...
	}
	deep = append(deep, 0xc0)
	if _, err := MessagePackToJSON(nil, deep); !errors.Is(err, ErrInvalidMsgpack) {
		t.Errorf("maps %d levels deep: %v", maxDepth+2, err)
	}
	for _, tc := range []struct{ mp, want string }{
		{"81a0c3", `{"":true}`},
		{"81bf" + strings.Repeat("61", 31) + "c3", `{"` + strings.Repeat("a", 31) + `":true}`},
		{"81d90161c3", `{"a":true}`},
		{"81db0000000161c3", `{"a":true}`},
	} {
		got, err := MessagePackToJSON(nil, unhexT(t, tc.mp))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %s, %v; want %s", tc.mp, got, err, tc.want)
		}
	}
	if _, err := MessagePackToJSON(nil, []byte{0x81}); err == nil { // a map cut before its key
		t.Errorf("truncated map: %v", err)
	}
	for _, mp := range []string{
		"d7ff" + "ee6b2800" + "00000000", // 8 bytes: 10^9 ns << 34 (0x3b9aca00 << 2 in the top 32 bits)
		"c70cff" + "3b9aca00" + "0000000000000000",
	} {
		if _, err := MessagePackToJSON(nil, unhexT(t, mp)); !errors.Is(err, ErrInvalidMsgpack) {
			t.Errorf("%s: %v, want a refused timestamp", mp, err)
		}
	}
}
