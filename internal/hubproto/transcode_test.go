package hubproto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
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

// TestMessagePackToJSON: what a MessagePack client may send maps to the
// JSON an upstream app reads, as System.Text.Json would write the .NET
// values behind it; what JSON cannot say is ErrNoJSON.
func TestMessagePackToJSON(t *testing.T) {
	for _, tc := range []struct {
		mp, want string
	}{
		{"c0", `null`},
		{"c3", `true`},
		{"c2", `false`},
		{"7f", `127`},
		{"ff", `-1`},
		{"d0 80", `-128`},
		{"cd 012c", `300`},
		{"cf ffffffffffffffff", `18446744073709551615`},
		{"d3 8000000000000000", `-9223372036854775808`},
		{"cb 3ff8000000000000", `1.5`},
		{"cb 3ff0000000000000", `1`}, // a float64 1.0: JSON has one number type
		{"ca 3fc00000", `1.5`},
		{"cb 3eb0c6f7a0b5ed8d", `0.000001`},
		{"cb 3e7ad7f29abcaf48", `1e-7`},
		{"cb 4415af1d78b58c40", `100000000000000000000`},
		{"cb 444b1ae4d6e2ef50", `1e+21`},
		{"a2 6869", `"hi"`},
		{"a3 3c2622", `"\u003c\u0026\""`},
		{"a2 c3a9", `"é"`},
		{"a1 ff", `"\ufffd"`},
		{"c4 03 010203", `"AQID"`},
		{"c4 00", `""`},
		{"90", `[]`},
		{"93 01 a1 78 90", `[1,"x",[]]`},
		{"80", `{}`},
		{"82 a1 61 01 a1 62 92 c3 c0", `{"a":1,"b":[true,null]}`},
		{"82 01 a1 61 c3 a1 62", `{"1":"a","true":"b"}`},
		{"d6 ff 00000001", `"1970-01-01T00:00:01Z"`},
		{"d7 ff 00000004 00000002", `"1970-01-01T00:00:02.000000001Z"`},
		{"c7 0c ff 00000005 0000000000000003", `"1970-01-01T00:00:03.000000005Z"`},
	} {
		got, err := MessagePackToJSON(nil, unhexT(t, tc.mp))
		if err != nil {
			t.Errorf("% s: %v", tc.mp, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s: %s, want %s", tc.mp, got, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: %s is not valid JSON", tc.mp, got)
		}
	}
	for _, tc := range []struct {
		mp   string
		want error
	}{
		{"d4 01 00", ErrNoJSON},            // an extension of another type
		{"cb 7ff8000000000000", ErrNoJSON}, // NaN
		{"ca 7f800000", ErrNoJSON},         // +Inf
		{"81 c0 01", ErrNoJSON},            // nil key
		{"81 90 01", ErrNoJSON},            // array key
		{"81 c4 01 00 01", ErrNoJSON},      // bin key
		{"", ErrInvalidMsgpack},
		{"c1", ErrInvalidMsgpack},
		{"92 01", ErrInvalidMsgpack},
		{"a3 6869", ErrInvalidMsgpack},
		{"01 02", ErrInvalidMsgpack},
		{"d6 ff 0000", ErrInvalidMsgpack},
		{"d5 ff 0000", ErrInvalidMsgpack}, // a 2-byte timestamp
		{"d7 ff ffffffff 00000000", ErrInvalidMsgpack},
	} {
		got, err := MessagePackToJSON([]byte("x"), unhexT(t, tc.mp))
		if !errors.Is(err, tc.want) || string(got) != "x" {
			t.Errorf("%s: %v %q, want %v and dst unchanged", tc.mp, err, got, tc.want)
		}
	}
	deep := append(bytes.Repeat([]byte{0x91}, maxDepth+2), 0xc0)
	if _, err := MessagePackToJSON(nil, deep); !errors.Is(err, ErrInvalidMsgpack) {
		t.Errorf("%d levels deep: %v", maxDepth+2, err)
	}
}

// FuzzMessagePackToJSON: JSON made from any MessagePack value is valid
// JSON, and JSON → MessagePack → JSON gives back the same value (invalid
// UTF-8 became U+FFFD the first time).
func FuzzMessagePackToJSON(f *testing.F) {
	for _, s := range []string{"93 01 a1 78 90", "82 a1 61 cb 3ff8000000000000 a1 62 92 c3 c0", "c4 03 010203", "d6 ff 00000001"} {
		f.Add(unhexT(f, s))
	}
	f.Fuzz(func(t *testing.T, mp []byte) {
		js, err := MessagePackToJSON(nil, mp)
		if err != nil {
			return
		}
		if !json.Valid(js) {
			t.Fatalf("% x: %s is not valid JSON", mp, js)
		}
		back, err := JSONToMessagePack(nil, js)
		if err != nil {
			t.Fatalf("% x: %s does not convert back: %v", mp, js, err)
		}
		again, err := MessagePackToJSON(nil, back)
		var v1, v2 any
		if err != nil || json.Unmarshal(js, &v1) != nil || json.Unmarshal(again, &v2) != nil || !reflect.DeepEqual(v1, v2) {
			t.Fatalf("% x: %s, then %s (%v)", mp, js, again, err)
		}
	})
}

// TestJSONRecordsToMessagePack: each message a server sends, as the
// REST API, an upstream app or an ASP.NET server without MessagePack
// writes it in JSON, becomes the MessagePack record of the same message,
// byte for byte what MessagePack's own appenders write.
func TestJSONRecordsToMessagePack(t *testing.T) {
	mp := MessagePack
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		json string
		want []byte
	}{
		{`{"type":1,"target":"t","arguments":["hi",1,1.5,{"a":[null,true]}]}`,
			must(mp.AppendInvocation(nil, "", "t", unhexT(t, "94 a2 6869 01 cb 3ff8000000000000 81 a1 61 92 c0 c3")))},
		{`{"type":1,"target":"t"}`, must(mp.AppendInvocation(nil, "", "t", nil))},
		{`{"type":1,"invocationId":"7","target":"t","arguments":[]}`, must(mp.AppendInvocation(nil, "7", "t", []byte{0x90}))},
		{`{"type":2,"invocationId":"1","item":{"x":2}}`, must(mp.AppendStreamItem(nil, "1", unhexT(t, "81 a1 78 02")))},
		{`{"type":3,"invocationId":"1","result":"ok"}`, must(mp.AppendCompletion(nil, "1", unhexT(t, "a2 6f6b")))},
		{`{"type":3,"invocationId":"1","result":null}`, must(mp.AppendCompletion(nil, "1", []byte{0xc0}))},
		{`{"type":3,"invocationId":"1"}`, must(mp.AppendCompletion(nil, "1", nil))},
		{`{"type":3,"invocationId":"1","error":"no"}`, mp.AppendCompletionError(nil, "1", "no")},
		{`{"type":6}`, mp.Ping()},
		{`{"type":7,"error":"bye","allowReconnect":true}`, mp.AppendClose(nil, "bye", true)},
		{`{"type":7}`, mp.AppendClose(nil, "", false)},
		{`{"type":8,"sequenceId":3}`, mp.AppendAck(nil, 3)},
		{`{"type":9,"sequenceId":300}`, mp.AppendSequence(nil, 300)},
	} {
		got, err := JSONRecordsToMessagePack(nil, []byte(tc.json+"\x1e"))
		if err != nil {
			t.Errorf("%s: %v", tc.json, err)
			continue
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s:\n got % x\nwant % x", tc.json, got, tc.want)
		}
	}
	// Several records in one message: each converted, in order.
	two := "{\"type\":1,\"target\":\"a\",\"arguments\":[1]}\x1e{\"type\":6}\x1e"
	got, err := JSONRecordsToMessagePack([]byte{0xee}, []byte(two))
	want := append(append([]byte{0xee}, must(mp.AppendInvocation(nil, "", "a", []byte{0x91, 0x01}))...), mp.Ping()...)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("two records: % x (%v), want % x", got, err, want)
	}
	for _, bad := range []string{
		`{"type":1,"target":"t","arguments":{"a":1}}` + "\x1e", // arguments not an array
		`{"type":1,"target":"t","arguments":[1,]}` + "\x1e",
		`{"type":4,"invocationId":"1","target":"t","arguments":[]}` + "\x1e", // clients send these
		`{"target":"t"}` + "\x1e",
		`[1]` + "\x1e",
		`{"type":6}`, // no separator
		"{\"type\":1,\"target\":\"t\",\"arguments\":[\"\xff\"]}\x1e",
	} {
		got, err := JSONRecordsToMessagePack([]byte("x"), []byte(bad))
		if err == nil || string(got) != "x" {
			t.Errorf("%q: % x %v, want an error and dst unchanged", bad, got, err)
		}
	}
}

// FuzzJSONRecordsToMessagePack: whatever it accepts becomes whole
// MessagePack records, one per JSON record, of the same types.
func FuzzJSONRecordsToMessagePack(f *testing.F) {
	for _, s := range []string{
		"{\"type\":1,\"target\":\"t\",\"arguments\":[1,\"a\",{\"b\":null}]}\x1e",
		"{\"type\":3,\"invocationId\":\"1\",\"result\":1.5}\x1e{\"type\":6}\x1e",
		"{\"type\":7,\"error\":\"x\",\"allowReconnect\":true}\x1e",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		out, err := JSONRecordsToMessagePack(nil, src)
		if err != nil {
			return
		}
		var types []MessageType
		JSON.Split(src, func(rec []byte) error {
			m, _ := JSON.Parse(rec) // encoding/json's reading, as the transcoder's
			types = append(types, m.Type)
			return nil
		})
		i := 0
		err = MessagePack.Split(out, func(rec []byte) error {
			if i >= len(types) || MessagePack.PeekType(rec) != types[i] {
				t.Fatalf("%q: record %d is % x", src, i, rec)
			}
			if _, err := msgp.Skip(rec); err != nil {
				t.Fatalf("%q: record %d % x: %v", src, i, rec, err)
			}
			i++
			return nil
		})
		if err != nil || i != len(types) {
			t.Fatalf("%q: % x splits into %d records (%v), want %d", src, out, i, err, len(types))
		}
	})
}

// TestMessagePackToJSONFirstBytes: each kind of value at both ends of its
// range of first bytes (a fixint 0x00 and 0x7f, a negative fixint 0xe0
// and 0xff, ...) converts, and the bytes that start nothing (0xc1) or an
// extension other than a timestamp say so with their own error.
func TestMessagePackToJSONFirstBytes(t *testing.T) {
	fixstr31 := "bf" + strings.Repeat("61", 31)
	fixmap15, fixarr15 := "8f", "9f"
	wantMap, wantArr := "{", "["
	for i := range 15 {
		fixmap15 += "a1" + hex.EncodeToString([]byte{byte('a' + i)}) + "00"
		fixarr15 += "00"
		if i > 0 {
			wantMap += ","
			wantArr += ","
		}
		wantMap += `"` + string(rune('a'+i)) + `":0`
		wantArr += "0"
	}
	for _, tc := range []struct{ mp, want string }{
		{"00", "0"}, {"7f", "127"}, {"e0", "-32"}, {"ff", "-1"},
		{"d080", "-128"}, {"d380" + "00000000000000", "-9223372036854775808"},
		{"ccff", "255"}, {"cfffffffffffffffff", "18446744073709551615"},
		{"c0", "null"}, {"c2", "false"}, {"c3", "true"},
		{"ca3fc00000", "1.5"}, {"cb3ff8000000000000", "1.5"},
		{"a0", `""`}, {fixstr31, `"` + strings.Repeat("a", 31) + `"`}, {"d900", `""`}, {"db00000000", `""`},
		{"c400", `""`}, {"c600000000", `""`},
		{"90", "[]"}, {fixarr15, wantArr + "]"}, {"dc0000", "[]"}, {"dd00000000", "[]"},
		{"80", "{}"}, {fixmap15, wantMap + "}"}, {"de0000", "{}"}, {"df00000000", "{}"},
		{"d6ff00000000", `"1970-01-01T00:00:00Z"`},
	} {
		got, err := MessagePackToJSON(nil, unhexT(t, tc.mp))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %s, %v; want %s", tc.mp, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		mp   string
		want error
	}{
		{"c1", ErrInvalidMsgpack},
		{"d40500", ErrNoJSON}, {"d805" + strings.Repeat("00", 16), ErrNoJSON},
		{"c70005", ErrNoJSON}, {"c9" + "00000000" + "05", ErrNoJSON},
	} {
		if _, err := MessagePackToJSON(nil, unhexT(t, tc.mp)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.mp, err, tc.want)
		}
	}
}
