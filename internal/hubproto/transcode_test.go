package hubproto

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
	"unicode/utf8"
)

// TestJSONToMessagePack: every JSON construct maps to its MessagePack
// counterpart, with the bytes ASP.NET's MessagePack-CSharp would write for
// the same values.
func TestJSONToMessagePack(t *testing.T) {
	for _, tc := range []struct {
		json, want string
	}{
		{`null`, "c0"},
		{`true`, "c3"},
		{`false`, "c2"},
		{`0`, "00"},
		{`127`, "7f"},
		{`300`, "cd 012c"},
		{`-1`, "ff"},
		{`-200`, "d1 ff38"},
		{`18446744073709551615`, "cf ffffffffffffffff"},
		{`1.5`, "cb 3ff8000000000000"},
		{`1e2`, "cb 4059000000000000"},
		{`"hi"`, "a2 6869"},
		{`"a\"b\\c\/d\n\t\u00e9"`, "ab 61 22 62 5c 63 2f 64 0a 09 c3a9"},
		{`"\ud83d\ude00"`, "a4 f09f9880"},
		{`"\ud800"`, "a3 efbfbd"},
		{`[]`, "90"},
		{` [ 1 , "x" , [ ] , { } ] `, "94 01 a1 78 90 80"},
		{`{"a":1,"b":[true,null]}`, "82 a1 61 01 a1 62 92 c3 c0"},
		{`{"k,}":"]["}`, "81 a3 6b2c7d a2 5d5b"},
		{`[[["deep"]]]`, "91 91 91 a4 64656570"},
	} {
		got, err := JSONToMessagePack(nil, []byte(tc.json))
		if err != nil {
			t.Errorf("%s: %v", tc.json, err)
			continue
		}
		if want := unhexT(t, tc.want); string(got) != string(want) {
			t.Errorf("%s: % x, want % x", tc.json, got, want)
		}
	}
}

func TestJSONToMessagePackRejectsInvalidJSON(t *testing.T) {
	for _, bad := range []string{``, `[1,]`, `{"a"}`, `"\x"`, `nul`, `[1] 2`, "\"\xff\""} {
		got, err := JSONToMessagePack([]byte("x"), []byte(bad))
		if !errors.Is(err, ErrInvalidJSON) || string(got) != "x" {
			t.Errorf("%q: %v %q, want ErrInvalidJSON and dst unchanged", bad, err, got)
		}
	}
}

// FuzzJSONToMessagePack: for any valid JSON, the MessagePack decodes to
// the same value encoding/json decodes (numbers compared as float64).
func FuzzJSONToMessagePack(f *testing.F) {
	for _, s := range []string{`[1,"a",{"b":null}]`, `"\u00e9\ud83d\ude00"`, `-0.5e-3`, `{"":[]}`, `123456789012345678901234567890`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		var want any
		if json.Unmarshal(src, &want) != nil {
			return
		}
		b, err := JSONToMessagePack(nil, src)
		if !utf8.Valid(src) {
			if !errors.Is(err, ErrInvalidJSON) {
				t.Fatalf("%q: invalid UTF-8 accepted", src)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if got := normalize(decodeMP(t, b)); !reflect.DeepEqual(got, normalize(want)) {
			t.Fatalf("%q: got %#v, want %#v", src, got, want)
		}
	})
}

// normalize turns decoded numbers into float64 so both decoders compare.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case float64:
		if x == 0 {
			return math.Abs(x) // -0 and 0
		}
		return x
	}
	return v
}
