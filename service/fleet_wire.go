package service

import (
	"errors"
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// The relay's wire format between two nodes (fleet.go): one batch per
// PUBLISH on the receiving node's relay channel, a MessagePack array
// [from, [message...]], each message [op, hub, connId, payload, text,
// aux, flag]:
//
//	open    client node → host node: payload the OpenConnection and the
//	        handshake's ConnectionData, framed for the server connection;
//	        text the sticky server (asrs.s.sn), aux its mode, flag binary
//	data    either way: payload the client's message (to the app), or the
//	        app's ConnectionData payload (to the client)
//	close   either way: text the reason; flag: the client may reconnect
//	refuse  host node → client node: the host cannot take the client;
//	        text why (the client's handshake error)
type relayOp uint8

const (
	opOpen relayOp = iota + 1
	opData
	opClose
	opRefuse
	relayOps
)

func (op relayOp) String() string {
	switch op {
	case opOpen:
		return "open"
	case opData:
		return "data"
	case opClose:
		return "close"
	case opRefuse:
		return "refuse"
	}
	return "unknown"
}

// relayMsg is one decoded message. Its payload aliases the batch.
type relayMsg struct {
	op        relayOp
	hub, conn string
	payload   []byte
	text, aux string
	flag      bool
}

// errRelayMalformed: a batch that does not decode (dropped, counted).
var errRelayMalformed = errors.New("malformed relay batch")

func appendRelayMsg(b []byte, m *relayMsg) []byte {
	b = msgp.AppendArrayHeader(b, 7)
	b = msgp.AppendUint8(b, uint8(m.op))
	b = msgp.AppendString(b, m.hub)
	b = msgp.AppendString(b, m.conn)
	b = msgp.AppendBytes(b, m.payload)
	b = msgp.AppendString(b, m.text)
	b = msgp.AppendString(b, m.aux)
	return msgp.AppendBool(b, m.flag)
}

// appendBatchHeader starts a batch of n messages from node from.
func appendBatchHeader(b []byte, from string, n int) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	b = msgp.AppendString(b, from)
	return msgp.AppendArrayHeader(b, uint32(n))
}

// readBatch decodes a batch and calls fn for each message in order.
func readBatch(b []byte, fn func(from string, m *relayMsg)) error {
	bad := func(what string, err error) error { return fmt.Errorf("%w: %s: %w", errRelayMalformed, what, err) }
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n != 2 {
		return bad("batch", errors.Join(err, fmt.Errorf("%d items", n)))
	}
	from, b, err := msgp.ReadStringBytes(b)
	if err != nil {
		return bad("from", err)
	}
	count, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return bad("messages", err)
	}
	var m relayMsg
	for i := uint32(0); i < count; i++ {
		var k uint32
		if k, b, err = msgp.ReadArrayHeaderBytes(b); err != nil || k < 7 {
			return bad("message", errors.Join(err, fmt.Errorf("%d items", k)))
		}
		var op uint8
		if op, b, err = msgp.ReadUint8Bytes(b); err != nil || op == 0 || op >= uint8(relayOps) {
			return bad("op", errors.Join(err, fmt.Errorf("op %d", op)))
		}
		m.op = relayOp(op)
		if m.hub, b, err = msgp.ReadStringBytes(b); err != nil {
			return bad("hub", err)
		}
		if m.conn, b, err = msgp.ReadStringBytes(b); err != nil {
			return bad("connection id", err)
		}
		if m.payload, b, err = msgp.ReadBytesZC(b); err != nil {
			return bad("payload", err)
		}
		if m.text, b, err = msgp.ReadStringBytes(b); err != nil {
			return bad("text", err)
		}
		if m.aux, b, err = msgp.ReadStringBytes(b); err != nil {
			return bad("aux", err)
		}
		if m.flag, b, err = msgp.ReadBoolBytes(b); err != nil {
			return bad("flag", err)
		}
		for ; k > 7; k-- {
			if b, err = msgp.Skip(b); err != nil {
				return bad("extra item", err)
			}
		}
		fn(from, &m)
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errRelayMalformed, len(b))
	}
	return nil
}
