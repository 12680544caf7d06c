// Package wsframe holds the RFC 6455 primitives edgeplane's WebSocket code
// is built from, in the manner of gobwas/ws (primitives) beside wsutil
// (policy): opcodes and close codes, the non-blocking parse of a client
// frame header, unmasking, server frames (text, binary, close, and
// precompiled control frames), close frame bodies, and the client side
// the load generator needs (masked frames, whole-frame parse).
//
// The package has no state and makes no policy decisions: what to do with
// a frame (limits on whole messages, fragmentation state, keep-alive,
// which close code a connection ends with) belongs to the caller, conn/.
// Violations it can see are returned as *ProtocolError values that carry
// the close code to send; they are the sentinels below, so the error path
// allocates nothing and callers branch with errors.Is or read the code
// with errors.As.
//
// Server side, reading one client frame already in b:
//
//	h, n, err := wsframe.ParseHeader(b, maxPayload)
//	if err != nil { /* close with err.(*wsframe.ProtocolError).Code */ }
//	if n == 0 || len(b) < n+int(h.Length) { /* wait for more bytes */ }
//	payload := b[n : n+int(h.Length)]
//	wsframe.Unmask(payload, h.Mask)
//
// Writing: frames are appended to a caller's buffer; a frame shared by
// many recipients (TextFrame, the Compiled* frames) must never be
// modified.
//
//	frame := wsframe.TextFrame(record)                    // encode once, send to many
//	final := wsframe.AppendCloseFrame(nil, wsframe.CloseNormal, "bye")
//
// Client side (bench/): wsframe.AppendClientFrame masks with a random key,
// wsframe.ParseFrame reads one whole frame of either direction.
package wsframe
