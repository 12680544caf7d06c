// Package sse holds the Server-Sent Events wire primitives the SignalR
// ServerSentEvents transport uses (TransportProtocols.md in
// dotnet/aspnetcore; the HTML living standard's event stream): the
// comment line a stream opens with, and unnamed events whose data lines
// carry a message's bytes. Policy (which connection gets what, when the
// stream ends) is conn's.
//
//	w.Write(sse.Preamble)
//	w.Write(sse.AppendEvent(nil, []byte(`{"type":6}`+"\x1e")))
//	// data: {"type":6}␞\r\n\r\n
package sse
