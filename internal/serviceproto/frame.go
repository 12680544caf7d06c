package serviceproto

import "fmt"

// Framing (BinaryMessageFormatter/BinaryMessageParser in the SDK): each
// message is its body's length as a VarInt — 7 bits a byte, least
// significant first, high bit set on every byte but the last, at most 5
// bytes, under 2 GiB — then the body. WebSocket message boundaries carry
// no meaning: one binary message may hold several service messages and
// one service message may span several, so input is parsed as a stream.

const (
	maxPrefix  = 5
	maxBodyLen = 1<<31 - 1
)

// DefaultMaxMessageBytes is a Splitter's default bound on one message.
const DefaultMaxMessageBytes = 4 << 20

// AppendFrame appends m as it goes on the wire: length prefix and body.
func AppendFrame(dst []byte, m Message) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0) // room for the longest prefix
	dst = m.AppendBody(dst)
	n := len(dst) - start - maxPrefix
	k := prefixLen(n)
	copy(dst[start+k:], dst[start+maxPrefix:])
	appendPrefix(dst[start:start], n)
	return dst[:start+k+n]
}

// Frame returns m framed in a new slice.
func Frame(m Message) []byte { return AppendFrame(nil, m) }

// AppendPrefix appends the length prefix of an n-byte body.
func AppendPrefix(dst []byte, n int) []byte { return appendPrefix(dst, n) }

func appendPrefix(dst []byte, n int) []byte {
	v := uint32(n)
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

func prefixLen(n int) int {
	k := 1
	for v := uint32(n); v >= 0x80; v >>= 7 {
		k++
	}
	return k
}

// ReadPrefix reads a length prefix at the start of b: the body's length
// and the prefix's size. ok is false while b holds only part of a valid
// prefix; a prefix longer than 5 bytes or of 2 GiB or more is
// ErrLengthPrefix.
func ReadPrefix(b []byte) (n, size int, ok bool, err error) {
	var v uint64
	for i := 0; i < maxPrefix; i++ {
		if i == len(b) {
			return 0, 0, false, nil
		}
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			if v > maxBodyLen {
				return 0, 0, false, fmt.Errorf("%w: %d bytes", ErrLengthPrefix, v)
			}
			return int(v), i + 1, true, nil
		}
	}
	return 0, 0, false, fmt.Errorf("%w: more than %d bytes", ErrLengthPrefix, maxPrefix)
}

// Splitter cuts a byte stream into message bodies. The zero value works,
// with DefaultMaxMessageBytes. It keeps the bytes of an incomplete
// message between calls, at most MaxMessageBytes and its prefix, so a
// peer cannot make it hold more. After an error the stream is lost: close
// the connection.
type Splitter struct {
	// MaxMessageBytes bounds one message's body; a longer one is
	// ErrTooLarge as soon as its prefix is read. Default
	// DefaultMaxMessageBytes.
	MaxMessageBytes int

	pending []byte // an incomplete message, prefix included
}

// Feed consumes the next bytes of the stream and calls fn with the body
// of each message they complete, in order. A body is valid only during
// the call (it may alias data or the Splitter's buffer). The first error
// of fn stops Feed and is returned; so is a framing error.
func (s *Splitter) Feed(data []byte, fn func(body []byte) error) error {
	if len(s.pending) > 0 {
		// Complete the pending message first, taking from data only
		// what it needs, then go on in data itself.
		for {
			n, k, ok, err := ReadPrefix(s.pending)
			if err != nil {
				return err
			}
			if !ok {
				if len(data) == 0 {
					return nil
				}
				s.pending = append(s.pending, data[0])
				data = data[1:]
				continue
			}
			if err := s.check(n); err != nil {
				return err
			}
			want := k + n - len(s.pending)
			if want > len(data) {
				s.pending = append(s.pending, data...)
				return nil
			}
			s.pending = append(s.pending, data[:want]...)
			data = data[want:]
			body := s.pending[k:]
			err = fn(body)
			s.pending = s.pending[:0]
			if cap(s.pending) > 64<<10 {
				s.pending = nil // let a large message's buffer go
			}
			if err != nil {
				return err
			}
			break
		}
	}
	for len(data) > 0 {
		n, k, ok, err := ReadPrefix(data)
		if err != nil {
			return err
		}
		if ok {
			if err := s.check(n); err != nil {
				return err
			}
		}
		if !ok || k+n > len(data) {
			s.pending = append(s.pending[:0], data...)
			return nil
		}
		if err := fn(data[k : k+n]); err != nil {
			return err
		}
		data = data[k+n:]
	}
	return nil
}

// Buffered is the number of bytes of an incomplete message held.
func (s *Splitter) Buffered() int { return len(s.pending) }

// Reset drops any incomplete message.
func (s *Splitter) Reset() { s.pending = nil }

func (s *Splitter) check(n int) error {
	max := s.MaxMessageBytes
	if max <= 0 {
		max = DefaultMaxMessageBytes
	}
	if n > max {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, n, max)
	}
	if n == 0 {
		return fmt.Errorf("%w: empty message", ErrMalformed)
	}
	return nil
}
