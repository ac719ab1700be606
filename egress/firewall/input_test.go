package firewall

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// trackAlready starts conntrack in the runner namespace with a table of
// its own, as docker's NAT rules have it running on a runner: connections
// opened before our table are then in it, and established when their next
// segment comes.
func trackAlready(t *testing.T, n *testnet.Net) {
	t.Helper()
	nft := n.In(n.Runner, "nft", "-f", "-")
	nft.Stdin = strings.NewReader("table ip warm {\n chain c {\n  type filter hook output priority 10; policy accept;\n  ct state established counter\n }\n}\n")
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
}

// details returns what the far end logged for proto to dst, in order.
func details(n *testnet.Net, proto string, dst netip.AddrPort) string {
	var d []string
	for _, h := range n.HitsTo(proto, dst.Addr(), dst.Port()) {
		d = append(d, h.Detail)
	}
	return strings.Join(d, ",")
}

// waitDetails waits up to 3 s for the far end to have logged want.
func waitDetails(n *testnet.Net, proto string, dst netip.AddrPort, want string) string {
	deadline := time.Now().Add(3 * time.Second)
	got := details(n, proto, dst)
	for got != want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		got = details(n, proto, dst)
	}
	return got
}

// TestResolverPortClosedToEstablished: the input chain keeps the
// resolver's and the relay's ports to loopback and docker's bridges even
// for a connection from outside that conntrack already calls established
// (opened before the table went in, as the agent's own listeners are).
// A port we do not guard, on a connection opened the same way, keeps
// working: established packets take the chain's fast path.
func TestResolverPortClosedToEstablished(t *testing.T) {
	testnet.Skip(t, "nft")
	n := testnet.New(t)
	trackAlready(t, n)
	n.StartServersIn(n.Runner, os.Args[0], "echo::153", "echo::154", "echo::155")
	conns := map[uint16]net.Conn{}
	for _, port := range []uint16{153, 154, 155} {
		var c net.Conn
		if err := testnet.InNamespace(n.Internet, func() (err error) {
			c, err = net.DialTimeout("tcp", netip.AddrPortFrom(testnet.Runner4, port).String(), 2*time.Second)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[port] = c
		if _, err := c.Write([]byte("before\n")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "before\n" {
			t.Fatalf("port %d before the table: echo %q, %v", port, line, err)
		}
	}

	install(t, n, Config{Block: true, ResolverPort: 153, RelayPort: 154})
	for _, c := range conns {
		if _, err := c.Write([]byte("after\n")); err != nil {
			t.Fatal(err)
		}
	}
	at := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(testnet.Runner4, port) }
	if got := waitDetails(n, "tcp", at(155), "before,after"); got != "before,after" {
		t.Errorf("port 155: the server read %q; want \"before,after\"", got)
	}
	time.Sleep(300 * time.Millisecond) // the guarded ports' "after" would have come by now
	for _, port := range []uint16{153, 154} {
		if got := details(n, "tcp", at(port)); got != "before" {
			t.Errorf("port %d: the server read %q; want \"before\"", port, got)
		}
	}
}

// TestDNSFlowFromBeforeTheTable: a DNS flow that conntrack already knows
// when the table goes in is never redirected (NAT is decided on a flow's
// first packet), so it would reach a resolver of the client's choosing.
// Its later packets, UDP and TCP, are denied, not taken for an
// established flow the chain lets pass.
func TestDNSFlowFromBeforeTheTable(t *testing.T) {
	testnet.Skip(t, "nft")
	n := testnet.New(t)
	trackAlready(t, n)
	dns := netip.AddrPortFrom(testnet.Host4(53), 53)
	// The UDP server answers every datagram: the answer makes the flow
	// established.
	n.StartServers(os.Args[0], "echo:"+dns.String(), "udp:"+dns.String())
	var uc, tc net.Conn
	if err := testnet.InNamespace(n.Runner, func() (err error) {
		if uc, err = net.Dial("udp", dns.String()); err != nil {
			return err
		}
		tc, err = net.DialTimeout("tcp", dns.String(), 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close(); tc.Close() })
	for _, c := range []net.Conn{uc, tc} {
		if _, err := c.Write([]byte("before\n")); err != nil { // 7 bytes
			t.Fatal(err)
		}
	}
	if got := waitDetails(n, "udp", dns, "7 bytes"); got != "7 bytes" {
		t.Fatalf("before the table: the UDP server logged %q", got)
	}
	if got := waitDetails(n, "tcp", dns, "before"); got != "before" {
		t.Fatalf("before the table: the TCP server read %q", got)
	}
	_ = uc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := uc.Read(make([]byte, 16)); err != nil {
		t.Fatalf("before the table: no UDP answer: %v", err)
	}

	install(t, n, Config{Block: true})
	for _, c := range []net.Conn{uc, tc} {
		_, _ = c.Write([]byte("after\n")) // 6 bytes
	}
	time.Sleep(500 * time.Millisecond)
	if got := details(n, "udp", dns); got != "7 bytes" {
		t.Errorf("UDP DNS flow from before the table: the server logged %q; want only \"7 bytes\"", got)
	}
	if got := details(n, "tcp", dns); got != "before" {
		t.Errorf("TCP DNS flow from before the table: the server read %q; want only \"before\"", got)
	}
}
