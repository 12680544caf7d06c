package sse

import "testing"

func TestAppendEvent(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"{}\x1e", "data: {}\x1e\r\n\r\n"},
		{"", "data: \r\n\r\n"},
		{"a\nb", "data: a\r\ndata: b\r\n\r\n"},
		{"a\r\nb\r\n", "data: a\r\ndata: b\r\n\r\n"},
		{"a\n\nb", "data: a\r\ndata: \r\ndata: b\r\n\r\n"},
	} {
		if got := string(AppendEvent(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("AppendEvent(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if n := EventLen([]byte(tc.in)); n != len(tc.want) {
			t.Errorf("EventLen(%q) = %d, want %d", tc.in, n, len(tc.want))
		}
	}
}
