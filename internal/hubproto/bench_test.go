package hubproto

import "testing"

var (
	sinkBytes []byte
	sinkMsg   Message
)

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct{ name, rec string }{
		{"invocation", `{"type":1,"invocationId":"7","target":"Send","arguments":["alice","hello world"]}`},
		{"non-blocking", `{"type":1,"target":"Send","arguments":["alice","hello world"]}`},
		{"close", `{"type":7}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rec := []byte(bc.rec)
			b.ReportAllocs()
			for b.Loop() {
				m, err := JSON.Parse(rec)
				if err != nil {
					b.Fatal(err)
				}
				sinkMsg = m
			}
		})
	}
}

func BenchmarkIsPing(b *testing.B) {
	rec := []byte(`{"type":6}`)
	b.ReportAllocs()
	for b.Loop() {
		if !JSON.IsPing(rec) {
			b.Fatal()
		}
	}
}

func BenchmarkPeekType(b *testing.B) {
	rec := []byte(`{"type":1,"target":"bench","arguments":[1,2,"xxxxxxxx"]}`)
	b.ReportAllocs()
	for b.Loop() {
		if JSON.PeekType(rec) != TypeInvocation {
			b.Fatal()
		}
	}
}

func BenchmarkSplit(b *testing.B) {
	msg := []byte(`{"type":6}` + "\x1e" + `{"type":1,"target":"a","arguments":[]}` + "\x1e")
	n := 0
	fn := func([]byte) error { n++; return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := JSON.Split(msg, fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendClose(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = JSON.AppendClose(nil, "Server timeout elapsed without receiving a message from the client.", true)
	}
}

func BenchmarkAppendCloseBuf(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = JSON.AppendClose(buf[:0], "Server timeout elapsed without receiving a message from the client.", true)
	}
}

func BenchmarkAppendCompletionError(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = JSON.AppendCompletionError(nil, "42", "no upstream is configured")
	}
}

func BenchmarkAppendInvocation(b *testing.B) {
	args := []byte(`["alice","hello world",{"k":[1,2,3]}]`)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if sinkBytes, err = JSON.AppendInvocation(nil, "", "Send", args); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendInvocationBuf(b *testing.B) {
	args := []byte(`["alice","hello world",{"k":[1,2,3]}]`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if sinkBytes, err = JSON.AppendInvocation(buf[:0], "", "Send", args); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendHandshakeError(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = AppendHandshakeError(nil, "The protocol 'messagepack' is not supported.")
	}
}

func BenchmarkParseHandshake(b *testing.B) {
	msg := []byte(`{"protocol":"json","version":1}` + "\x1e")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseHandshake(msg); err != nil {
			b.Fatal(err)
		}
	}
}
