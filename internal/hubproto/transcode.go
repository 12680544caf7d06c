package hubproto

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
)

// JSONToMessagePack appends the MessagePack encoding of the JSON value src
// to dst: objects become maps with string keys, arrays arrays, strings
// strings, true/false booleans, null nil; a number without a fraction or
// exponent that fits 64 bits becomes an integer, any other number a
// float64. That is everything JSON can say; what it cannot (binary data,
// timestamps, non-string map keys, the .NET types behind them) a JSON-only
// source never had. Invalid JSON, and JSON holding invalid UTF-8 (which
// no MessagePack string may), is ErrInvalidJSON; on error dst is returned
// unchanged.
//
// It is meant to run once per message, for the MessagePack recipients of
// a message that arrived as JSON (REST API, upstream), never per
// recipient.
func JSONToMessagePack(dst, src []byte) ([]byte, error) {
	if !json.Valid(src) {
		return dst, fmt.Errorf("%w: not valid JSON", ErrInvalidJSON)
	}
	if !utf8.Valid(src) { // json.Valid lets invalid UTF-8 in strings pass
		return dst, fmt.Errorf("%w: not valid UTF-8", ErrInvalidJSON)
	}
	t := transcoder{src: src}
	out, err := t.value(dst)
	if err != nil {
		return dst, err
	}
	return out, nil
}

// transcoder walks JSON that json.Valid accepted.
type transcoder struct {
	src []byte
	i   int
}

func (t *transcoder) ws() {
	for t.i < len(t.src) {
		switch t.src[t.i] {
		case ' ', '\t', '\n', '\r':
			t.i++
		default:
			return
		}
	}
}

func (t *transcoder) value(dst []byte) ([]byte, error) {
	t.ws()
	switch c := t.src[t.i]; {
	case c == '{' || c == '[':
		n := countItems(t.src[t.i:])
		closing := byte(']')
		if c == '{' {
			closing = '}'
			dst = msgp.AppendMapHeader(dst, n)
		} else {
			dst = msgp.AppendArrayHeader(dst, n)
		}
		t.i++
		for {
			t.ws()
			if t.src[t.i] == closing {
				t.i++
				return dst, nil
			}
			if t.src[t.i] == ',' {
				t.i++
				t.ws()
			}
			var err error
			if c == '{' {
				if dst, err = t.str(dst); err != nil {
					return dst, err
				}
				t.ws()
				t.i++ // ':'
			}
			if dst, err = t.value(dst); err != nil {
				return dst, err
			}
		}
	case c == '"':
		return t.str(dst)
	case c == 't':
		t.i += 4
		return msgp.AppendBool(dst, true), nil
	case c == 'f':
		t.i += 5
		return msgp.AppendBool(dst, false), nil
	case c == 'n':
		t.i += 4
		return msgp.AppendNil(dst), nil
	default:
		return t.number(dst)
	}
}

// countItems counts the items of the array or object that b starts with.
func countItems(b []byte) uint32 {
	var n uint32
	depth, inStr, any := 0, false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inStr {
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
			any = true
		case '{', '[':
			depth++
			if depth > 1 {
				any = true
			}
		case '}', ']':
			depth--
			if depth == 0 {
				if any {
					n++
				}
				return n
			}
		case ',':
			if depth == 1 {
				n++
			}
		case ' ', '\t', '\n', '\r', ':':
		default:
			if depth >= 1 {
				any = true
			}
		}
	}
	return n
}

// str appends the JSON string at t.i, unescaped, as a MessagePack string.
func (t *transcoder) str(dst []byte) ([]byte, error) {
	t.i++ // opening quote
	start := t.i
	// Fast path: no escapes.
	for t.i < len(t.src) && t.src[t.i] != '"' && t.src[t.i] != '\\' {
		t.i++
	}
	if t.src[t.i] == '"' {
		s := t.src[start:t.i]
		t.i++
		return msgp.AppendStringFromBytes(dst, s), nil
	}
	buf := append([]byte(nil), t.src[start:t.i]...)
	for t.src[t.i] != '"' {
		c := t.src[t.i]
		if c != '\\' {
			buf = append(buf, c)
			t.i++
			continue
		}
		t.i++
		switch e := t.src[t.i]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r := t.hex4(t.i + 1)
			t.i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if t.i+6 < len(t.src) && t.src[t.i+1] == '\\' && t.src[t.i+2] == 'u' {
					r2 = t.hex4(t.i + 3)
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					t.i += 6
				} else {
					r = utf8.RuneError // a lone surrogate, as encoding/json decodes it
				}
			}
			buf = utf8.AppendRune(buf, r)
		}
		t.i++
	}
	t.i++
	return msgp.AppendStringFromBytes(dst, buf), nil
}

func (t *transcoder) hex4(at int) rune {
	var r rune
	for _, c := range t.src[at : at+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// number appends the JSON number at t.i.
func (t *transcoder) number(dst []byte) ([]byte, error) {
	start, integral := t.i, true
	for t.i < len(t.src) {
		c := t.src[t.i]
		if c == '.' || c == 'e' || c == 'E' {
			integral = false
		} else if !(c == '-' || c == '+' || c >= '0' && c <= '9') {
			break
		}
		t.i++
	}
	s := string(t.src[start:t.i])
	if integral {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			return appendInt(dst, v), nil
		}
		if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			return msgp.AppendUint64(dst, v), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return dst, fmt.Errorf("%w: number %s: %w", ErrInvalidJSON, s, err)
	}
	return msgp.AppendFloat64(dst, f), nil
}

// maxDepth bounds the nesting MessagePackToJSON follows (encoding/json's
// own bound): deeper input is refused rather than recursed into.
const maxDepth = 10000

// MessagePackToJSON appends the JSON form of src, exactly one MessagePack
// value, to dst: maps become objects, arrays arrays, strings strings (with
// encoding/json's escaping; invalid UTF-8 as U+FFFD), integers and floats
// numbers (a float64 as encoding/json writes it, so 1.0 becomes 1), nil
// null; bin becomes a base64 string (what System.Text.Json makes of a
// .NET byte[], so the app can read it back as one); a timestamp
// (extension type -1) an RFC 3339 string in UTC (how .NET writes a
// DateTime). Map keys that are integers, booleans or floats become their
// text. What JSON cannot express at all, an extension of another type, a
// map key that is nil, binary or a container, a NaN or infinite float, is
// ErrNoJSON; a src that is not one valid MessagePack value is
// ErrInvalidMsgpack. On error dst is returned unchanged.
//
// It runs once per invocation a MessagePack client sends to the upstream,
// whose entries carry JSON arguments.
func MessagePackToJSON(dst, src []byte) ([]byte, error) {
	out, rest, err := mpToJSON(dst, src, 0)
	if err != nil {
		return dst, err
	}
	if len(rest) != 0 {
		return dst, fmt.Errorf("%w: %d bytes after the value", ErrInvalidMsgpack, len(rest))
	}
	return out, nil
}

func mpInvalid(err error) error { return fmt.Errorf("%w: %w", ErrInvalidMsgpack, err) }

// mpToJSON appends the JSON of the value b starts with and returns the
// bytes after it.
func mpToJSON(dst, b []byte, depth int) ([]byte, []byte, error) {
	if len(b) == 0 {
		return dst, b, mpInvalid(msgp.ErrShortBytes)
	}
	if depth > maxDepth {
		return dst, b, fmt.Errorf("%w: nested more than %d deep", ErrInvalidMsgpack, maxDepth)
	}
	// An if per kind of value, not a switch: see docs/MUTATION.md (gremlins
	// counts switch cases as never covered).
	c := b[0]
	if c == 0xc0 {
		return append(dst, "null"...), b[1:], nil
	}
	if c == 0xc2 {
		return append(dst, "false"...), b[1:], nil
	}
	if c == 0xc3 {
		return append(dst, "true"...), b[1:], nil
	}
	if c <= 0x7f || c >= 0xe0 || c >= 0xd0 && c <= 0xd3 {
		v, rest, err := msgp.ReadInt64Bytes(b)
		if err != nil {
			return dst, b, mpInvalid(err)
		}
		return strconv.AppendInt(dst, v, 10), rest, nil
	}
	if c >= 0xcc && c <= 0xcf {
		v, rest, err := msgp.ReadUint64Bytes(b)
		if err != nil {
			return dst, b, mpInvalid(err)
		}
		return strconv.AppendUint(dst, v, 10), rest, nil
	}
	if c == 0xca {
		f, rest, err := msgp.ReadFloat32Bytes(b)
		if err != nil {
			return dst, b, mpInvalid(err)
		}
		out, err := appendJSONFloat(dst, float64(f), 32)
		return out, rest, err
	}
	if c == 0xcb {
		f, rest, err := msgp.ReadFloat64Bytes(b)
		if err != nil {
			return dst, b, mpInvalid(err)
		}
		out, err := appendJSONFloat(dst, f, 64)
		return out, rest, err
	}
	if c >= 0xa0 && c <= 0xbf || c >= 0xd9 && c <= 0xdb {
		s, rest, err := msgp.ReadStringZC(b)
		if err != nil {
			return dst, b, mpInvalid(err)
		}
		return appendString(dst, msgp.UnsafeString(s)), rest, nil
	}
	if c >= 0xc4 && c <= 0xc6 {
		v, rest, err := msgp.ReadBytesZC(b)
		if err != nil {
			return dst, b, mpInvalid(err)
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v)
		return append(dst, '"'), rest, nil
	}
	if c >= 0x90 && c <= 0x9f || c == 0xdc || c == 0xdd {
		n, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil {
			return dst, b, mpInvalid(err)
		}
		dst = append(dst, '[')
		for i := uint32(0); i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, rest, err = mpToJSON(dst, rest, depth+1); err != nil {
				return dst, b, err
			}
		}
		return append(dst, ']'), rest, nil
	}
	if c >= 0x80 && c <= 0x8f || c == 0xde || c == 0xdf {
		n, rest, err := msgp.ReadMapHeaderBytes(b)
		if err != nil {
			return dst, b, mpInvalid(err)
		}
		dst = append(dst, '{')
		for i := uint32(0); i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, rest, err = mpKeyToJSON(dst, rest); err != nil {
				return dst, b, err
			}
			dst = append(dst, ':')
			if dst, rest, err = mpToJSON(dst, rest, depth+1); err != nil {
				return dst, b, err
			}
		}
		return append(dst, '}'), rest, nil
	}
	if c >= 0xc7 && c <= 0xc9 || c >= 0xd4 && c <= 0xd8 {
		typ, data, rest, err := readExt(b)
		if err != nil {
			return dst, b, err
		}
		if typ != -1 {
			return dst, b, fmt.Errorf("%w: MessagePack extension type %d", ErrNoJSON, typ)
		}
		t, err := timestamp(data)
		if err != nil {
			return dst, b, err
		}
		dst = append(dst, '"')
		dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"'), rest, nil
	}
	return dst, b, fmt.Errorf("%w: byte 0x%02x starts no value", ErrInvalidMsgpack, b[0])
}

// mpKeyToJSON appends a map key as a JSON string: strings as they are,
// integers, floats and booleans as their JSON text.
func mpKeyToJSON(dst, b []byte) ([]byte, []byte, error) {
	if len(b) > 0 && (b[0] >= 0xa0 && b[0] <= 0xbf || b[0] >= 0xd9 && b[0] <= 0xdb) {
		return mpToJSON(dst, b, 0)
	}
	switch msgp.NextType(b) {
	case msgp.IntType, msgp.UintType, msgp.Float32Type, msgp.Float64Type, msgp.BoolType:
		var tmp [32]byte
		v, rest, err := mpToJSON(tmp[:0], b, 0)
		if err != nil {
			return dst, b, err
		}
		return appendString(dst, string(v)), rest, nil
	}
	return dst, b, fmt.Errorf("%w: a map key of MessagePack type %s", ErrNoJSON, msgp.NextType(b))
}

// appendJSONFloat appends f as encoding/json writes a float of that many
// bits: the shortest text that reads back the same, exponent form only
// for very small or large magnitudes.
func appendJSONFloat(dst []byte, f float64, bits int) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return dst, fmt.Errorf("%w: float %v", ErrNoJSON, f)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// e-09 to e-9, as encoding/json does.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

// readExt reads an extension value: its type, its data and the bytes
// after it.
func readExt(b []byte) (typ int8, data, rest []byte, err error) {
	var n, hdr int
	switch b[0] {
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		n, hdr = 1<<(b[0]-0xd4), 1
	case 0xc7:
		if len(b) < 2 {
			return 0, nil, b, mpInvalid(msgp.ErrShortBytes)
		}
		n, hdr = int(b[1]), 2
	case 0xc8:
		if len(b) < 3 {
			return 0, nil, b, mpInvalid(msgp.ErrShortBytes)
		}
		n, hdr = int(b[1])<<8|int(b[2]), 3
	case 0xc9:
		if len(b) < 5 {
			return 0, nil, b, mpInvalid(msgp.ErrShortBytes)
		}
		n, hdr = int(uint32(b[1])<<24|uint32(b[2])<<16|uint32(b[3])<<8|uint32(b[4])), 5
	}
	if len(b) < hdr+1+n || n < 0 {
		return 0, nil, b, mpInvalid(msgp.ErrShortBytes)
	}
	return int8(b[hdr]), b[hdr+1 : hdr+1+n], b[hdr+1+n:], nil
}

// timestamp decodes the data of a timestamp extension (4, 8 or 12 bytes).
func timestamp(d []byte) (time.Time, error) {
	be := func(b []byte) (v uint64) {
		for _, c := range b {
			v = v<<8 | uint64(c)
		}
		return v
	}
	switch len(d) {
	case 4:
		return time.Unix(int64(be(d)), 0), nil
	case 8:
		v := be(d)
		if ns := int64(v >> 34); ns < 1e9 {
			return time.Unix(int64(v&(1<<34-1)), ns), nil
		}
	case 12:
		if ns := int64(be(d[:4])); ns < 1e9 {
			return time.Unix(int64(be(d[4:])), ns), nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: a timestamp of %d bytes or with over 10^9 nanoseconds", ErrInvalidMsgpack, len(d))
}

// jsonRecord is a JSON hub record as JSONRecordsToMessagePack reads it:
// every field a server writes.
type jsonRecord struct {
	Type           MessageType     `json:"type"`
	InvocationID   string          `json:"invocationId"`
	Target         string          `json:"target"`
	Arguments      json.RawMessage `json:"arguments"`
	Item           json.RawMessage `json:"item"`
	Result         json.RawMessage `json:"result"`
	Error          *string         `json:"error"`
	AllowReconnect bool            `json:"allowReconnect"`
	SequenceID     int64           `json:"sequenceId"`
}

// JSONRecordsToMessagePack appends the MessagePack form of src, one or
// more JSON hub records each ended by 0x1e (a backplane message, a REST or
// upstream send), to dst: each record becomes the MessagePack record of
// the same message, length prefix included, ready for a binary frame.
// The messages a server sends are converted (Invocation, StreamItem,
// Completion with a result, void or with an error, Ping, Close, Ack,
// Sequence); their values go through JSONToMessagePack. Headers are not
// carried over (edgeplane writes none). A record that is not valid JSON
// or not such a message is ErrInvalidMessage or ErrInvalidJSON; on error
// dst is returned unchanged.
//
// It runs once per message that came as JSON only, for all its
// MessagePack recipients together, never per recipient.
func JSONRecordsToMessagePack(dst, src []byte) ([]byte, error) {
	n := len(dst)
	var tmp []byte // a converted value
	err := JSON.Split(src, func(rec []byte) error {
		var m jsonRecord
		if err := json.Unmarshal(rec, &m); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidMessage, err)
		}
		var err error
		switch m.Type {
		case TypeInvocation:
			tmp = tmp[:0]
			if len(m.Arguments) > 0 && string(m.Arguments) != "null" {
				if tmp, err = JSONToMessagePack(tmp, m.Arguments); err != nil {
					return err
				}
			}
			dst, err = MessagePack.AppendInvocation(dst, m.InvocationID, m.Target, tmp)
		case TypeStreamItem:
			if tmp, err = JSONToMessagePack(tmp[:0], orNull(m.Item)); err != nil {
				return err
			}
			dst, err = MessagePack.AppendStreamItem(dst, m.InvocationID, tmp)
		case TypeCompletion:
			switch {
			case m.Error != nil:
				dst = MessagePack.AppendCompletionError(dst, m.InvocationID, *m.Error)
			case m.Result != nil:
				if tmp, err = JSONToMessagePack(tmp[:0], m.Result); err != nil {
					return err
				}
				dst, err = MessagePack.AppendCompletion(dst, m.InvocationID, tmp)
			default:
				dst, err = MessagePack.AppendCompletion(dst, m.InvocationID, nil)
			}
		case TypePing:
			dst = append(dst, mpPing...)
		case TypeClose:
			var text string
			if m.Error != nil {
				text = *m.Error
			}
			dst = MessagePack.AppendClose(dst, text, m.AllowReconnect)
		case TypeAck:
			dst = MessagePack.AppendAck(dst, m.SequenceID)
		case TypeSequence:
			dst = MessagePack.AppendSequence(dst, m.SequenceID)
		case 0:
			return ErrMissingType
		default:
			return fmt.Errorf("%w: a server does not send %s messages", ErrInvalidMessage, m.Type)
		}
		return err
	})
	if err != nil {
		return dst[:n], err
	}
	return dst, nil
}

func orNull(v json.RawMessage) []byte {
	if len(v) == 0 {
		return []byte("null")
	}
	return v
}
