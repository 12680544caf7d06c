package poller

import (
	"net"

	"golang.org/x/sys/unix"
)

// sockaddrToAddr is the peer address of an accepted socket; never nil.
// TCP addresses are the compact kind (addr.go).
func sockaddrToAddr(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return newInet4Addr(a.Addr, a.Port)
	case *unix.SockaddrInet6:
		return newInet6Addr(a.Addr, a.Port)
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unix"}
	}
	return &net.TCPAddr{}
}
