package bench

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// Vectors from shared/vectors/signalr-redis.json ("realistic").
func TestInvocationVectors(t *testing.T) {
	rec := []byte("{\"type\":1,\"target\":\"Send\",\"arguments\":[\"hello\"]}\x1e")
	cases := []struct {
		name     string
		excluded []string
		hex      string
	}{
		{"JsonBroadcastToAll", nil, "929081a46a736f6ec4317b2274797065223a312c22746172676574223a2253656e64222c22617267756d656e7473223a5b2268656c6c6f225d7d1e"},
		{"JsonBroadcastExcludingOne", []string{"conn-1"}, "9291a6636f6e6e2d3181a46a736f6ec4317b2274797065223a312c22746172676574223a2253656e64222c22617267756d656e7473223a5b2268656c6c6f225d7d1e"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, _ := hex.DecodeString(c.hex)
			got := EncodeInvocation(nil, c.excluded, rec)
			if !bytes.Equal(got, want) {
				t.Fatalf("encode:\n got %x\nwant %x", got, want)
			}
			ex, r, err := DecodeInvocation(want)
			if err != nil || !bytes.Equal(r, rec) || len(ex) != len(c.excluded) {
				t.Fatalf("decode: %q %q %v", ex, r, err)
			}
		})
	}
	if _, _, err := DecodeInvocation([]byte{0x91, 0x90}); err == nil {
		t.Fatal("short invocation accepted")
	}
}
