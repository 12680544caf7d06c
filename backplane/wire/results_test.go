package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// TestClientResultWire: the 4-item invocation and the return channel's
// completion, byte for byte as ASP.NET Core's RedisProtocol writes them
// (WriteInvocation with an invocation id and return channel,
// WriteCompletionMessage), and read back.
func TestClientResultWire(t *testing.T) {
	rec := []byte("{\"type\":1,\"invocationId\":\"1\",\"target\":\"T\",\"arguments\":[]}\x1e")
	b := AppendInvocationReturn(nil, nil, rec, "1", "h:internal:return:s")
	want := "94" + "90" + "81" + "a46a736f6e" + "c4" + hex.EncodeToString([]byte{byte(len(rec))}) + hex.EncodeToString(rec) +
		"a131" + "b3" + hex.EncodeToString([]byte("h:internal:return:s"))
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("invocation %s, want %s", got, want)
	}
	_, js, err := ReadInvocation(b, nil)
	if err != nil || !bytes.Equal(js, rec) {
		t.Fatalf("ReadInvocation: %q, %v", js, err)
	}
	id, ch, err := ReadInvocationReturn(b)
	if err != nil || id != "1" || ch != "h:internal:return:s" {
		t.Fatalf("ReadInvocationReturn: %q %q %v", id, ch, err)
	}
	if id, ch, err := ReadInvocationReturn(AppendInvocation(nil, nil, rec)); err != nil || id != "" || ch != "" {
		t.Fatalf("two-item invocation: %q %q %v", id, ch, err)
	}
	comp := []byte("{\"type\":3,\"invocationId\":\"1\",\"result\":2}\x1e")
	c := AppendCompletion(nil, "json", comp)
	if got, want := hex.EncodeToString(c), "92a46a736f6ec4"+hex.EncodeToString([]byte{byte(len(comp))})+hex.EncodeToString(comp); got != want {
		t.Fatalf("completion %s, want %s", got, want)
	}
	p, back, err := ReadCompletion(c)
	if err != nil || p != "json" || !bytes.Equal(back, comp) {
		t.Fatalf("ReadCompletion: %q %q %v", p, back, err)
	}
	for _, bad := range []string{"91a46a736f6e", "92c0c401", "9201c40100"} {
		raw, _ := hex.DecodeString(bad)
		if _, _, err := ReadCompletion(raw); !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadCompletion(%s) = %v, want ErrMalformed", bad, err)
		}
	}
	bad := AppendInvocation(nil, nil, rec)
	bad[0] = 0x94
	bad = append(bad, 0x01, 0xa1, 'x')
	if _, _, err := ReadInvocationReturn(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("invocation id not a string: %v", err)
	}
}
