package poller

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCompactAddr(t *testing.T) {
	v4 := sockaddrToAddr(&unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 2}, Port: 54321})
	v6 := sockaddrToAddr(&unix.SockaddrInet6{Addr: netip.MustParseAddr("2001:db8::7").As16(), Port: 443})
	mapped := sockaddrToAddr(&unix.SockaddrInet6{Addr: netip.MustParseAddr("::ffff:10.1.2.3").As16(), Port: 80})
	cases := []struct {
		name string
		a    net.Addr
		want string // AddrPortOf(a).String()
		str  string // a.String(), "" to skip
	}{
		{"ipv4", v4, "127.0.0.2:54321", "127.0.0.2:54321"},
		{"ipv6", v6, "[2001:db8::7]:443", "[2001:db8::7]:443"},
		{"v4-mapped is unmapped", mapped, "10.1.2.3:80", ""},
		{"net.TCPAddr", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}, "192.0.2.1:9", ""},
		{"other kind with AddrPort", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 5), Port: 10}, "192.0.2.5:10", ""},
		{"other kind, parsed", strAddr("192.0.2.6:11"), "192.0.2.6:11", ""},
		{"other kind, unparsable", strAddr("nowhere"), "invalid AddrPort", ""},
		{"unix: none", &net.UnixAddr{Name: "/x", Net: "unix"}, "invalid AddrPort", ""},
		{"nil: none", nil, "invalid AddrPort", ""},
	}
	for _, c := range cases {
		if got := AddrPortOf(c.a).String(); got != c.want {
			t.Errorf("%s: AddrPortOf = %s, want %s", c.name, got, c.want)
		}
		if c.str != "" {
			if got := c.a.String(); got != c.str {
				t.Errorf("%s: String() = %q, want %q", c.name, got, c.str)
			}
			if c.a.Network() != "tcp" {
				t.Errorf("%s: Network() = %q", c.name, c.a.Network())
			}
		}
	}
}

// strAddr is a net.Addr known only by its String.
type strAddr string

func (a strAddr) Network() string { return "test" }
func (a strAddr) String() string  { return string(a) }
