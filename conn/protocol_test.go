package conn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
)

// The hub protocol per connection (protocol.go): MessagePack clients get
// binary frames of MessagePack records for everything, JSON clients what
// they always got, from the same deliveries.

var mpHandshake = []byte(`{"protocol":"messagepack","version":1}` + "\x1e")

// openProtoConn upgrades a fake connection and sends handshake in a frame
// with first byte b0; it returns the frames answered to the handshake and
// clears the output.
func openProtoConn(t *testing.T, s *Server, b0 byte, handshake []byte) (*Conn, *fakeConn, []byte, []string) {
	t.Helper()
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	t.Cleanup(func() { sess.OnClose(nil) })
	sess.OnData([]byte(testUpgrade))
	out := fc.output()
	i := bytes.Index(out, []byte("\r\n\r\n"))
	if !bytes.HasPrefix(out, []byte("HTTP/1.1 101")) || i < 0 {
		t.Fatalf("upgrade: %q", out)
	}
	fc.mu.Lock()
	fc.out.Reset()
	fc.mu.Unlock()
	sess.OnData(clientFrame(b0, handshake))
	ops, payloads := serverFrames(t, fc.output())
	fc.mu.Lock()
	fc.out.Reset()
	fc.mu.Unlock()
	return sess.(*Conn), fc, ops, payloads
}

// mpRecords splits a MessagePack frame payload into decoded records.
func mpRecords(t *testing.T, payload string) []any {
	t.Helper()
	var recs []any
	err := hubproto.MessagePack.Split([]byte(payload), func(rec []byte) error {
		v, rest, err := msgp.ReadIntfBytes(rec)
		if err != nil || len(rest) != 0 {
			t.Fatalf("record % x: %v (%d bytes left)", rec, err, len(rest))
		}
		recs = append(recs, v)
		return nil
	})
	if err != nil {
		t.Fatalf("frame % x: %v", payload, err)
	}
	return recs
}

// TestMessagePackConnection: a MessagePack client (handshake in a text
// frame, as @microsoft/signalr sends it, or a binary one) gets the
// handshake response, deliveries, keep-alive Pings and its Close in
// binary frames of MessagePack records; a JSON client on the same hub gets
// the same delivery as JSON in a text frame.
func TestMessagePackConnection(t *testing.T) {
	for _, b0 := range []byte{0x81, 0x82} {
		s := newTestServer(t, Config{})
		c, fc, ops, payloads := openProtoConn(t, s, b0, mpHandshake)
		if !slices.Equal(ops, []byte{0x82}) || payloads[0] != "{}\x1e" {
			t.Fatalf("handshake in frame %#x: answered %x %q, want {}␞ in one binary frame", b0, ops, payloads)
		}
		if c.proto() != hubproto.IDMessagePack {
			t.Fatalf("protocol %v after a messagepack handshake", c.proto())
		}
		j, jfc, jops, _ := openProtoConn(t, s, 0x81, testHandshake)
		if !slices.Equal(jops, []byte{0x81}) || j.proto() != hubproto.IDJSON {
			t.Fatalf("JSON client: handshake answered %x, protocol %v", jops, j.proto())
		}

		rec := `{"type":1,"target":"news","arguments":["hi",7,1.5,{"k":[true,null]}]}` + "\x1e"
		s.router.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: []byte(rec)})
		ops, payloads = serverFrames(t, fc.output())
		if !slices.Equal(ops, []byte{0x82}) {
			t.Fatalf("delivery to the MessagePack client: frames %x", ops)
		}
		want := []any{[]any{int64(1), map[string]any{}, nil, "news", []any{"hi", int64(7), 1.5, map[string]any{"k": []any{true, nil}}}, []any{}}}
		if got := mpRecords(t, payloads[0]); !reflect.DeepEqual(got, want) {
			t.Errorf("MessagePack client got %#v, want %#v", got, want)
		}
		if jops, jp := serverFrames(t, jfc.output()); !slices.Equal(jops, []byte{0x81}) || jp[0] != rec {
			t.Errorf("JSON client got %x %q, want the record as sent in a text frame", jops, jp)
		}

		fc.mu.Lock()
		fc.out.Reset()
		fc.mu.Unlock()
		c.tick(s.wheel.Now() + s.keepAliveSec) // outbound silence: Ping
		if ops, payloads := serverFrames(t, fc.output()); !slices.Equal(ops, []byte{0x82}) || payloads[0] != "\x02\x91\x06" {
			t.Errorf("keep-alive: %x %q, want the Ping 91 06 in a binary frame", ops, payloads)
		}

		fc.mu.Lock()
		fc.out.Reset()
		fc.mu.Unlock()
		s.CloseConnection("chat", c.entry.ID(), "bye")
		ops, payloads = serverFrames(t, fc.output())
		if len(ops) != 2 || ops[0] != 0x82 || ops[1] != 0x88 {
			t.Fatalf("close: frames %x %q, want a binary SignalR Close then a close frame", ops, payloads)
		}
		if got := mpRecords(t, payloads[0]); !reflect.DeepEqual(got, []any{[]any{int64(7), "bye", true}}) {
			t.Errorf("SignalR Close %#v", got)
		}
	}
}

// TestMessagePackCanned: the canned records of each protocol are
// precompiled, in the right frame type, and a predeclared cause's Close
// is what the protocol writes for it.
func TestMessagePackCanned(t *testing.T) {
	for id := hubproto.ID(0); id < hubproto.NumIDs; id++ {
		p := hubproto.ByID(id)
		op := byte(0x81)
		if p.Binary() {
			op = 0x82
		}
		if ping := pingFrames[id]; ping[0] != op || string(ping[2:]) != string(p.Ping()) {
			t.Errorf("%s Ping frame % x", p.Name(), ping)
		}
		if ok := handshakeOKFrames[id]; ok[0] != op || string(ok[2:]) != "{}\x1e" {
			t.Errorf("%s handshake response frame % x", p.Name(), ok)
		}
		for _, k := range causes {
			if got, want := k.closeFrame(id), dataFrame(id, p.AppendClose(nil, k.text, k.reconnect)); !bytes.Equal(got, want) {
				t.Errorf("%s close frame of %s: % x, want % x", p.Name(), k.label, got, want)
			}
		}
		if k := causeServerClose.withText("other"); k.closeFrame(id)[0] != op || !bytes.Contains(k.closeFrame(id), []byte("other")) {
			t.Errorf("%s close frame for a cause with its own text: % x", p.Name(), k.closeFrame(id))
		}
	}
}

// TestInvalidMessagePackClosesOnlyThatConnection: a record that is not a
// valid MessagePack hub message closes its connection with a SignalR Close
// carrying the decoder's error and WebSocket 1002, is counted as a
// protocol error, reaches no upstream, and the other connections stay.
func TestInvalidMessagePackClosesOnlyThatConnection(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		msg        []byte
	}{
		{"not an array", "invalid hub message", []byte{0x01, 0x07}},
		{"invocation without a target", "invalid hub message", []byte{0x05, 0x94, 0x01, 0x80, 0xc0, 0x90}},
		{"truncated record", "not terminated", []byte{0x05, 0x91}},
		{"length prefix over 5 bytes", "length prefix", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"bytes after the array", "after the message", []byte{0x03, 0x91, 0x06, 0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := &upstreamRecorder{}
			s := newTestServer(t, Config{Upstream: up})
			c, fc, _, _ := openProtoConn(t, s, 0x82, mpHandshake)
			_, other, _, _ := openProtoConn(t, s, 0x82, mpHandshake)
			before := s.M.closed[causeProtocolError.idx].Get()
			c.OnData(clientFrame(0x82, tc.msg))
			ops, payloads := serverFrames(t, fc.output())
			if len(ops) != 2 || ops[0] != 0x82 || ops[1] != 0x88 {
				t.Fatalf("frames %x %q, want a binary SignalR Close then a close frame", ops, payloads)
			}
			rec := mpRecords(t, payloads[0])
			cl, _ := rec[0].([]any)
			if len(cl) != 3 || cl[0] != int64(7) || !strings.Contains(cl[1].(string), tc.want) || cl[2] != false {
				t.Errorf("SignalR Close %#v, want type 7 with an error saying %q", rec, tc.want)
			}
			if code := binary.BigEndian.Uint16([]byte(payloads[1][:2])); code != uint16(CloseProtocolError) {
				t.Errorf("close code %d, want 1002", code)
			}
			if got := s.M.closed[causeProtocolError.idx].Get(); got != before+1 {
				t.Errorf("edgeplane_closed_total{reason=\"protocol_error\"} = %d, want %d", got, before+1)
			}
			if up.invocations() != 0 || other.isShutdown() || s.router.Hub("chat").Len() != 1 {
				t.Errorf("upstream got %d invocations; other connection shut %v; %d registered", up.invocations(), other.isShutdown(), s.router.Hub("chat").Len())
			}
		})
	}
}

// TestMessagePackInvocationUpstream: a MessagePack client's invocation
// reaches the upstream with its arguments as the JSON array the entries
// carry (bin as base64, a timestamp as an RFC 3339 string); arguments JSON
// cannot express are refused with a Completion error in MessagePack;
// without an upstream the Completion error is MessagePack too.
func TestMessagePackInvocationUpstream(t *testing.T) {
	up := &upstreamRecorder{}
	s := newTestServer(t, Config{Upstream: up})
	c, fc, _, _ := openProtoConn(t, s, 0x82, mpHandshake)
	// [1, {}, "1", "Echo", ["hi", 1.5, bin 01 02, ts 1s, {"a": -1}]] and
	// the 5-element form the JS client writes.
	inv := []byte{0x95, 0x01, 0x80, 0xa1, '1', 0xa4, 'E', 'c', 'h', 'o',
		0x95, 0xa2, 'h', 'i', 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xc4, 0x02, 0x01, 0x02,
		0xd6, 0xff, 0, 0, 0, 1, 0x81, 0xa1, 'a', 0xff}
	c.OnData(clientFrame(0x82, append([]byte{byte(len(inv))}, inv...)))
	if up.invocations() != 1 {
		t.Fatalf("%d invocations upstream (output %q)", up.invocations(), fc.output())
	}
	e := up.events[len(up.events)-1]
	if e.Target != "Echo" || e.InvocationID != "1" || string(e.Arguments) != `["hi",1.5,"AQI=","1970-01-01T00:00:01Z",{"a":-1}]` {
		t.Errorf("upstream invocation %q %q %s", e.Target, e.InvocationID, e.Arguments)
	}
	// An extension JSON has no form for: refused, nothing upstream.
	bad := []byte{0x95, 0x01, 0x80, 0xa1, '2', 0xa1, 'X', 0x91, 0xd4, 0x05, 0x00}
	c.OnData(clientFrame(0x82, append([]byte{byte(len(bad))}, bad...)))
	ops, payloads := serverFrames(t, fc.output())
	if up.invocations() != 1 || len(ops) != 1 || ops[0] != 0x82 {
		t.Fatalf("unconvertible arguments: %d invocations, frames %x", up.invocations(), ops)
	}
	comp := mpRecords(t, payloads[0])[0].([]any)
	if comp[0] != int64(3) || comp[2] != "2" || comp[3] != int64(1) || !strings.Contains(comp[4].(string), "no JSON form") {
		t.Errorf("Completion %#v, want an error for invocation 2", comp)
	}
	if fc.isShutdown() {
		t.Error("arguments the upstream cannot take closed the connection")
	}

	// No upstream: the Completion error is in the client's protocol.
	s2 := newTestServer(t, Config{})
	c2, fc2, _, _ := openProtoConn(t, s2, 0x82, mpHandshake)
	c2.OnData(clientFrame(0x82, append([]byte{byte(len(inv))}, inv...)))
	ops, payloads = serverFrames(t, fc2.output())
	if len(ops) != 1 || ops[0] != 0x82 {
		t.Fatalf("no upstream: frames %x %q", ops, payloads)
	}
	if comp := mpRecords(t, payloads[0])[0].([]any); comp[0] != int64(3) || comp[3] != int64(1) || comp[4] != "no upstream is configured" {
		t.Errorf("no upstream: %#v", comp)
	}
}

// TestProtocolsOffered: Config.Protocols limits what the handshake
// accepts, and negotiate advertises Binary only with MessagePack on.
func TestProtocolsOffered(t *testing.T) {
	formats := func(s *Server) []string {
		t.Helper()
		fc := &fakeConn{}
		sess := s.OnOpen(fc)
		sess.OnData([]byte("POST /chat/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(fc.output())), nil)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			AvailableTransports []struct {
				Transport       string
				TransferFormats []string
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.AvailableTransports) == 0 || body.AvailableTransports[0].Transport != "WebSockets" {
			t.Fatalf("negotiate body: %v %+v", err, body)
		}
		return body.AvailableTransports[0].TransferFormats
	}
	if got := formats(newTestServer(t, Config{})); !slices.Equal(got, []string{"Text", "Binary"}) {
		t.Errorf("default: transferFormats %q", got)
	}
	jsonOnly := newTestServer(t, Config{Protocols: []string{"json"}})
	if got := formats(jsonOnly); !slices.Equal(got, []string{"Text"}) {
		t.Errorf("json only: transferFormats %q", got)
	}
	_, fc, ops, payloads := openProtoConn(t, jsonOnly, 0x81, mpHandshake)
	if len(ops) != 2 || ops[0] != 0x81 || payloads[0] != `{"error":"The protocol 'messagepack' is not supported."}`+"\x1e" || ops[1] != 0x88 || !fc.isShutdown() {
		t.Errorf("messagepack handshake with json only: %x %q", ops, payloads)
	}
	if got := formats(newTestServer(t, Config{Protocols: []string{"messagepack"}})); !slices.Equal(got, []string{"Binary"}) {
		t.Errorf("messagepack only: transferFormats %q", got)
	}
	if _, err := New(Config{Protocols: []string{"xml"}}, newTestServer(t, Config{}).router); err == nil {
		t.Error("an unknown protocol name was accepted")
	}
}

// TestProtocolBits: the protocol costs a connection nothing (TestConnSize:
// 168 bytes before and after): it sits in two bits of the flags word,
// beside the close cause and the flags, and none disturbs the others.
func TestProtocolBits(t *testing.T) {
	var c Conn
	c.flags.Or(flRegistered | flGone)
	c.setProto(hubproto.IDMessagePack)
	c.setCause(causeTimeout.idx)
	if c.proto() != hubproto.IDMessagePack || c.cause() != causeTimeout.idx || !c.has(flRegistered|flGone) || c.has(flIPCounted|flClaiming) {
		t.Fatalf("flags %#x: protocol %v cause %d", c.flags.Load(), c.proto(), c.cause())
	}
	c.setCause(0)
	if c.proto() != hubproto.IDMessagePack {
		t.Fatalf("clearing the cause changed the protocol: flags %#x", c.flags.Load())
	}
	if hubproto.NumIDs > flProtoMask>>flProtoShift+1 || flProtoMask&flCauseMask != 0 {
		t.Fatalf("%d protocols do not fit the protocol bits, or they overlap the cause", hubproto.NumIDs)
	}
}
