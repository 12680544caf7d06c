package conn

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

// Fuzz targets; seed corpora are the f.Add calls plus testdata/fuzz/<name>.
// Run one with: go test -run XXX -fuzz FuzzTokenVerify -fuzztime 20s ./conn/

func FuzzTokenVerify(f *testing.F) {
	s := &tokenSigner{key: []byte("fuzz-key"), ttl: time.Minute}
	now := time.Unix(1_800_000_000, 0)
	id := [idLen]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	valid := s.issue("chat", id, now)
	f.Add("chat", valid)
	f.Add("chat", s.issueFlags("chat", id, now, tokStateful))
	f.Add("chat", valid[:len(valid)-1]+"B")
	f.Add("chat", valid[:52]+"\n\n")
	// Regression: a token whose last byte is 0 with its last two
	// characters replaced by newlines used to verify (see TestTokenNewlines).
	for i := uint64(0); i < 100_000; i++ {
		var zid [idLen]byte
		binary.BigEndian.PutUint64(zid[:], i)
		tok := s.issue("chat", zid, now)
		if raw, _ := b64.DecodeString(tok); raw[tokenLen-1] == 0 {
			f.Add("chat", tok[:52]+"\n\n")
			break
		}
	}
	f.Add("chat", strings.Repeat("A", len(valid)))
	f.Add("chat", encodeID(id))
	f.Add("", "")
	f.Add("chat2", valid)
	f.Add("chat", "!"+valid[1:])
	f.Fuzz(func(t *testing.T, hub, tok string) {
		ti, err := s.open(hub, tok, now)
		gotID, exp, verr := s.verify(hub, tok, now)
		if !errors.Is(verr, err) && verr != err {
			t.Fatalf("verify err %v, open err %v", verr, err)
		}
		switch {
		case errors.Is(err, ErrBadToken):
			if gotID != ([idLen]byte{}) || ti.id != ([idLen]byte{}) {
				t.Fatal("bad token returned an id")
			}
			return
		case err == nil:
			if gotID != ti.id || !exp.Equal(ti.exp) {
				t.Fatalf("verify %x %v, open %+v", gotID, exp, ti)
			}
		case errors.Is(err, ErrTokenExpired):
			if gotID != ([idLen]byte{}) {
				t.Fatal("expired token returned an id from verify")
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
		// Anything that passes the MAC must be exactly the token the
		// signer issues for that id, expiry and flags: no other string
		// verifies.
		if reissued := s.issueFlags(hub, ti.id, ti.exp.Add(-s.ttl), ti.flags); reissued != tok {
			t.Fatalf("hub %q token %q verified (err %v) but the signer issues %q", hub, tok, err, reissued)
		}
	})
}
