package firewall

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/internal/testnet"
	"github.com/harden-runner/harden-runner/proc"
)

// sendUDP sends payload from src (port 68: root's privilege) to dst in
// namespace ns, bound to device dev if not "".
func sendUDP(ns string, src, dst netip.AddrPort, dev, payload string) error {
	return testnet.InNamespace(ns, func() error {
		fam := unix.AF_INET
		if dst.Addr().Is6() {
			fam = unix.AF_INET6
		}
		fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
		if dev != "" {
			if err := unix.BindToDevice(fd, dev); err != nil {
				return err
			}
		}
		if err := unix.Bind(fd, sockaddr(src)); err != nil {
			return fmt.Errorf("bind %v: %w", src, err)
		}
		return unix.Sendto(fd, []byte(payload), 0, sockaddr(dst))
	})
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// sendRawTCP sends one TCP segment with flags and payload from src to dst
// over a raw IPv4 socket in ns (CAP_NET_RAW, which docker grants root in a
// container): no connection, no SYN.
func sendRawTCP(ns string, src, dst netip.AddrPort, flags byte, payload string) error {
	seg := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(seg[0:], src.Port())
	binary.BigEndian.PutUint16(seg[2:], dst.Port())
	binary.BigEndian.PutUint32(seg[4:], 0x1000)
	binary.BigEndian.PutUint32(seg[8:], 0x2000)
	seg[12] = 5 << 4
	seg[13] = flags
	binary.BigEndian.PutUint16(seg[14:], 65535)
	copy(seg[20:], payload)
	// Checksum over the pseudo-header and the segment: conntrack drops
	// a bad one as invalid, which would test nothing.
	s, d := src.Addr().As4(), dst.Addr().As4()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, unix.IPPROTO_TCP, byte(len(seg)>>8), byte(len(seg)))
	var sum uint32
	for _, b := range [][]byte{pseudo, seg} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(seg[16:], ^uint16(sum))
	return testnet.InNamespace(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: s}); err != nil {
			return err
		}
		return unix.Sendto(fd, seg, 0, &unix.SockaddrInet4{Addr: d})
	})
}

// sendICMPv6 sends an ICMPv6 message of type typ with hop limit hops and
// payload from ns to dst (the kernel fills in the checksum).
func sendICMPv6(ns string, dst netip.Addr, typ byte, hops int, payload string) error {
	return testnet.InNamespace(ns, func() error {
		c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		defer c.Close()
		p := ipv6.NewPacketConn(c)
		if err := p.SetHopLimit(hops); err != nil {
			return err
		}
		if err := p.SetMulticastHopLimit(hops); err != nil {
			return err
		}
		msg := append([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, payload...)
		_, err = p.WriteTo(msg, nil, &net.IPAddr{IP: dst.AsSlice()})
		return err
	})
}

// TestSideDoorsClosed: root on the host and root in a container behind
// docker0 send payloads through each exemption the ruleset had for
// housekeeping (DHCP ports, TCP without SYN, NDP types) to an arbitrary
// test host. The far side's packet capture decides: every attack gets
// through without our table (so the test can fail), none with it in block
// mode, while real DHCP broadcasts still leave.
func TestSideDoorsClosed(t *testing.T) {
	testnet.Skip(t)
	n := testnet.New(t)
	ctr := n.AddContainer()
	capture := testnet.StartCapture(t, n.Internet)
	host := testnet.Host4(10)
	runner := netip.AddrPortFrom(testnet.Runner4, 68)
	container := netip.MustParseAddr("198.19.0.2")
	attacks := []struct {
		name string
		send func(marker string) error
	}{
		{"host udp from port 68", func(m string) error {
			return sendUDP(n.Runner, runner, netip.AddrPortFrom(host, 67), "", m)
		}},
		{"container udp from port 68", func(m string) error {
			return sendUDP(ctr, netip.AddrPortFrom(container, 68), netip.AddrPortFrom(host, 67), "", m)
		}},
		{"host dhcpv6 ports to a test host", func(m string) error {
			return sendUDP(n.Runner, netip.AddrPortFrom(testnet.Runner6, 546), netip.AddrPortFrom(testnet.Host6(10), 547), "", m)
		}},
		{"host raw PSH|ACK", func(m string) error {
			return sendRawTCP(n.Runner, netip.AddrPortFrom(testnet.Runner4, 40000), netip.AddrPortFrom(host, 443), 0x18, m)
		}},
		{"container raw PSH|ACK", func(m string) error {
			return sendRawTCP(ctr, netip.AddrPortFrom(container, 40001), netip.AddrPortFrom(host, 443), 0x18, m)
		}},
		{"host neighbour solicitation to a test host", func(m string) error {
			return sendICMPv6(n.Runner, testnet.Host6(10), 135, 255, m)
		}},
		{"host MLD report with hop limit 64", func(m string) error {
			return sendICMPv6(n.Runner, testnet.Host6(10), 131, 64, m)
		}},
	}
	for i, a := range attacks {
		m := fmt.Sprintf("before-%d-exfil", i)
		if err := a.send(m); err != nil {
			t.Fatalf("%s without our table: %v", a.name, err)
		}
		if !capture.WaitSaw(m, 2*time.Second) {
			t.Fatalf("%s: did not arrive even without our table: the test proves nothing", a.name)
		}
	}
	install(t, n, Config{Block: true})
	for i, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			m := fmt.Sprintf("after-%d-exfil", i)
			_ = a.send(m) // a refused send is fine; what arrives decides
			if capture.WaitSaw(m, 300*time.Millisecond) {
				t.Errorf("%s reached the far side through our table", a.name)
			}
		})
	}
	t.Run("dhcp broadcast still leaves", func(t *testing.T) {
		if err := sendUDP(n.Runner, runner, netip.MustParseAddrPort("255.255.255.255:67"), "eth0", "dhcp-discover"); err != nil {
			t.Fatal(err)
		}
		if !capture.WaitSaw("dhcp-discover", 2*time.Second) {
			t.Error("a DHCP broadcast from the client port did not leave")
		}
	})
}

// TestPreexistingConnectionsKeepWorking: two connections open before the
// table, and before anything in the namespace used conntrack, so their
// next segments are new to it and carry no SYN. The one in the snapshot
// keeps working; the one left out of it is refused, so it is the snapshot,
// not a blanket exemption, that keeps the first one alive.
func TestPreexistingConnectionsKeepWorking(t *testing.T) {
	testnet.Skip(t)
	n := testnet.New(t)
	n.StartServers(os.Args[0], "echo::7000")
	var kept, cut net.Conn
	err := testnet.InNamespace(n.Runner, func() error {
		var err error
		if kept, err = net.Dial("tcp", "198.18.1.12:7000"); err != nil {
			return err
		}
		cut, err = net.Dial("tcp", "198.18.1.13:7000")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	defer cut.Close()
	var conns []proc.Conn
	if err := testnet.InNamespace(n.Runner, func() (err error) { conns, err = proc.TCPConns(); return err }); err != nil {
		t.Fatal(err)
	}
	var pre []Conn
	for _, c := range conns {
		if c.Remote.Addr() == testnet.Host4(12) {
			pre = append(pre, Conn{c.Local, c.Remote})
		}
	}
	if len(pre) != 1 {
		t.Fatalf("snapshot has %d connections to 198.18.1.12, want 1: %v", len(pre), conns)
	}
	install(t, n, Config{Block: true, Preexisting: pre})
	echo := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintln(c, "ping"); err != nil {
			return err
		}
		_, err := bufio.NewReader(c).ReadString('\n')
		return err
	}
	if err := echo(kept); err != nil {
		t.Errorf("connection from before the agent broke: %v", err)
	}
	if err := echo(cut); err == nil {
		t.Error("a connection missing from the snapshot got through mid-stream")
	}
}

// TestMarkOnlyReachesUpstreams: root gives its own socket the resolver's
// mark (SO_MARK; a chain of another table could set it on any packet) and
// sends to a test host: without Upstreams in the config (the old ruleset)
// it arrives, with them it does not, while a marked query to the upstream
// still leaves.
func TestMarkOnlyReachesUpstreams(t *testing.T) {
	testnet.Skip(t)
	upstream := netip.AddrPortFrom(testnet.DNS4, 53)
	for i, c := range []struct {
		upstreams []netip.AddrPort
		dst       netip.AddrPort
		want      bool
	}{
		{nil, netip.AddrPortFrom(testnet.Host4(10), 9999), true},
		{[]netip.AddrPort{upstream}, netip.AddrPortFrom(testnet.Host4(10), 9999), false},
		{[]netip.AddrPort{upstream}, netip.AddrPortFrom(testnet.Host4(10), 53), false},
		{[]netip.AddrPort{upstream}, upstream, true},
	} {
		t.Run(fmt.Sprintf("%v to %v", c.upstreams, c.dst), func(t *testing.T) {
			n := testnet.New(t)
			capture := testnet.StartCapture(t, n.Internet)
			install(t, n, Config{Block: true, Upstreams: c.upstreams})
			m := fmt.Sprintf("marked-%d", i)
			err := testnet.InNamespace(n.Runner, func() error {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				defer unix.Close(fd)
				if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, DefaultMark); err != nil {
					return err
				}
				return unix.Sendto(fd, []byte(m), 0, sockaddr(c.dst))
			})
			if err != nil {
				t.Fatal(err)
			}
			wait := 300 * time.Millisecond
			if c.want {
				wait = 2 * time.Second
			}
			if got := capture.WaitSaw(m, wait); got != c.want {
				t.Errorf("marked datagram arrived %v, want %v", got, c.want)
			}
		})
	}
}
