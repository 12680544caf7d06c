package backplane

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// RESP2, as far as a subscription connection needs it: commands written as
// arrays of bulk strings, and the replies such a connection reads (pushes
// of at most four elements, status, error, integer and bulk replies).
// go-redis is used for everything else; its PubSub is not, because it
// neither awaits its PINGs nor lets a cluster connection carry channels of
// several slots (see redis_subscriber.go).

const (
	// respMaxBulk is the largest bulk string accepted: Redis's own
	// proto-max-bulk-len default, so nothing Redis accepts is refused.
	respMaxBulk = 512 << 20
	// respMaxArray: the longest reply on a subscribed RESP2 connection is
	// a pmessage (4 elements).
	respMaxArray = 4
	// respReadBuffer is the read buffer of a subscription connection.
	respReadBuffer = 32 << 10
	// respKeepScratch: a scratch buffer grown beyond this is dropped after
	// the reply that needed it.
	respKeepScratch = 64 << 10
	// respGrowAbove: a longer bulk string is read into memory that grows
	// as its bytes arrive.
	respGrowAbove = 1 << 20
)

// errRESP is wrapped by every malformed-reply error.
var errRESP = errors.New("malformed RESP reply")

// appendCommand appends a RESP command: name followed by args.
func appendCommand(b []byte, name string, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(1+len(args)), 10)
	b = append(b, '\r', '\n')
	b = appendBulk(b, name)
	for _, a := range args {
		b = appendBulk(b, a)
	}
	return b
}

func appendBulk(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// respReply is one reply. Its slices are valid until the next read, except
// payload.
type respReply struct {
	// kind is the RESP type byte: '+' status, '-' error, ':' integer,
	// '$' bulk string, '*' array.
	kind byte
	// text is a status, error or integer's text, or a bulk string (nil
	// for a null bulk string).
	text []byte
	// n is an array's length; elems[:n] its elements (bulk strings, or an
	// integer's text).
	n     int
	elems [respMaxArray][]byte
	// payload is the last element of a "message", "smessage" or
	// "pmessage" push, in memory of its own that the caller may keep.
	payload []byte
}

// respReader reads replies from a subscription connection.
type respReader struct {
	br      *bufio.Reader
	scratch []byte
}

func newRESPReader(r io.Reader) *respReader {
	return &respReader{br: bufio.NewReaderSize(r, respReadBuffer)}
}

// read reads the next reply into rep. An error that wraps errRESP means
// the stream is not RESP2 as a subscribed connection gets it; any other is
// the connection's.
func (r *respReader) read(rep *respReply) error {
	if cap(r.scratch) > respKeepScratch {
		r.scratch = nil
	}
	r.scratch = r.scratch[:0]
	*rep = respReply{}
	line, err := r.line()
	if err != nil {
		return err
	}
	rep.kind = line[0]
	switch rep.kind {
	case '+', '-', ':':
		rep.text = r.keep(line[1:])
		return nil
	case '$':
		rep.text, err = r.bulk(line, false)
		return err
	case '*':
	default:
		return fmt.Errorf("%w: unknown reply type %q", errRESP, line[0])
	}
	n, err := respLen(line)
	if err != nil {
		return err
	}
	if n < 1 || n > respMaxArray {
		return fmt.Errorf("%w: array of %d elements on a subscribed connection", errRESP, n)
	}
	rep.n = n
	for i := 0; i < n; i++ {
		el, err := r.line()
		if err != nil {
			return err
		}
		switch el[0] {
		case '$':
			// The last element of a message is its payload: read into
			// memory of its own, which the receiver may keep.
			own := i == n-1 && i >= 2 && isMessage(rep.elems[0])
			b, err := r.bulk(el, own)
			if err != nil {
				return err
			}
			if own {
				rep.payload = b
			}
			rep.elems[i] = b
		case ':':
			rep.elems[i] = r.keep(el[1:])
		default:
			return fmt.Errorf("%w: array element of type %q", errRESP, el[0])
		}
	}
	return nil
}

func isMessage(kind []byte) bool {
	return string(kind) == "message" || string(kind) == "smessage" || string(kind) == "pmessage"
}

// line reads one CRLF-terminated line without its CRLF. It is valid until
// the next read from br.
func (r *respReader) line() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errRESP, respReadBuffer)
		}
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: bad line %q", errRESP, truncate(line))
	}
	return line[:len(line)-2], nil
}

// bulk reads the bulk string whose header line is hdr: into scratch, or
// into a new allocation when own is set. A null bulk string is nil.
func (r *respReader) bulk(hdr []byte, own bool) ([]byte, error) {
	n, err := respLen(hdr)
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	if n > respMaxBulk {
		return nil, fmt.Errorf("%w: bulk string of %d bytes", errRESP, n)
	}
	var b []byte
	switch {
	case n > respGrowAbove:
		// Memory in step with the bytes that actually arrive, not with
		// what a length line claims.
		var err error
		if b, err = io.ReadAll(io.LimitReader(r.br, int64(n)+2)); err != nil {
			return nil, err
		}
		if len(b) < n+2 {
			return nil, io.ErrUnexpectedEOF
		}
	case own:
		b = make([]byte, n+2)
	default:
		start := len(r.scratch)
		r.scratch = append(r.scratch, make([]byte, n+2)...)
		b = r.scratch[start:]
	}
	if n <= respGrowAbove {
		if _, err := io.ReadFull(r.br, b); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	if b[n] != '\r' || b[n+1] != '\n' {
		return nil, fmt.Errorf("%w: bulk string of %d bytes not followed by CRLF", errRESP, n)
	}
	return b[:n:n], nil
}

// keep copies a line's bytes into scratch (a line is only valid until the
// next read).
func (r *respReader) keep(b []byte) []byte {
	start := len(r.scratch)
	r.scratch = append(r.scratch, b...)
	return r.scratch[start:len(r.scratch):len(r.scratch)]
}

// respLen parses the length in a "$n" or "*n" line.
func respLen(line []byte) (int, error) {
	d := line[1:]
	if string(d) == "-1" {
		return -1, nil
	}
	if len(d) == 0 || len(d) > 10 {
		return 0, fmt.Errorf("%w: bad length in %q", errRESP, truncate(line))
	}
	n := 0
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: bad length in %q", errRESP, truncate(line))
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

func truncate(b []byte) []byte {
	b = bytes.TrimRight(b, "\r\n")
	if len(b) > 64 {
		b = b[:64]
	}
	return b
}
