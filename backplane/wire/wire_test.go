package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"slices"
	"sort"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// vectors mirrors testdata/signalr-redis.json (a copy of
// shared/vectors/signalr-redis.json).
type vectors struct {
	Ack []struct {
		Name string
		ID   int32
		Hex  string
	}
	GroupCommand []struct {
		Name       string
		ID         int32
		Server     string
		Action     uint8
		Group      string
		Connection string
		Hex        string
	} `json:"group_command"`
	Invocation []struct {
		Name           string
		Excluded       []string
		Serializations map[string]string
		Hex            string
	}
	Realistic []struct {
		Name          string
		ChannelSuffix string `json:"channel_suffix"`
		Excluded      []string
		JSONRecord    string `json:"json_record"`
		Hex           string
	}
}

func loadVectors(tb testing.TB) *vectors {
	tb.Helper()
	raw, err := os.ReadFile("testdata/signalr-redis.json")
	if err != nil {
		tb.Fatalf("read vectors: %v", err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		tb.Fatalf("parse vectors: %v", err)
	}
	if len(v.Ack) == 0 || len(v.GroupCommand) == 0 || len(v.Invocation) == 0 || len(v.Realistic) == 0 {
		tb.Fatalf("vectors file is missing a group: %+v", v)
	}
	return &v
}

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestAckVectors(t *testing.T) {
	for _, v := range loadVectors(t).Ack {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			if got := AppendAck(nil, v.ID); !bytes.Equal(got, want) {
				t.Errorf("encode %d = %x, want %x", v.ID, got, want)
			}
			id, err := ReadAck(want)
			if err != nil || id != v.ID {
				t.Errorf("decode %x = %d, %v; want %d", want, id, err, v.ID)
			}
		})
	}
}

func TestGroupCommandVectors(t *testing.T) {
	for _, v := range loadVectors(t).GroupCommand {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			c := GroupCommand{ID: v.ID, ServerName: v.Server, Action: v.Action, Group: v.Group, ConnectionID: v.Connection}
			if got := AppendGroupCommand(nil, &c); !bytes.Equal(got, want) {
				t.Errorf("encode = %x, want %x", got, want)
			}
			var d GroupCommand
			if err := ReadGroupCommand(want, &d); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if d != c {
				t.Errorf("decode = %+v, want %+v", d, c)
			}
		})
	}
}

func TestInvocationVectors(t *testing.T) {
	for _, v := range loadVectors(t).Invocation {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			// The vectors list protocols p1, p2 in this order (JSON object
			// order is lost in the map): sort the names.
			names := make([]string, 0, len(v.Serializations))
			for name := range v.Serializations {
				names = append(names, name)
			}
			sort.Strings(names)
			sers := make([][]byte, len(names))
			for i, name := range names {
				sers[i] = unhex(t, v.Serializations[name])
			}
			if got := AppendInvocationProtocols(nil, v.Excluded, names, sers); !bytes.Equal(got, want) {
				t.Errorf("encode = %x, want %x", got, want)
			}
			for i, name := range names {
				ex, ser, err := ReadInvocationProtocol(want, nil, name)
				if err != nil {
					t.Fatalf("decode %s: %v", name, err)
				}
				if !slices.Equal(ex, v.Excluded) && !(len(ex) == 0 && len(v.Excluded) == 0) {
					t.Errorf("excluded = %q, want %q", ex, v.Excluded)
				}
				if !bytes.Equal(ser, sers[i]) {
					t.Errorf("%s = %x, want %x", name, ser, sers[i])
				}
			}
			// No json entry: what a JSON node must refuse.
			if _, _, err := ReadInvocation(want, nil); !errors.Is(err, ErrNoProtocol) || !errors.Is(err, ErrMalformed) {
				t.Errorf("ReadInvocation without json: err = %v, want ErrNoProtocol", err)
			}
		})
	}
}

func TestRealisticVectors(t *testing.T) {
	for _, v := range loadVectors(t).Realistic {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Hex)
			rec := []byte(v.JSONRecord)
			if rec[len(rec)-1] != 0x1e {
				t.Fatalf("vector record does not end in 0x1e")
			}
			if got := AppendInvocation(nil, v.Excluded, rec); !bytes.Equal(got, want) {
				t.Errorf("encode = %x, want %x", got, want)
			}
			ex, js, err := ReadInvocation(want, nil)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !slices.Equal(ex, v.Excluded) && !(len(ex) == 0 && len(v.Excluded) == 0) {
				t.Errorf("excluded = %q, want %q", ex, v.Excluded)
			}
			if !bytes.Equal(js, rec) {
				t.Errorf("json = %q, want %q", js, rec)
			}
			// Zero-copy: the record is a sub-slice of the input.
			if &js[len(js)-1] != &want[len(want)-1] {
				t.Errorf("json record is not a sub-slice of the payload")
			}
		})
	}
}

func TestDecodeTolerance(t *testing.T) {
	rec := []byte("{\"type\":1,\"target\":\"x\",\"arguments\":[]}\x1e")
	// Extra trailing items (newer .NET: return channel, invocation id).
	b := AppendInvocation(nil, []string{"a"}, rec)
	b[0] = 0x94 // fixarray of 4
	b = append(b, 0xa3, 'r', 'e', 't', 0xa2, 'i', 'd')
	ex, js, err := ReadInvocation(b, nil)
	if err != nil || !bytes.Equal(js, rec) || !slices.Equal(ex, []string{"a"}) {
		t.Errorf("invocation with extra items: %q %q %v", ex, js, err)
	}
	// json before and after other protocols; the messagepack entry ignored.
	b = AppendInvocationProtocols(nil, nil, []string{"messagepack", "json"}, [][]byte{{0x95, 1}, rec})
	if _, js, err = ReadInvocation(b, nil); err != nil || !bytes.Equal(js, rec) {
		t.Errorf("invocation with messagepack first: %q %v", js, err)
	}
	// Both entries, in either order: each as the sub-slice of the payload
	// it is; messagepack absent is nil.
	mpRec := []byte{0x03, 0x91, 0x06, 0x00}[:3]
	for _, names := range [][]string{{"messagepack", "json"}, {"json", "p2", "messagepack"}} {
		sers := [][]byte{mpRec, rec}
		if names[0] == "json" {
			sers = [][]byte{rec, {0x2a}, mpRec}
		}
		b = AppendInvocationProtocols(nil, []string{"a"}, names, sers)
		ex, js, mp, err := ReadInvocationWithMessagePack(b, nil)
		if err != nil || !bytes.Equal(js, rec) || !bytes.Equal(mp, mpRec) || !slices.Equal(ex, []string{"a"}) {
			t.Errorf("%v: %q %q % x %v", names, ex, js, mp, err)
		}
	}
	if _, js, mp, err := ReadInvocationWithMessagePack(AppendInvocation(nil, nil, rec), nil); err != nil || !bytes.Equal(js, rec) || mp != nil {
		t.Errorf("json only: %q % x %v", js, mp, err)
	}
	if _, _, _, err := ReadInvocationWithMessagePack(AppendInvocationProtocols(nil, nil, []string{"messagepack"}, [][]byte{mpRec}), nil); !errors.Is(err, ErrNoProtocol) {
		t.Errorf("messagepack only: %v, want ErrNoProtocol", err)
	}
	// A reused excluded slice is appended to, not reallocated.
	buf := make([]string, 0, 8)
	ex, _, _ = ReadInvocation(AppendInvocation(nil, []string{"x", "y"}, rec), buf[:0])
	if len(ex) != 2 || &ex[0] != &buf[:1][0] {
		t.Errorf("excluded slice was reallocated")
	}
}

func TestDecodeErrors(t *testing.T) {
	rec := []byte("{}\x1e")
	good := AppendInvocation(nil, []string{"a"}, rec)
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"not an array", []byte{0xc0}},
		{"short array", []byte{0x91, 0x90}},
		{"truncated", good[:len(good)-1]},
		{"trailing bytes", append(slices.Clone(good), 0x00)},
		{"excluded not strings", []byte{0x92, 0x91, 0x01, 0x80}},
		{"protocols not a map", []byte{0x92, 0x90, 0x90}},
		{"huge array header", []byte{0x92, 0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"garbage", []byte("hello world")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := ReadInvocation(c.b, nil); !errors.Is(err, ErrMalformed) {
				t.Errorf("ReadInvocation(%x) err = %v, want ErrMalformed", c.b, err)
			}
		})
	}
	var gc GroupCommand
	for _, b := range [][]byte{
		nil,
		{0x94, 0x01, 0xa1, 'S', 0x01, 0xa1, 'G'}, // 4 items
		{0x95, 0x01, 0xa1, 'S', 0x03, 0xa1, 'G', 0xa1, 'C'},                         // action 3
		{0x95, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0xa1, 'S', 0x01, 0xa1, 'G', 0xa1, 'C'}, // id > int32
		{0x95, 0x01, 0x01, 0x01, 0xa1, 'G', 0xa1, 'C'},                              // server not a string
	} {
		if err := ReadGroupCommand(b, &gc); !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadGroupCommand(%x) err = %v, want ErrMalformed", b, err)
		}
	}
	for _, b := range [][]byte{nil, {0x90}, {0x91}, {0x91, 0xa1, 'x'}, {0x91, 0x01, 0x01}} {
		if _, err := ReadAck(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadAck(%x) err = %v, want ErrMalformed", b, err)
		}
	}
}

func TestNegativeIDRoundTrip(t *testing.T) {
	for _, id := range []int32{-1, -33, -200, -70000, 1 << 30} {
		got, err := ReadAck(AppendAck(nil, id))
		if err != nil || got != id {
			t.Errorf("ack %d round trip = %d, %v", id, got, err)
		}
	}
}

// TestAckIDRange: an id is an int32: both ends of its range decode, one
// past either end is malformed.
func TestAckIDRange(t *testing.T) {
	for _, tc := range []struct {
		v  int64
		ok bool
	}{{math.MinInt32, true}, {math.MaxInt32, true}, {math.MinInt32 - 1, false}, {math.MaxInt32 + 1, false}, {0, true}} {
		b := msgp.AppendInt64(msgp.AppendArrayHeader(nil, 1), tc.v)
		id, err := ReadAck(b)
		if tc.ok && (err != nil || int64(id) != tc.v) {
			t.Errorf("ReadAck(id %d) = %d, %v", tc.v, id, err)
		}
		if !tc.ok && !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadAck(id %d) = %d, %v; want ErrMalformed", tc.v, id, err)
		}
		if tc.ok {
			if got, err := ReadAck(AppendAck(nil, int32(tc.v))); err != nil || int64(got) != tc.v {
				t.Errorf("AppendAck(%d) read back as %d, %v", tc.v, got, err)
			}
		}
	}
}
