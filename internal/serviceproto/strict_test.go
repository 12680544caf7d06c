package serviceproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestParseRejects: input that is not a valid message gets an error that
// wraps ErrMalformed and says what is wrong, never a panic or a partly
// filled message.
func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name, hex, want string
	}{
		{"empty", "", "not an array"},
		{"not an array", "01", "not an array"},
		{"map", "8103a1", "not an array"},
		{"empty array", "90", "empty array"},
		{"type not an int", "91a178", "type"},
		{"type over int32", "91cf0000000100000000", "type"},
		{"JoinGroupWithAck without ackId", "9312a163a167", "JoinGroupWithAck has 3 items, its oldest layout has 4"},
		{"ConnectionData without payload", "9206a163", "ConnectionData has 2 items"},
		{"nil connection id", "940bc0a16780", "JoinGroup: connectionId: nil, want a string"},
		{"connection id an int", "940b01a16780", "JoinGroup: connectionId"},
		{"ackId over int32", "9512a163a167ce8000000080", "JoinGroupWithAck: ackId"},
		{"ackId a string", "9512a163a167a13180", "JoinGroupWithAck: ackId"},
		{"bytes after the array", "910300", "Ping: 1 bytes after the array"},
		{"truncated string", "9406a5636f6e", "ConnectionData: connectionId"},
		{"ext not a map", "9406a163c40090", "ConnectionData: ext"},
		{"ext key a string", "9406a163c40081a17801", "ConnectionData: ext key"},
		{"ext tracing id negative", "9406a163c4008101ff", "ConnectionData: ext[1]"},
		{"ext partial not a bool", "9406a163c400810601", "ConnectionData: ext[6]"},
		{"ext truncated", "9406a163c40082", "ConnectionData: ext key"},
		{"payloads not a map", "940a9090", "BroadcastData: payloads"},
		{"payload an int", "940a9081a46a736f6e0180", "BroadcastData: payloads[0].value"},
		{"payload key nil", "940a9081c0c40080", "BroadcastData: payloads[0].key: nil"},
		{"excluded id nil", "940a91c08080", "BroadcastData: excludedList[0]: nil"},
		{"excluded not an array", "940ac08080", "BroadcastData: excludedList"},
		{"claim value nil", "9604a16381a178c08080a080", "OpenConnection: claims[0].Value"},
		{"header values not an array", "9604a1638081a178a179a080", "OpenConnection: headers[0].value"},
		{"flow control bad type", "9527a163d200000003d20000000180", "ConnectionFlowControl: connectionType: unsupported connection type 3"},
		{"flow control bad operation", "9527a163d200000001d20000000580", "ConnectionFlowControl: operation: unsupported operation 5"},
		{"handshake bool not a bool", "97010100a0008001", "HandshakeRequest: allowStatefulReconnects"},
		{"array count forged", "dd7fffffff06a163c400", "ConnectionData: ext"},
		{"map count forged in payloads", "940a90dfffffffff80", "BroadcastData: payloads[0].key"},
		{"unknown type with a broken item", "9263d9", "Type(99): extra item"},
		{"nested depth", "9263" + strings.Repeat("91", 200000) + "c0", "Type(99): extra item"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(body)
			if err == nil {
				t.Fatalf("Parse(%s) = %#v, want an error", tc.hex, m)
			}
			if m != nil {
				t.Fatalf("a message came with the error: %#v", m)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestParseTruncated: every proper prefix of every vector is an error.
func TestParseTruncated(t *testing.T) {
	for _, v := range loadVectors(t) {
		body := unhex(t, v.Hex)
		for i := 0; i < len(body); i++ {
			if m, err := Parse(body[:i]); err == nil {
				t.Fatalf("%s: Parse of its first %d bytes = %#v, want an error", v.Name, i, m)
			}
		}
	}
}

// TestParseLenient: what the SDK's reader accepts, Parse accepts too.
func TestParseLenient(t *testing.T) {
	for _, tc := range []struct {
		name, hex string
		want      Message
	}{
		// ParseMessageWithExtraData: items a newer layout adds are skipped.
		{"extra items", "9712a163a1670180a378797a92c0c3",
			&JoinGroupWithAck{ConnectionID: "c", Group: "g", AckID: 1}},
		{"unknown ext key skipped", "9406a163c401018263a1780502",
			&ConnectionData{ConnectionID: "c", Payload: []byte{1}, Ext: Ext{DataType: DataInvocation}}},
		{"ext key with no interface on the type", "940ba163a1678103a4" + hex.EncodeToString([]byte("json")),
			&JoinGroup{ConnectionID: "c", Group: "g", Ext: Ext{}.WithProtocol("json")}},
		{"payload as str", "940a9081a46a736f6ea27b7d80",
			&BroadcastData{Payloads: Payloads{{Protocol: "json", Data: []byte("{}")}}}},
		{"nil payload", "9306a163c0", &ConnectionData{ConnectionID: "c"}},
		{"nil strings", "9405a163c080",
			&CloseConnection{ConnectionID: "c"}},
		{"nil header value", "9604a1638081a17891c0a080",
			&OpenConnection{ConnectionID: "c", Headers: []Header{{Name: "x", Values: []string{""}}}}},
		{"unknown type", "936301a178", &Unknown{T: 99}},
		{"ints in any encoding", "9512a163a167d2000000018101cf0000000000000007",
			&JoinGroupWithAck{ConnectionID: "c", Group: "g", AckID: 1, Ext: Ext{}.WithTracingID(7)}},
		{"3-item handshake: version only, as the SDK reads it", "93010101",
			&HandshakeRequest{Version: 1}},
		{"4-item OpenConnection: id and claims", "9404a1638080",
			&OpenConnection{ConnectionID: "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(body)
			if err != nil {
				t.Fatalf("Parse(%s): %v", tc.hex, err)
			}
			if !reflect.DeepEqual(m, tc.want) {
				t.Fatalf("Parse(%s)\n got  %#v\n want %#v", tc.hex, m, tc.want)
			}
		})
	}
}

// TestExtWrittenOnlyWhereCarried: a message never carries an ext key its
// SDK class does not read (the old readers would misparse the rest).
func TestExtWrittenOnlyWhereCarried(t *testing.T) {
	all := Ext{DataType: DataClose, Partial: true}.WithTracingID(1).WithTTL(2).WithProtocol("p").WithFilter("f")
	for _, z := range allZero() {
		m := reflect.New(reflect.TypeOf(z).Elem()).Interface().(Message)
		setExt(m, all)
		if fc, ok := m.(*ConnectionFlowControl); ok {
			fc.ConnectionType, fc.Operation = FlowClient, FlowPause
		}
		parsed, err := Parse(m.AppendBody(nil))
		if err != nil {
			t.Fatalf("%s: %v", m.Type(), err)
		}
		got := extOf(parsed)
		keys := m.Type().Keys()
		if got.Has&^keys != 0 || (got.DataType != 0) != (keys&ExtDataType != 0) || got.Partial != (keys&ExtPartial != 0) {
			t.Errorf("%s wrote ext %+v, carries only %06b", m.Type(), got, keys)
		}
		if m.Type() == TypeClientCompletion {
			continue // its protocol is a field of its own
		}
		if got.Has != all.Has&keys {
			t.Errorf("%s wrote ext keys %06b, carries %06b", m.Type(), got.Has, keys)
		}
	}
	if k := TypeConnectionData.Keys(); k != ExtTracingID|ExtDataType|ExtPartial {
		t.Errorf("ConnectionData keys %06b", k)
	}
	if k := TypeOpenConnection.Keys(); k != ExtTracingID|ExtProtocol {
		t.Errorf("OpenConnection keys %06b", k)
	}
	if k := TypeHandshakeRequest.Keys(); k != 0 {
		t.Errorf("HandshakeRequest keys %06b", k)
	}
}

func setExt(m Message, e Ext) {
	if f := reflect.ValueOf(m).Elem().FieldByName("Ext"); f.IsValid() {
		f.Set(reflect.ValueOf(e))
	}
}

func extOf(m Message) Ext {
	if f := reflect.ValueOf(m).Elem().FieldByName("Ext"); f.IsValid() {
		return f.Interface().(Ext)
	}
	return Ext{}
}

// TestSplitterRejects: framing errors, and that a Splitter never holds
// more than one message's limit of a peer's bytes.
func TestSplitterRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  []byte
		max   int
		want  error
		wants string
	}{
		{"prefix of 6 bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 0, ErrLengthPrefix, "more than 5 bytes"},
		{"prefix of 2 GiB", []byte{0x80, 0x80, 0x80, 0x80, 0x08}, 0, ErrLengthPrefix, "2147483648 bytes"},
		{"over the limit, before the body arrives", []byte{0x81, 0x08}, 1024, ErrTooLarge, "1025 bytes, the limit is 1024"},
		{"over the default limit", AppendPrefix(nil, DefaultMaxMessageBytes+1), 0, ErrTooLarge, "the limit is 4194304"},
		{"empty message", []byte{0x00}, 0, ErrMalformed, "empty message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Whole, and one byte at a time.
			for _, step := range []int{len(tc.data), 1} {
				s := Splitter{MaxMessageBytes: tc.max}
				var err error
				for off := 0; off < len(tc.data) && err == nil; off += step {
					err = s.Feed(tc.data[off:min(off+step, len(tc.data))], func([]byte) error {
						t.Fatal("a message came out")
						return nil
					})
				}
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wants) {
					t.Fatalf("step %d: err %v, want %v saying %q", step, err, tc.want, tc.wants)
				}
			}
		})
	}
	// An incomplete message within the limit is held, and only it.
	s := Splitter{MaxMessageBytes: 100}
	msg := Frame(&ConnectionData{ConnectionID: "c", Payload: make([]byte, 80)})
	if err := s.Feed(msg[:50], func([]byte) error { return nil }); err != nil || s.Buffered() != 50 {
		t.Fatalf("held %d bytes, err %v", s.Buffered(), err)
	}
	n := 0
	if err := s.Feed(msg[50:], func(b []byte) error { n++; return nil }); err != nil || n != 1 || s.Buffered() != 0 {
		t.Fatalf("completed %d, held %d, err %v", n, s.Buffered(), err)
	}
	// fn's error stops Feed and comes back.
	stop := errors.New("stop")
	two := append(Frame(&Ping{}), Frame(&Ping{})...)
	n = 0
	if err := s.Feed(two, func([]byte) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("err %v after %d messages, want stop after 1", err, n)
	}
}

// TestAppendFramePrefixSizes: the prefix moves right behind a body of
// every prefix size, appended after existing bytes.
func TestAppendFramePrefixSizes(t *testing.T) {
	for _, n := range []int{0, 120, 127, 128, 16383, 16384, 1 << 21} {
		m := &ConnectionData{ConnectionID: "c", Payload: bytes.Repeat([]byte{7}, n)}
		body := m.AppendBody(nil)
		got := AppendFrame([]byte("head"), m)
		want := append(AppendPrefix([]byte("head"), len(body)), body...)
		if !bytes.Equal(got, want) {
			t.Fatalf("payload %d: frame differs from prefix+body", n)
		}
		l, k, ok, err := ReadPrefix(got[4:])
		if !ok || err != nil || l != len(body) || k != prefixLen(len(body)) {
			t.Fatalf("payload %d: ReadPrefix = %d %d %v %v", n, l, k, ok, err)
		}
	}
}
