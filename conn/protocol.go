package conn

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// The hub protocol of a connection: chosen at the SignalR handshake, kept
// in two bits of Conn.flags (no extra byte per connection), and used for
// everything the connection sends and reads from then on: records split
// and parsed with it, frames binary for MessagePack, text for JSON, and
// the canned records (handshake response, Ping, Close) precompiled per
// protocol.

const (
	flProtoShift = 16 // bits 16-17 of Conn.flags: the hubproto.ID
	flProtoMask  = 0x3 << flProtoShift
)

// proto is the connection's hub protocol (JSON until the handshake).
func (c *Conn) proto() hubproto.ID {
	return hubproto.ID(c.flags.Load() & flProtoMask >> flProtoShift)
}

// setProto records the protocol of the handshake, before the connection
// joins its hub: deliveries read it from then on.
func (c *Conn) setProto(id hubproto.ID) {
	c.flags.Or(uint32(id) << flProtoShift & flProtoMask)
}

// dataFrame is rec in the data frame its protocol travels in: binary for
// MessagePack, text for JSON.
func dataFrame(id hubproto.ID, rec []byte) []byte {
	if hubproto.ByID(id).Binary() {
		return wsframe.BinaryFrame(rec)
	}
	return wsframe.TextFrame(rec)
}

// Records precompiled per protocol. Shared: never modify them.
var (
	// handshakeOKFrames is the handshake response {}␞ in the protocol's
	// frame type: ASP.NET Core switches the transfer format before it
	// writes the response, so a MessagePack client gets it in a binary
	// frame (the clients accept either).
	handshakeOKFrames [hubproto.NumIDs][]byte
	// pingFrames is the keep-alive Ping of each protocol.
	pingFrames [hubproto.NumIDs][]byte
)

func init() {
	for id := hubproto.ID(0); id < hubproto.NumIDs; id++ {
		handshakeOKFrames[id] = dataFrame(id, hubproto.HandshakeOK)
		pingFrames[id] = dataFrame(id, hubproto.ByID(id).Ping())
	}
	for _, k := range causes {
		k.closeFrames = new([hubproto.NumIDs][]byte)
		for id := hubproto.ID(0); id < hubproto.NumIDs; id++ {
			k.closeFrames[id] = closeRecordFrame(k, id)
		}
	}
}

// closeRecordFrame is the SignalR Close message for k in protocol id, in
// its data frame.
func closeRecordFrame(k *cause, id hubproto.ID) []byte {
	return dataFrame(id, hubproto.ByID(id).AppendClose(nil, k.text, k.reconnect))
}

// closeFrame is closeRecordFrame, precompiled for the predeclared causes.
func (k *cause) closeFrame(id hubproto.ID) []byte {
	if k.closeFrames != nil {
		return k.closeFrames[id]
	}
	return closeRecordFrame(k, id)
}

// protocolSet is the hub protocols a server offers clients
// (Config.Protocols).
type protocolSet [hubproto.NumIDs]bool

// parseProtocols reads Config.Protocols; none means every protocol.
func parseProtocols(names []string) (protocolSet, error) {
	var set protocolSet
	if len(names) == 0 {
		for id := range set {
			set[id] = true
		}
		return set, nil
	}
	for _, name := range names {
		p := hubproto.Lookup(name)
		if p == nil {
			return set, fmt.Errorf("conn: unknown hub protocol %q (json, messagepack)", name)
		}
		set[p.ID()] = true
	}
	return set, nil
}

// transferFormats is what negotiate advertises for the WebSockets
// transport: Text when a text protocol is offered, Binary when a binary
// one is (a client picks a transport only if it lists its protocol's
// format).
func (set protocolSet) transferFormats() []string {
	var text, binary bool
	for id, on := range set {
		if on {
			b := hubproto.ByID(hubproto.ID(id)).Binary()
			text, binary = text || !b, binary || b
		}
	}
	var formats []string
	if text {
		formats = append(formats, "Text")
	}
	if binary {
		formats = append(formats, "Binary")
	}
	return formats
}

// handshake reads the SignalR handshake request at the start of msg, the
// first message: JSON text ended by 0x1e, in a text or binary frame
// whatever the protocol. On success the connection speaks the protocol it
// named and is registered; it returns the records sent after the
// request in the same message. ok is false when the handshake was
// answered with an error (or the connection closed) and nothing more is
// to be read.
func (c *Conn) handshake(op wsframe.OpCode, msg []byte) (rest []byte, ok bool, err error) {
	req := msg
	if i := bytes.IndexByte(msg, hubproto.RecordSeparator); i >= 0 {
		req = msg[:i+1]
	}
	if !utf8.Valid(req) {
		return nil, false, invalidUTF8(op)
	}
	h, rest, err := hubproto.ParseHandshake(msg)
	if err != nil {
		c.handshakeFailed(err.Error())
		return nil, false, nil
	}
	if !c.srv.protocols[h.Protocol.ID()] {
		// Worded as for a protocol not known at all.
		c.handshakeFailed("The protocol '" + h.Protocol.Name() + "' is not supported.")
		return nil, false, nil
	}
	c.setProto(h.Protocol.ID())
	if h.Version < hubproto.StatefulReconnectVersion {
		// Negotiated stateful reconnect, then asked for a version without
		// Ack and Sequence: a plain connection (as ASP.NET Core's
		// DisableReconnect).
		c.flags.And(^flStateful)
	}
	if !c.register() {
		return nil, false, nil
	}
	return rest, true, nil
}

// records handles the records of one complete data message, in the
// connection's protocol.
func (c *Conn) records(op wsframe.OpCode, msg []byte) error {
	if c.proto() == hubproto.IDMessagePack {
		// Binary records; a text frame must still be UTF-8 (RFC 6455).
		if op == wsframe.OpText && !utf8.Valid(msg) {
			return wsframe.ErrInvalidUTF8
		}
		return hubproto.MessagePack.Split(msg, c.onMessagePackRecord)
	}
	// Binary frames too: the JSON hub protocol is text whatever the frame
	// type, and what a client sends goes on to the upstream stream and
	// into records other clients receive in text frames.
	if !utf8.Valid(msg) {
		return invalidUTF8(op)
	}
	return hubproto.JSON.Split(msg, c.onRecord)
}

func invalidUTF8(op wsframe.OpCode) error {
	if op == wsframe.OpBinary {
		return errBinaryUTF8
	}
	return wsframe.ErrInvalidUTF8
}

// onMessagePackRecord handles one MessagePack record (without its length
// prefix). A record that does not decode closes the connection (1002, the
// SignalR Close carrying the decoder's error).
func (c *Conn) onMessagePackRecord(rec []byte) error {
	if err := c.recordIn(); err != nil {
		return err
	}
	if hubproto.MessagePack.IsPing(rec) {
		return nil
	}
	m, err := hubproto.MessagePack.Parse(rec)
	if err != nil {
		return err
	}
	return c.onHubMessage(&m, rec)
}

// upstreamArguments are an invocation's arguments as the upstream's
// entries carry them, a JSON array: as sent by a JSON client, converted
// once from a MessagePack client's (hubproto.MessagePackToJSON: bin as
// base64, timestamps as RFC 3339 strings; ErrNoJSON for what JSON cannot
// say).
func (c *Conn) upstreamArguments(m *hubproto.Message) ([]byte, error) {
	if c.proto() != hubproto.IDMessagePack || len(m.Arguments) == 0 {
		return m.Arguments, nil
	}
	js, err := hubproto.MessagePackToJSON(nil, m.Arguments)
	if err != nil {
		return nil, fmt.Errorf("arguments of %s cannot be forwarded: %w", m.Target, err)
	}
	return js, nil
}

// sendCompletionError sends a Completion error the connection layer
// writes itself, in the connection's protocol.
func (c *Conn) sendCompletionError(invocationID, text string) {
	id := c.proto()
	c.sendTrackable(dataFrame(id, hubproto.ByID(id).AppendCompletionError(nil, invocationID, text)))
}
