// Package wire is the MessagePack codec of the ASP.NET Core SignalR Redis
// backplane (Microsoft.AspNetCore.SignalR.StackExchangeRedis RedisProtocol).
//
// Three payloads travel on the backplane channels:
//
//	invocation    [ [excludedConnectionIds...], { protocolName: bin, ... } ]
//	group command [ int id, str serverName, int action, str group, str connectionId ]
//	ack           [ int id ]
//
// Encoders append to a caller's buffer. Decoders read with tinylib/msgp's
// zero-copy readers: the JSON record and the strings they return alias the
// input, which therefore must not be modified while they are in use. Arrays
// longer than expected are accepted and their extra items skipped, as the
// .NET reader does, so that newer senders remain readable.
//
//	b := wire.AppendInvocation(nil, nil, record)   // record ends in 0x1e
//	excluded, json, err := wire.ReadInvocation(b, nil)
package wire
