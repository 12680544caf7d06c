package conn

import "testing"

// relayedClient opens a client on /client/ of a node in service mode
// (svc the Service) and sends handshake: the node, its socket and the
// connection.
func relayedClient(t *testing.T, svc *recService, handshake []byte) (*Server, *fakeConn, *Conn) {
	t.Helper()
	s := newTestServer(t, Config{Service: svc, AccessKey: testKey})
	tok := clientToken(t, map[string]any{"aud": "https://edge.example.com/client/?hub=chat"})
	fc := &fakeConn{}
	c := s.OnOpen(fc).(*Conn)
	c.OnData([]byte(upgradeReq("/client/?hub=chat&access_token="+tok, "")))
	c.OnData(handshake)
	return s, fc, c
}

// TestServiceRelayBinaryNotUTF8: a relayed client speaking MessagePack
// sends binary messages that are not UTF-8; after its handshake they go
// to the Service as they are, and the connection stays open.
func TestServiceRelayBinaryNotUTF8(t *testing.T) {
	svc := &recService{answer: true}
	_, fc, c := relayedClient(t, svc, clientFrame(0x82, []byte(`{"protocol":"messagepack","version":1}`+"\x1e")))
	sess := c
	defer sess.OnClose(nil)
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
	s, fc, c := relayedClient(t, svc, clientFrame(0x81, testHandshake))
	sess := c
	defer sess.OnClose(nil)
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
