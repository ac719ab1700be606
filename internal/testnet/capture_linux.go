package testnet

import (
	"encoding/binary"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Packet is one IP packet a Capture saw arrive.
type Packet struct {
	Proto   uint8 // IP protocol: unix.IPPROTO_TCP, _UDP, _ICMPV6, ...
	Src     netip.Addr
	Dst     netip.Addr
	SPort   uint16 // TCP and UDP only
	DPort   uint16
	Payload []byte // after the TCP/UDP header; the whole ICMP message for ICMP
}

// Capture records every IPv4 and IPv6 packet that arrives in a namespace
// (AF_PACKET, all interfaces, incoming only): the far side's own view of
// what got out, whatever the servers there answer.
type Capture struct {
	fd   int
	mu   sync.Mutex
	pkts []Packet
	done chan struct{}
}

// StartCapture starts a capture in namespace ns, stopped at t's cleanup.
func StartCapture(t testing.TB, ns string) *Capture {
	t.Helper()
	c := &Capture{fd: -1, done: make(chan struct{})}
	err := InNamespace(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		c.fd = fd
		return err
	})
	if err != nil {
		t.Fatalf("testnet: capture in %s: %v", ns, err)
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	_ = unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	go c.read()
	t.Cleanup(func() {
		close(c.done)
		_ = unix.Close(c.fd)
	})
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) read() {
	buf := make([]byte, 65536)
	for {
		select {
		case <-c.done:
			return
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			continue // timeout: look at done again
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if p, ok := parsePacket(buf[:n]); ok {
			c.mu.Lock()
			c.pkts = append(c.pkts, p)
			c.mu.Unlock()
		}
	}
}

// Packets returns what arrived so far.
func (c *Capture) Packets() []Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Packet(nil), c.pkts...)
}

// Saw reports whether a packet carrying marker in its payload has arrived.
func (c *Capture) Saw(marker string) bool {
	for _, p := range c.Packets() {
		if strings.Contains(string(p.Payload), marker) {
			return true
		}
	}
	return false
}

// WaitSaw waits up to d for a packet carrying marker.
func (c *Capture) WaitSaw(marker string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !c.Saw(marker) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func parsePacket(b []byte) (Packet, bool) {
	var p Packet
	var l4 []byte
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		ihl := int(b[0]&0xf) * 4
		if ihl < 20 || len(b) < ihl {
			return p, false
		}
		p.Proto = b[9]
		p.Src = netip.AddrFrom4([4]byte(b[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		l4 = b[ihl:]
	case len(b) >= 40 && b[0]>>4 == 6:
		p.Proto = b[6] // no extension headers in what tests send
		p.Src = netip.AddrFrom16([16]byte(b[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[40:]
	default:
		return p, false
	}
	switch p.Proto {
	case unix.IPPROTO_TCP:
		if len(l4) < 20 || len(l4) < int(l4[12]>>4)*4 {
			return p, false
		}
		p.SPort, p.DPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		p.Payload = append([]byte(nil), l4[int(l4[12]>>4)*4:]...)
	case unix.IPPROTO_UDP:
		if len(l4) < 8 {
			return p, false
		}
		p.SPort, p.DPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		p.Payload = append([]byte(nil), l4[8:]...)
	default:
		p.Payload = append([]byte(nil), l4...)
	}
	return p, true
}

// AddContainer makes a "container" namespace behind a bridge named docker0
// in the runner namespace, as docker sets one up (on test addresses:
// bridge 198.19.0.1, container 198.19.0.2), with forwarding on in the
// runner namespace and a route back in the internet one (no NAT, so
// conntrack only runs once a test's rules use it). Removed at cleanup.
func (n *Net) AddContainer() string {
	n.t.Helper()
	ctr := n.Runner + "c"
	n.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ctr).Run() })
	for _, s := range [][]string{
		{"ip", "netns", "add", ctr},
		{"ip", "-n", n.Runner, "link", "add", "docker0", "type", "bridge"},
		{"ip", "-n", n.Runner, "addr", "add", "198.19.0.1/24", "dev", "docker0"},
		{"ip", "-n", n.Runner, "link", "set", "docker0", "up"},
		{"ip", "-n", n.Runner, "link", "add", "vethc", "type", "veth", "peer", "name", "eth0", "netns", ctr},
		{"ip", "-n", n.Runner, "link", "set", "vethc", "master", "docker0", "up"},
		{"ip", "-n", ctr, "link", "set", "lo", "up"},
		{"ip", "-n", ctr, "addr", "add", "198.19.0.2/24", "dev", "eth0"},
		{"ip", "-n", ctr, "link", "set", "eth0", "up"},
		{"ip", "-n", ctr, "route", "add", "default", "via", "198.19.0.1"},
		{"ip", "-n", n.Internet, "route", "add", "198.19.0.0/24", "via", "198.18.0.1"},
		{"ip", "netns", "exec", n.Runner, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	} {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			n.t.Fatalf("testnet: %s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	return ctr
}
