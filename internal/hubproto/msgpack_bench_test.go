package hubproto

import (
	"bytes"
	"testing"

	vmsgpack "github.com/vmihailenco/msgpack/v5"
)

// BenchmarkMessagePackLibraries compares the two MessagePack libraries the
// issue named on the work a hub protocol does per record: read a client
// Invocation (type, headers, id, target, arguments kept as raw bytes) and
// write a server Invocation around arguments already encoded. tinylib/msgp
// works on the byte slice in place; vmihailenco/msgpack reads and writes
// through an io.Reader/io.Writer with its lowest-level Decoder/Encoder
// methods (no reflection), reusing them across iterations.
//
//	go test -run '^$' -bench MessagePackLibraries -benchmem ./internal/hubproto/
func BenchmarkMessagePackLibraries(b *testing.B) {
	args := unhexT(b, "92 a5 68656c6c6f 0c") // ["hello", 12]
	rec := unhexT(b, "95 01 80 a2 3432 a4 53656e64 92 a5 68656c6c6f 0c")

	b.Run("parse/tinylib-msgp", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			m, err := MessagePack.Parse(rec)
			if err != nil || m.Target != "Send" {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse/vmihailenco-msgpack", func(b *testing.B) {
		r := bytes.NewReader(nil)
		dec := vmsgpack.NewDecoder(r)
		b.ReportAllocs()
		for range b.N {
			r.Reset(rec)
			n, err := dec.DecodeArrayLen()
			if err != nil || n < 5 {
				b.Fatal(err)
			}
			if _, err := dec.DecodeInt(); err != nil {
				b.Fatal(err)
			}
			if _, err := dec.DecodeMapLen(); err != nil {
				b.Fatal(err)
			}
			id, err := dec.DecodeString()
			if err != nil {
				b.Fatal(err)
			}
			target, err := dec.DecodeString()
			if err != nil || target != "Send" || id != "42" {
				b.Fatal(err)
			}
			raw, err := dec.DecodeRaw()
			if err != nil || len(raw) != len(args) {
				b.Fatal(err)
			}
		}
	})
	b.Run("append/tinylib-msgp", func(b *testing.B) {
		var dst []byte
		b.ReportAllocs()
		for range b.N {
			var err error
			if dst, err = MessagePack.AppendInvocation(dst[:0], "", "Send", args); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append/vmihailenco-msgpack", func(b *testing.B) {
		var body, out bytes.Buffer
		var prefix [maxVarInt]byte
		enc := vmsgpack.NewEncoder(&body)
		b.ReportAllocs()
		for range b.N {
			body.Reset()
			out.Reset()
			enc.EncodeArrayLen(6)
			enc.EncodeInt(1)
			enc.EncodeMapLen(0)
			enc.EncodeNil()
			enc.EncodeString("Send")
			body.Write(args)
			enc.EncodeArrayLen(0)
			out.Write(appendVarInt(prefix[:0], uint64(body.Len())))
			out.Write(body.Bytes())
		}
	})
}
