package relay

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h):
// the same number as SO_ORIGINAL_DST, at level SOL_IPV6. x/sys names only
// the IPv4 one.
const ip6tSOOriginalDst = unix.SO_ORIGINAL_DST

// originalDst returns where a connection that nftables redirected to us
// was headed, from its conntrack entry.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	v4 := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().Is4()
	var out netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v4 {
			// struct sockaddr_in fits IPv6Mreq's 16 bytes: family, port, address.
			var m *unix.IPv6Mreq
			if m, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST); serr == nil {
				out = netip.AddrPortFrom(netip.AddrFrom4([4]byte(m.Multiaddr[4:8])), binary.BigEndian.Uint16(m.Multiaddr[2:4]))
			}
			return
		}
		// struct sockaddr_in6 is the first member of IPv6MTUInfo.
		var m *unix.IPv6MTUInfo
		if m, serr = unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSOOriginalDst); serr == nil {
			port := binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, m.Addr.Port))
			out = netip.AddrPortFrom(netip.AddrFrom16(m.Addr.Addr).Unmap(), port)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("relay: original destination: %w", err)
	}
	return out, nil
}

// markControl sets SO_MARK on a socket before it connects.
func markControl(mark uint32) func(string, string, syscallRawConn) error {
	return func(_, _ string, c syscallRawConn) error {
		if mark == 0 {
			return nil
		}
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("relay: set SO_MARK: %w", serr)
		}
		return nil
	}
}
