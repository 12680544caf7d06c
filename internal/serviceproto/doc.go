// Package serviceproto is the Azure SignalR Service protocol codec: the
// messages an ASP.NET Core app with Microsoft.Azure.SignalR (the SDK)
// and the service exchange over the app's server connections
// (/server/?hub=…), byte for byte as the SDK's ServiceProtocol writes
// and reads them. It holds no connection state and makes no policy
// decision (who to route a client to, when to ping, when to close): that
// is the service package's, which uses it.
//
// On the wire, a server connection is a stream of binary WebSocket data
// in which each message is a VarInt length prefix and a MessagePack
// array whose first item is the message's Type. WebSocket message
// boundaries mean nothing, so Splitter cuts the stream into message
// bodies whatever the frames were. Parse decodes a body into one of this
// package's message structs (a Message); Message.AppendBody and
// AppendFrame encode one. Every message type the SDK has (1 to 40) is
// here; a type it does not know is returned as *Unknown, which callers
// ignore, as the SDK does.
//
// # Layouts
//
// Messages have grown over the SDK's versions by trailing items. The
// writers produce the current layout (shared/vectors'
// asrs-service-protocol.json "TestData", byte for byte); Parse also
// accepts every older layout ("TestCompatibilityData") and skips items a
// newer layout adds. Most messages end in an extension map (Ext: tracing
// id, TTL, hub protocol, filter, data type, partial flag); a writer
// writes only the keys its message type carries (Type.Keys), as the
// SDK's older readers misparse a key they do not expect. Integers are
// written as MessagePack-CSharp writes them (the shortest form, unsigned
// formats for non-negative values); strings the SDK may write as nil are
// NullStrings.
//
// # Memory
//
// Parse copies strings, so ids and group names may be kept; payloads
// ([]byte fields) alias the body and, from a Splitter, are valid only
// during its callback. Counts read from the input never size an
// allocation beyond the input's length, and a Splitter holds at most
// MaxMessageBytes of an incomplete message. Errors wrap ErrMalformed,
// ErrLengthPrefix or ErrTooLarge and name the type and field.
//
//	var s serviceproto.Splitter
//	err := s.Feed(wsPayload, func(body []byte) error {
//		m, err := serviceproto.Parse(body)
//		if err != nil {
//			return err // close the server connection
//		}
//		switch m := m.(type) {
//		case *serviceproto.ConnectionData:
//			sendToClient(m.ConnectionID, m.Payload) // copy or send before returning
//		case *serviceproto.Ping:
//		}
//		return nil
//	})
//	out := serviceproto.AppendFrame(nil, &serviceproto.HandshakeResponse{})
package serviceproto
