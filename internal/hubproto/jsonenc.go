package hubproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The JSON writers produce the bytes encoding/json's Marshal produced for
// the same messages before they were hand-written (the tests check it):
// strings escaped with HTML escaping on, raw values compacted.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, as encoding/json does with
// HTML escaping (<, >, & as \u00XX; U+2028, U+2029 escaped; invalid UTF-8
// as \ufffd).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendRaw appends the JSON value v compacted (whitespace outside strings
// dropped) and HTML-escaped, as encoding/json marshals a json.RawMessage,
// or returns dst and an ErrInvalidJSON error if v is not one JSON value.
func appendRaw(dst, v []byte) ([]byte, error) {
	if !json.Valid(v) {
		// The error path only: let encoding/json say what is wrong.
		var buf bytes.Buffer
		err := json.Compact(&buf, v)
		if err == nil {
			err = errors.New("not one JSON value")
		}
		return dst, fmt.Errorf("%w: %w", ErrInvalidJSON, err)
	}
	start := 0
	inString, escaped := false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		// An if chain rather than a switch: mutation testing sees the
		// conditions of if statements as covered, not those of cases.
		if c == '<' || c == '>' || c == '&' {
			dst = append(dst, v[start:i]...)
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			start = i + 1
		} else if c == 0xE2 && v[i+1] == 0x80 && v[i+2]&^1 == 0xA8 {
			// U+2028, U+2029: only valid inside a string. v is valid
			// JSON, so 0xE2 starts a 3-byte rune inside a string: its two
			// continuation bytes and the closing quote follow.
			dst = append(dst, v[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[v[i+2]&0xF])
			i += 2
			start = i + 1
		} else if inString {
			if escaped {
				escaped = false
			} else if c == '\\' {
				escaped = true
			} else if c == '"' {
				inString = false
			}
		} else if c == '"' {
			inString = true
		} else if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			dst = append(dst, v[start:i]...)
			start = i + 1
		}
	}
	return append(dst, v[start:]...), nil
}
