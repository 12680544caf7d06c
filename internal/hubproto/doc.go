// Package hubproto holds the SignalR hub protocol primitives: the
// handshake (always JSON text ended by 0x1e, whatever the protocol), the
// message types, and per protocol the framing of records inside a
// WebSocket message, the parse of a client record and the encoding of
// each message a server writes. It has no connection state and makes no
// policy decisions (limits, keep-alive, when to close): that is conn/'s.
//
// A Protocol is one encoding. JSON and MessagePack (binary frames, VarInt
// length-prefixed records, one msgpack array per message, byte for byte as
// ASP.NET Core writes them) implement it, and Lookup offers both; each has
// a small ID (IDJSON, IDMessagePack) for tables kept per protocol and for
// the few bits a connection keeps. Callers change nothing but the choice
// of frame type (Protocol.Binary; wsframe.TextFrame or
// wsframe.BinaryFrame).
//
// Conversions, each run once per message and never per recipient
// (transcode.go): JSONRecordsToMessagePack turns JSON records (REST,
// upstream, an ASP.NET backplane message without a messagepack entry) into
// MessagePack records for MessagePack recipients; JSONToMessagePack does
// it for one JSON value; MessagePackToJSON turns a MessagePack client's
// arguments into the JSON the upstream's entries carry.
//
// Streams and client results: Parse reads an invocation's streamIds
// (Message.StreamIDs), a StreamItem's item and a Completion's result
// (Message.Arguments) or error (Message.Error, HasError); the caller's
// StreamInvocation and CancelInvocation have appenders on the concrete
// protocols (streams.go).
//
// Stateful reconnect: ParseHandshake accepts StatefulReconnectVersion (2)
// besides a protocol's own version, Parse reads Ack's and Sequence's
// sequenceId, and MessageType.IsTrackable tells which messages are
// numbered; the sequence numbers themselves, buffering and replay are
// conn/'s.
//
// MessagePack is written on github.com/tinylib/msgp rather than
// github.com/vmihailenco/msgpack/v5. BenchmarkMessagePackLibraries
// measures both on what a hub protocol does per record: used at its
// lowest level (Decoder/Encoder methods, no reflection) vmihailenco
// allocates as little (3 allocations to parse an Invocation, the strings
// kept and the arguments copied; 0 to write one), but it reads through an
// io.Reader, and parsing took 380-455 ns against 100-180 ns for msgp's
// in-place Read…Bytes functions, which also validate more (headers,
// streamIds). msgp is already the backplane codec's library
// (backplane/wire), so the node carries one MessagePack library.
//
//	h, rest, err := hubproto.ParseHandshake(msg)
//	if err != nil {
//		resp := hubproto.AppendHandshakeError(nil, err.Error()) // ASP.NET's words
//	}
//	send(hubproto.HandshakeOK)
//	err = hubproto.JSON.Split(rest, func(rec []byte) error {
//		if hubproto.JSON.IsPing(rec) {
//			return nil // the most frequent record, not decoded
//		}
//		m, err := hubproto.JSON.Parse(rec)
//		...
//	})
//	rec, err := hubproto.JSON.AppendInvocation(nil, "", "Send", []byte(`["hi"]`))
//
// # Arguments
//
// Arguments, stream items and completion results are carried as raw
// bytes already encoded in the protocol that parsed or will write them:
// for JSON the array or value exactly as sent (Message.Arguments) or as
// given (Append*, which checks, compacts and HTML-escapes it the way
// encoding/json marshals a json.RawMessage). hubproto never decodes them
// into Go values and never converts them from one protocol to another:
// edgeplane relays arguments without looking inside, and a conversion
// (JSON from the REST API or an upstream to MessagePack for a client)
// may be lossy and is its own step (transcode.go), done once per message
// and not per recipient. For MessagePack, Message.Arguments is the
// msgpack array's bytes.
//
// # Performance
//
// Records written often are encoded once (Ping, HandshakeOK). IsPing
// recognises a keep-alive without decoding. The JSON writers are
// hand-written appenders and allocate nothing when dst has room; they
// produce byte for byte what encoding/json produced for the same messages.
// Parse uses encoding/json, so its behaviour (case-insensitive property
// names, unknown properties ignored) is unchanged; call it on the concrete
// JSON value in hot paths so that nothing escapes through the interface.
package hubproto
