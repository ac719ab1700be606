package proc

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDiagExact checks that the cheap exact lookup (no dump) finds each kind
// of socket on its own, so Owner's dump fallback is not what makes TestOwner pass.
func TestDiagExact(t *testing.T) {
	inet := inetNSForTest(t)
	tcp4, tcp4Clients := tcpServerForTest(t, inet, "tcp4", "198.18.0.2:0")
	tcp6, tcp6Clients := tcpServerForTest(t, inet, "tcp6", "[2001:db8::2]:0")
	udp4, udp4Clients := udpServerForTest(t, inet, "udp4", "198.18.0.2:0")
	udp6, udp6Clients := udpServerForTest(t, inet, "udp6", "[2001:db8::2]:0")
	c := newDiagConn()
	t.Cleanup(func() { c.close() })

	tests := []struct {
		name    string
		dial    func() (net.Conn, error)
		proto   uint8
		clients <-chan netip.AddrPort
		server  netip.AddrPort
		family  uint8
	}{
		{"tcp4", func() (net.Conn, error) { return net.Dial("tcp4", tcp4.String()) }, unix.IPPROTO_TCP, tcp4Clients, tcp4, unix.AF_INET},
		{"tcp6", func() (net.Conn, error) { return net.Dial("tcp6", tcp6.String()) }, unix.IPPROTO_TCP, tcp6Clients, tcp6, unix.AF_INET6},
		{"tcp ipv4-mapped", func() (net.Conn, error) { return dialMapped(unix.SOCK_STREAM, tcp4) }, unix.IPPROTO_TCP, tcp4Clients, tcp4, unix.AF_INET6},
		{"udp4 connected", func() (net.Conn, error) { return dialSend("udp4", udp4) }, unix.IPPROTO_UDP, udp4Clients, udp4, unix.AF_INET},
		{"udp6 connected", func() (net.Conn, error) { return dialSend("udp6", udp6) }, unix.IPPROTO_UDP, udp6Clients, udp6, unix.AF_INET6},
		{"udp ipv4-mapped", func() (net.Conn, error) { return dialMapped(unix.SOCK_DGRAM, udp4) }, unix.IPPROTO_UDP, udp4Clients, udp4, unix.AF_INET6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			local := waitAddr(t, tc.clients)
			s, err := c.exact(tc.proto, local, tc.server)
			if err != nil {
				t.Fatalf("exact(%v, %v): %v", local, tc.server, err)
			}
			if s.inode == 0 || s.family != tc.family || s.local.Port() != local.Port() {
				t.Errorf("exact = %+v, want a live family-%d socket on port %d", s, tc.family, local.Port())
			}
		})
	}
}

// dialSend dials UDP and sends one datagram so the server sees the client.
func dialSend(network string, to netip.AddrPort) (net.Conn, error) {
	c, err := net.Dial(network, to.String())
	if err == nil {
		_, err = c.Write([]byte("x"))
	}
	return c, err
}

// dialMapped connects an AF_INET6 socket to the IPv4-mapped form of to.
func dialMapped(typ int, to netip.AddrPort) (net.Conn, error) {
	fd, err := unix.Socket(unix.AF_INET6, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	sa := &unix.SockaddrInet6{Port: int(to.Port()), Addr: netip.AddrFrom16(to.Addr().As16()).As16()}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if typ == unix.SOCK_DGRAM {
		unix.Write(fd, []byte("x"))
	}
	f := os.NewFile(uintptr(fd), "mapped")
	defer f.Close()
	return net.FileConn(f)
}

// TestTCPConnsFindsAConnection: a loopback connection shows up from both
// ends, unmapped where the socket is AF_INET6 with IPv4-mapped addresses (a
// dual-stack listener's accepted socket).
func TestTCPConnsFindsAConnection(t *testing.T) {
	for _, nw := range []string{"tcp4", "tcp"} {
		l, err := net.Listen(nw, map[string]string{"tcp4": "127.0.0.1:0", "tcp": ":0"}[nw])
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		client := netip.MustParseAddrPort(c.LocalAddr().String())
		server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		conns, err := TCPConns()
		if err != nil {
			t.Fatal(err)
		}
		var fromClient, fromServer bool
		for _, k := range conns {
			fromClient = fromClient || k == Conn{Local: client, Remote: server}
			fromServer = fromServer || k == Conn{Local: server, Remote: client}
		}
		if !fromClient || !fromServer {
			t.Errorf("%s: client side found %v, server side found %v in %v", nw, fromClient, fromServer, conns)
		}
	}
}
