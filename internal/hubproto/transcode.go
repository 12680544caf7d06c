package hubproto

import (
	"encoding/json"
	"fmt"
	"strconv"
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
