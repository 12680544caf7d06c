package poller

import (
	"net"
	"net/netip"
)

// inet4Addr and inet6Addr are compact net.Addr values for accepted TCP
// connections: the address and port in 8 or 24 bytes instead of a
// net.TCPAddr and its IP slice (64 bytes), kept for every idle connection.
// AddrPort gives callers the address without parsing String.
type (
	inet4Addr [6]byte  // IPv4 address, port big-endian
	inet6Addr [18]byte // IPv6 address, port big-endian
)

func (a *inet4Addr) Network() string { return "tcp" }
func (a *inet4Addr) String() string  { return a.AddrPort().String() }

// AddrPort returns the address and port.
func (a *inet4Addr) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[:4])), uint16(a[4])<<8|uint16(a[5]))
}

func (a *inet6Addr) Network() string { return "tcp" }
func (a *inet6Addr) String() string  { return a.AddrPort().String() }

// AddrPort returns the address and port.
func (a *inet6Addr) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[:16])), uint16(a[16])<<8|uint16(a[17]))
}

func newInet4Addr(ip [4]byte, port int) net.Addr {
	a := new(inet4Addr)
	copy(a[:4], ip[:])
	a[4], a[5] = byte(port>>8), byte(port)
	return a
}

func newInet6Addr(ip [16]byte, port int) net.Addr {
	a := new(inet6Addr)
	copy(a[:16], ip[:])
	a[16], a[17] = byte(port>>8), byte(port)
	return a
}

// AddrPortOf returns the IP address and port of a connection's address:
// directly for the compact addresses and *net.TCPAddr, by parsing String
// otherwise. IPv4-mapped IPv6 addresses are unmapped. The zero AddrPort
// means it could not be told.
func AddrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch t := a.(type) {
	case nil:
		return ap
	case interface{ AddrPort() netip.AddrPort }: // ours and *net.TCPAddr
		ap = t.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.AddrPort{}
		}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
