package firewall

import (
	"context"
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/egress/gate"
	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/testnet"
)

func TestMain(m *testing.M) {
	testnet.MaybeServe()
	os.Exit(m.Run())
}

// addrs is the merged ranges of address entries, as the agent passes them.
func addrs(eps []policy.Endpoint) iter.Seq[policy.AddrRange] {
	return policy.New(policy.Block, eps, false).AddrRanges()
}

// install puts a firewall into n's runner namespace, with a gate reading
// its queue (the gate's records are kept in *flows when flows is not nil).
func install(t *testing.T, n *testnet.Net, cfg Config) *Firewall {
	t.Helper()
	f, err := os.Open(filepath.Join("/var/run/netns", n.Runner))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cfg.NetNS = int(f.Fd())
	if cfg.ResolverPort == 0 {
		cfg.ResolverPort = 153
	}
	fw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gate.New(gate.Config{Queue: fw.Queue(), Queues: fw.Queues(), Block: cfg.Block, RejectMark: fw.RejectMark(), NetNS: cfg.NetNS, Emit: func(event.Record) {}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	if err := fw.Install(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fw.Remove() })
	return fw
}

// curl connects from the runner namespace and reports whether it got an
// HTTP answer, and how long it took.
func curl(n *testnet.Net, url string) (bool, time.Duration) {
	start := time.Now()
	err := n.In(n.Runner, "curl", "-sk", "--max-time", "3", "-o", "/dev/null", url).Run()
	return err == nil, time.Since(start)
}

func TestBlockModeEnforces(t *testing.T) {
	testnet.Skip(t, "curl")
	n := testnet.New(t)
	n.StartServers(os.Args[0], "tls::443", "tls::8443")
	cidr := policy.Endpoint{Prefix: netip.MustParsePrefix("198.18.1.64/26"), Port: 443}
	fw := install(t, n, Config{Block: true, Addrs: addrs([]policy.Endpoint{cidr})})
	if err := fw.Allow([]netip.Addr{testnet.Host4(10), testnet.Host6(10)}, []uint16{443}, time.Minute); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		url  string
		dst  netip.Addr
		port uint16
		want bool
	}{
		{"allowed v4", "https://198.18.1.10/", testnet.Host4(10), 443, true},
		{"allowed v6", "https://[2001:db8:1::a]/", testnet.Host6(10), 443, true},
		{"allowed host, other port", "https://198.18.1.10:8443/", testnet.Host4(10), 8443, false},
		{"not allowed v4", "https://198.18.1.11/", testnet.Host4(11), 443, false},
		{"not allowed v6", "https://[2001:db8:1::b]/", testnet.Host6(11), 443, false},
		{"in allowed CIDR", "https://198.18.1.100/", testnet.Host4(100), 443, true},
		{"outside allowed CIDR", "https://198.18.1.200/", testnet.Host4(200), 443, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok, took := curl(n, c.url)
			hits := n.HitsTo("tcp", c.dst, c.port)
			if ok != c.want || (len(hits) > 0) != c.want {
				t.Fatalf("curl ok=%v, server hits=%d; want %v", ok, len(hits), c.want)
			}
			if !c.want && took > time.Second {
				t.Errorf("blocked connection took %v to fail; want a fast reject", took)
			}
		})
	}
}

func TestAllowExpires(t *testing.T) {
	testnet.Skip(t, "curl")
	n := testnet.New(t)
	n.StartServers(os.Args[0], "tls::443")
	fw := install(t, n, Config{Block: true})
	if err := fw.Allow([]netip.Addr{testnet.Host4(20)}, []uint16{443}, time.Second); err != nil {
		t.Fatal(err)
	}
	if ok, _ := curl(n, "https://198.18.1.20/"); !ok {
		t.Fatal("allowed address not reachable")
	}
	time.Sleep(2500 * time.Millisecond)
	if ok, _ := curl(n, "https://198.18.1.20/"); ok {
		t.Fatal("address still reachable after its timeout")
	}
	// Allowing again after expiry works, and refreshing a live element too.
	for range 2 {
		if err := fw.Allow([]netip.Addr{testnet.Host4(20)}, []uint16{443}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := curl(n, "https://198.18.1.20/"); !ok {
		t.Fatal("re-allowed address not reachable")
	}
}

func TestAuditModeAcceptsAll(t *testing.T) {
	testnet.Skip(t, "curl")
	n := testnet.New(t)
	n.StartServers(os.Args[0], "tls::443")
	install(t, n, Config{Block: false})
	if ok, _ := curl(n, "https://198.18.1.30/"); !ok || len(n.HitsTo("tcp", testnet.Host4(30), 443)) == 0 {
		t.Fatal("audit mode blocked a connection")
	}
}

// TestFailsClosedWithoutGate: when nobody reads the queue (the agent died),
// what the policy does not allow is dropped, not let through.
func TestFailsClosedWithoutGate(t *testing.T) {
	testnet.Skip(t, "curl")
	n := testnet.New(t)
	n.StartServers(os.Args[0], "tls::443")
	f, err := os.Open(filepath.Join("/var/run/netns", n.Runner))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, block := range []bool{true, false} {
		fw, err := New(Config{Block: block, ResolverPort: 153, NetNS: int(f.Fd())})
		if err != nil {
			t.Fatal(err)
		}
		if err := fw.Install(); err != nil {
			t.Fatal(err)
		}
		ok, _ := curl(n, "https://198.18.1.40/")
		_ = fw.Remove()
		if ok || len(n.HitsTo("tcp", testnet.Host4(40), 443)) != 0 {
			t.Fatalf("block=%v: traffic passed with no gate reading the queue", block)
		}
	}
}

func TestRemoveIsIdempotentAndComplete(t *testing.T) {
	testnet.Skip(t)
	n := testnet.New(t)
	fw := install(t, n, Config{Block: true})
	for range 2 {
		if err := fw.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	out, err := n.In(n.Runner, "nft", "list", "tables").CombinedOutput()
	if err != nil || strings.Contains(string(out), DefaultTable) {
		t.Fatalf("table still there after Remove: %s %v", out, err)
	}
	if err := fw.Allow([]netip.Addr{testnet.Host4(1)}, []uint16{1}, time.Minute); err != ErrNotInstalled {
		t.Fatalf("Allow after Remove: %v, want ErrNotInstalled", err)
	}
}

// TestRuleset compares the installed ruleset with testdata/*.nft, as nft
// prints it. Run with -update to refresh after an intended change.
func TestRuleset(t *testing.T) {
	testnet.Skip(t)
	for _, c := range []struct {
		name   string
		block  bool
		relay  uint16 // the relay's port (0: none)
		accept uint32 // AcceptMark
	}{{"block", true, 0, 0}, {"audit", false, 0, 0}, {"block-relay", true, 154, 0}, {"audit-relay", false, 154, 0},
		{"block-acceptmark", true, 0, AcceptMarkBit}} {
		name, block := c.name, c.block
		t.Run(name, func(t *testing.T) {
			n := testnet.New(t)
			install(t, n, Config{Block: block, RelayPort: c.relay, AcceptMark: c.accept, RelayPorts: []uint16{443, 80}, Addrs: addrs([]policy.Endpoint{
				{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Port: 443},
				{Prefix: netip.MustParsePrefix("2001:db8:99::/48"), Port: 22},
			}), Preexisting: []Conn{
				{netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("203.0.113.7:443")},
				{netip.MustParseAddrPort("[2001:db8::1]:40001"), netip.MustParseAddrPort("[2001:db8:99::7]:22")},
			}, DHCPServers: []netip.Addr{netip.MustParseAddr("168.63.129.16")},
				Upstreams: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.2:53"), netip.MustParseAddrPort("[2001:db8::2]:53")}})
			out, err := n.In(n.Runner, "nft", "list", "table", "inet", DefaultTable).Output()
			if err != nil {
				t.Fatalf("nft list: %v\n%s", err, out)
			}
			golden := filepath.Join("testdata", name+".nft")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(want) != string(out) {
				t.Errorf("ruleset differs from %s:\n%s", golden, out)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{ResolverPort: 0},
		{ResolverPort: 53},
		{ResolverPort: 153, Addrs: slices.Values([]policy.AddrRange{{Port: 443}})}, // no addresses
		{ResolverPort: 153, Addrs: slices.Values([]policy.AddrRange{{First: netip.MustParseAddr("10.0.0.1"), Last: netip.MustParseAddr("::1"), Port: 443}})},
		{ResolverPort: 153, Addrs: slices.Values([]policy.AddrRange{{First: netip.MustParseAddr("10.0.0.2"), Last: netip.MustParseAddr("10.0.0.1"), Port: 443}})},
		{ResolverPort: 153, AcceptMark: 0x0300_0000}, // two bits
		{ResolverPort: 153, AcceptMark: 0x0001},      // a bit of the resolver's mark
		{ResolverPort: 153, AcceptMark: 0x4000_0000}, // a bit of the reject mark
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad config", cfg)
		}
	}
}

// TestAcceptedPackets: with AcceptMark, the rules count the packets they
// mark (the host's new allowed flows, nothing else): what the agent
// compares with what the kernel-side recorder saw.
func TestAcceptedPackets(t *testing.T) {
	testnet.Skip(t, "curl")
	n := testnet.New(t)
	n.StartServers(os.Args[0], "tls::443")
	fw := install(t, n, Config{Block: true, AcceptMark: AcceptMarkBit,
		Addrs: addrs([]policy.Endpoint{{Prefix: netip.MustParsePrefix("198.18.1.64/26"), Port: 443}})})
	if c, err := fw.AcceptedPackets(); err != nil || c != 0 {
		t.Fatalf("before any flow: %d, %v", c, err)
	}
	for _, url := range []string{"https://198.18.1.70/", "https://198.18.1.71/", "https://198.18.1.9/"} {
		curl(n, url) // the last one is not allowed
	}
	if c, err := fw.AcceptedPackets(); err != nil || c != 2 {
		t.Errorf("after two allowed connections and one refused: %d, %v; want 2 (their SYNs)", c, err)
	}
	plain, err := New(Config{ResolverPort: 153})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.AcceptedPackets(); err != ErrNotInstalled {
		t.Errorf("before Install: %v, want ErrNotInstalled", err)
	}
}
