package sse

import "bytes"

// Preamble is the first thing written on a stream: a comment line, as
// ASP.NET Core writes it (some browsers deliver nothing until the first
// bytes arrive).
var Preamble = []byte(":\r\n")

// AppendEvent appends payload to dst as one unnamed event: each line of
// payload in a "data: " line, then a blank line. A payload's "\r\n" or
// "\n" line ends are the event's line breaks (a reader joins data lines
// with "\n"); one trailing line end is dropped, as ASP.NET Core's
// formatter does, since the blank line ends the event.
func AppendEvent(dst, payload []byte) []byte {
	if n := len(payload); n > 0 && payload[n-1] == '\n' {
		payload = payload[:n-1]
		if n > 1 && payload[n-2] == '\r' {
			payload = payload[:n-2]
		}
	}
	for {
		line, rest, more := bytes.Cut(payload, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		dst = append(dst, "data: "...)
		dst = append(dst, line...)
		dst = append(dst, '\r', '\n')
		if !more {
			break
		}
		payload = rest
	}
	return append(dst, '\r', '\n')
}

// EventLen is the length of AppendEvent(nil, payload).
func EventLen(payload []byte) int { return len(AppendEvent(nil, payload)) }
