package hubproto

import (
	"bytes"
	"strconv"
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
