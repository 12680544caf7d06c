package bench

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/edgeplane/edgeplane/backplane/wire"
)

// The byte-exact vectors are tested in backplane/wire
// (testdata/signalr-redis.json); here, that bench speaks the same format.
func TestInvocationRoundTrip(t *testing.T) {
	rec := []byte("{\"type\":1,\"target\":\"Send\",\"arguments\":[\"hello\"]}\x1e")
	for _, excluded := range [][]string{nil, {"conn-1"}, {"a", "b", "c"}} {
		b := EncodeInvocation(nil, excluded, rec)
		if want := wire.AppendInvocation(nil, excluded, rec); !bytes.Equal(b, want) {
			t.Fatalf("encode %q:\n got %x\nwant %x", excluded, b, want)
		}
		ex, r, err := DecodeInvocation(b)
		if err != nil || !bytes.Equal(r, rec) || !slices.Equal(ex, excluded) && len(ex)+len(excluded) > 0 {
			t.Fatalf("decode %x = %q, %q, %v; want %q, %q", b, ex, r, err, excluded, rec)
		}
	}
	if _, _, err := DecodeInvocation([]byte{0x91, 0x90}); !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("short invocation: err = %v, want wire.ErrMalformed", err)
	}
}
