package bench

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgeplane/edgeplane/internal/hubproto"
)

// Protocol helpers of the load client: HTTP requests, and the bench's own
// arguments. WebSocket frames are internal/wsframe's, SignalR records
// internal/hubproto's.

// maxServerFrame bounds a server frame the load client accepts.
const maxServerFrame = 64 << 20

// Sentinel errors of the client-side protocol parsers.
var (
	// ErrIncomplete: more bytes are needed; keep what you have and read again.
	ErrIncomplete = errors.New("bench: incomplete")
	// ErrBadResponse: the server answered something the client cannot use.
	ErrBadResponse = errors.New("bench: bad response")
	// ErrOverCapacity: the server answered 503 (admission refused).
	ErrOverCapacity = errors.New("bench: server over capacity (503)")
)

// The handshakes the loader sends: JSON, and MessagePack for the
// connections that speak it (LoaderConfig.MessagePack).
var (
	handshakeRequest   = hubproto.AppendHandshakeRequest(nil, hubproto.JSON)
	handshakeRequestMP = hubproto.AppendHandshakeRequest(nil, hubproto.MessagePack)
	// Version 2: stateful reconnect (LoaderConfig.Stateful).
	handshakeRequestV2   = []byte(`{"protocol":"json","version":2}` + "\x1e")
	handshakeRequestMPV2 = []byte(`{"protocol":"messagepack","version":2}` + "\x1e")
)

// NegotiateRequest builds the POST /{hub}/negotiate request.
func NegotiateRequest(host, hub string) []byte {
	return []byte("POST /" + hub + "/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: " + host +
		"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

// NegotiateRequestStateful is NegotiateRequest asking for stateful
// reconnect (useStatefulReconnect=true, as withStatefulReconnect does).
func NegotiateRequestStateful(host, hub string) []byte {
	return []byte("POST /" + hub + "/negotiate?negotiateVersion=1&useStatefulReconnect=true HTTP/1.1\r\nHost: " + host +
		"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

// UpgradeRequest builds the WebSocket upgrade GET /{hub}?id=token (no id
// when token is empty: skipNegotiation).
func UpgradeRequest(host, hub, token string) []byte {
	var key [16]byte
	_, _ = rand.Read(key[:])
	path := "/" + hub
	if token != "" {
		path += "?id=" + token
	}
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
		base64.StdEncoding.EncodeToString(key[:]) + "\r\n\r\n")
}

// HTTPResponse is a parsed HTTP/1.1 response head.
type HTTPResponse struct {
	Status        int
	ContentLength int // -1 when absent
	RetryAfter    string
	HeaderLen     int // bytes up to and including the blank line
}

// ParseResponseHead parses the response head in b. It returns ErrIncomplete
// until the blank line has arrived.
func ParseResponseHead(b []byte) (HTTPResponse, error) {
	r := HTTPResponse{ContentLength: -1}
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > 16<<10 {
			return r, fmt.Errorf("%w: response head over 16 KiB", ErrBadResponse)
		}
		return r, ErrIncomplete
	}
	r.HeaderLen = end + 4
	lines := bytes.Split(b[:end], []byte("\r\n"))
	status := lines[0]
	if !bytes.HasPrefix(status, []byte("HTTP/1.")) || len(status) < 12 {
		return r, fmt.Errorf("%w: status line %q", ErrBadResponse, status)
	}
	code, err := strconv.Atoi(string(status[9:12]))
	if err != nil {
		return r, fmt.Errorf("%w: status line %q", ErrBadResponse, status)
	}
	r.Status = code
	for _, l := range lines[1:] {
		i := bytes.IndexByte(l, ':')
		if i < 0 {
			continue
		}
		name, val := l[:i], bytes.TrimSpace(l[i+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.Atoi(string(val))
			if err != nil || n < 0 {
				return r, fmt.Errorf("%w: content-length %q", ErrBadResponse, val)
			}
			r.ContentLength = n
		case bytes.EqualFold(name, []byte("Retry-After")):
			r.RetryAfter = string(val)
		}
	}
	return r, nil
}

// BenchArgs extracts the first two integers of "arguments": the sequence
// number and the send timestamp (Unix nanoseconds) the fanout publisher puts
// there. ok is false when the record does not carry them.
func BenchArgs(rec []byte) (seq int64, sentNano int64, ok bool) {
	i := bytes.Index(rec, []byte(`"arguments"`))
	if i < 0 {
		return 0, 0, false
	}
	b := rec[i+len(`"arguments"`):]
	j := bytes.IndexByte(b, '[')
	if j < 0 {
		return 0, 0, false
	}
	b = b[j+1:]
	var vals [2]int64
	for k := 0; k < 2; k++ {
		for len(b) > 0 && (b[0] == ' ' || b[0] == ',') {
			b = b[1:]
		}
		n, m := 0, int64(0)
		for n < len(b) && b[n] >= '0' && b[n] <= '9' {
			m = m*10 + int64(b[n]-'0')
			n++
		}
		if n == 0 {
			return 0, 0, false
		}
		vals[k] = m
		b = b[n:]
	}
	return vals[0], vals[1], true
}

// InvocationArgs builds the JSON arguments array the fanout publisher sends:
// [seq, sentUnixNano, "padding"] with padding chosen so that the whole record
// the server sends ({"type":1,"target":target,"arguments":[...]}\x1e) is
// about size bytes.
func InvocationArgs(target string, seq, sentNano int64, size int) string {
	head := `{"type":1,"target":"` + target + `","arguments":[`
	nums := strconv.FormatInt(seq, 10) + "," + strconv.FormatInt(sentNano, 10) + `,"`
	fixed := len(head) + len(nums) + len(`"]}`) + 1
	pad := size - fixed
	if pad < 0 {
		pad = 0
	}
	return "[" + nums + string(bytes.Repeat([]byte("x"), pad)) + `"]`
}

// BenchArgsMessagePack is BenchArgs for a MessagePack Invocation record
// (without its length prefix): the first two arguments, when they are
// integers.
func BenchArgsMessagePack(rec []byte) (seq int64, sentNano int64, ok bool) {
	n, b, err := msgp.ReadArrayHeaderBytes(rec)
	if err != nil || n < 5 {
		return 0, 0, false
	}
	for i := 0; i < 4; i++ { // type, headers, invocation id, target
		if b, err = msgp.Skip(b); err != nil {
			return 0, 0, false
		}
	}
	if n, b, err = msgp.ReadArrayHeaderBytes(b); err != nil || n < 2 {
		return 0, 0, false
	}
	if seq, b, err = msgp.ReadInt64Bytes(b); err != nil {
		return 0, 0, false
	}
	if sentNano, _, err = msgp.ReadInt64Bytes(b); err != nil {
		return 0, 0, false
	}
	return seq, sentNano, true
}
