package conn

import "testing"

// TestServiceRelayBinaryNotUTF8: a relayed client speaking MessagePack
// sends binary messages that are not UTF-8; after its handshake they go
// to the Service as they are, and the connection stays open.
func TestServiceRelayBinaryNotUTF8(t *testing.T) {
	svc := &recService{answer: true}
	s := newTestServer(t, Config{Service: svc, AccessKey: testKey})
	tok := clientToken(t, map[string]any{"aud": "https://edge.example.com/client/?hub=chat"})
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	c := sess.(*Conn)
	defer sess.OnClose(nil)
	sess.OnData([]byte(upgradeReq("/client/?hub=chat&access_token="+tok, "")))
	sess.OnData(clientFrame(0x82, []byte(`{"protocol":"messagepack","version":1}`+"\x1e")))
	if c.state.Load() != stOpen || !c.RelayBinary() {
		t.Fatalf("relayed MessagePack client: state %d, binary %v", c.state.Load(), c.RelayBinary())
	}
	rec := "\x02\x91\x06" // a Ping record: 0x91 is not UTF-8
	sess.OnData(clientFrame(0x82, []byte(rec)))
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if c.state.Load() != stOpen || fc.isShutdown() || len(svc.data) != 1 || svc.data[0] != rec {
		t.Fatalf("binary record: state %d, shut down %v, relayed %q", c.state.Load(), fc.isShutdown(), svc.data)
	}
}

// TestServiceRelaySendOutcome: RelaySend queues the app's frame and says
// so; a frame the socket's queue cannot take is refused and closes the
// client as a slow client.
func TestServiceRelaySendOutcome(t *testing.T) {
	svc := &recService{answer: true}
	s := newTestServer(t, Config{Service: svc, AccessKey: testKey})
	tok := clientToken(t, map[string]any{"aud": "https://edge.example.com/client/?hub=chat"})
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	c := sess.(*Conn)
	defer sess.OnClose(nil)
	sess.OnData([]byte(upgradeReq("/client/?hub=chat&access_token="+tok, "")))
	sess.OnData(clientFrame(0x81, testHandshake))
	if c.state.Load() != stOpen {
		t.Fatalf("relay not open: state %d", c.state.Load())
	}
	frame := []byte("\x81\x0b{\"type\":6}\x1e")
	if !c.RelaySend(frame) {
		t.Fatal("RelaySend of a frame the socket took: false")
	}
	if _, payloads := serverFrames(t, afterHTTP(t, fc.output())); len(payloads) != 2 || payloads[1] != "{\"type\":6}\x1e" {
		t.Fatalf("frames sent: %q", payloads)
	}
	fc.mu.Lock()
	fc.limit = fc.out.Len() + 1
	fc.mu.Unlock()
	if c.RelaySend(frame) {
		t.Fatal("RelaySend of a frame the socket's queue refused: true")
	}
	if c.state.Load() != stClosed || s.M.closed[causeSlowClient.idx].Get() != 1 {
		t.Fatalf("after a full queue: state %d, slow_client closes %d", c.state.Load(), s.M.closed[causeSlowClient.idx].Get())
	}
}
