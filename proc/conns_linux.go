package proc

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Conn is one TCP connection of this machine: its local and remote address.
type Conn struct {
	Local, Remote netip.AddrPort
}

// TCP states of include/net/tcp_states.h that carry no connection.
const (
	tcpStateClose  = 7
	tcpStateListen = 10
)

// TCPConns lists the TCP connections (every socket with a peer: established
// or closing) in the caller's network namespace, from sock_diag. IPv4-mapped
// addresses of AF_INET6 sockets are unmapped, so an IPv4 connection is
// always IPv4 here. The firewall snapshots them at start so the connections
// that existed before it keep working (see egress/firewall).
func TCPConns() ([]Conn, error) {
	c := newDiagConn()
	defer c.close()
	var conns []Conn
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		err := c.dump(unix.IPPROTO_TCP, fam, 0, func(s diagSocket) bool {
			if s.state == tcpStateListen || s.state == tcpStateClose || s.remote.Port() == 0 {
				return true
			}
			conns = append(conns, Conn{
				Local:  netip.AddrPortFrom(s.local.Addr().Unmap(), s.local.Port()),
				Remote: netip.AddrPortFrom(s.remote.Addr().Unmap(), s.remote.Port()),
			})
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("proc: list TCP connections: %w", err)
		}
	}
	return conns, nil
}
