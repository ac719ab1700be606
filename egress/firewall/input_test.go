package firewall

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// lineServer accepts TCP connections on a listener and keeps every line
// it reads (the far end's log of what got through).
type lineServer struct {
	mu    sync.Mutex
	lines []string
}

func (s *lineServer) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				s.mu.Lock()
				s.lines = append(s.lines, sc.Text())
				s.mu.Unlock()
				_, _ = c.Write([]byte(sc.Text() + "\n"))
			}
		}()
	}
}

func (s *lineServer) got() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, ",")
}

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
	servers := map[string]*lineServer{}
	for _, port := range []string{"153", "154", "155"} {
		s := &lineServer{}
		servers[port] = s
		var l net.Listener
		if err := testnet.InNamespace(n.Runner, func() (err error) {
			l, err = net.Listen("tcp", ":"+port)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go s.serve(l)
	}
	conns := map[string]net.Conn{}
	for port := range servers {
		var c net.Conn
		if err := testnet.InNamespace(n.Internet, func() (err error) {
			c, err = net.DialTimeout("tcp", testnet.Runner4.String()+":"+port, 2*time.Second)
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
			t.Fatalf("port %s before the table: echo %q, %v", port, line, err)
		}
	}

	install(t, n, Config{Block: true, ResolverPort: 153, RelayPort: 154})
	for _, c := range conns {
		if _, err := c.Write([]byte("after\n")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for servers["155"].got() != "before,after" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the guarded ports' "after" would have come by now
	for port, want := range map[string]string{"153": "before", "154": "before", "155": "before,after"} {
		if got := servers[port].got(); got != want {
			t.Errorf("port %s: the server read %q; want %q", port, got, want)
		}
	}
}

// udpLog keeps every datagram a UDP socket receives, and echoes it.
type udpLog struct {
	mu  sync.Mutex
	got []string
}

func (u *udpLog) serve(pc net.PacketConn) {
	buf := make([]byte, 512)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		u.mu.Lock()
		u.got = append(u.got, string(buf[:n]))
		u.mu.Unlock()
		_, _ = pc.WriteTo(buf[:n], from) // a reply makes the flow established

	}
}

func (u *udpLog) String() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return strings.Join(u.got, ",")
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
	dns := netip.AddrPortFrom(testnet.Host4(53), 53).String()
	udp, tcp := &udpLog{}, &lineServer{}
	if err := testnet.InNamespace(n.Internet, func() error {
		pc, err := net.ListenPacket("udp", dns)
		if err != nil {
			return err
		}
		t.Cleanup(func() { pc.Close() })
		go udp.serve(pc)
		l, err := net.Listen("tcp", dns)
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		go tcp.serve(l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var uc, tc net.Conn
	if err := testnet.InNamespace(n.Runner, func() (err error) {
		if uc, err = net.Dial("udp", dns); err != nil {
			return err
		}
		tc, err = net.DialTimeout("tcp", dns, 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close(); tc.Close() })
	for _, c := range []net.Conn{uc, tc} {
		if _, err := c.Write([]byte("before\n")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for (udp.String() != "before\n" || tcp.got() != "before") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if udp.String() != "before\n" || tcp.got() != "before" {
		t.Fatalf("before the table: UDP server read %q, TCP %q", udp.String(), tcp.got())
	}

	install(t, n, Config{Block: true})
	for _, c := range []net.Conn{uc, tc} {
		_, _ = c.Write([]byte("after\n"))
	}
	time.Sleep(500 * time.Millisecond)
	if got := udp.String(); got != "before\n" {
		t.Errorf("UDP DNS flow from before the table: the server read %q; want only \"before\\n\"", got)
	}
	if got := tcp.got(); got != "before" {
		t.Errorf("TCP DNS flow from before the table: the server read %q; want only \"before\"", got)
	}
}
