package firewall

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/internal/testnet"
)

// TestRelayRedirectAndQUIC: with a relay port, TCP to an address the
// resolver allowed no longer goes out directly (it is redirected to the
// relay's port; nothing listens there in this test, so it fails without
// reaching the server), TCP to a CIDR entry still does, and new UDP to port
// 443 is refused unless a CIDR entry covers it, from the host and from a
// container (forwarded).
func TestRelayRedirectAndQUIC(t *testing.T) {
	testnet.Skip(t, "curl", "socat")
	n := testnet.New(t)
	ctr := n.AddContainer()
	n.StartServers(os.Args[0], "tls::443", "udp:0.0.0.0:443")
	cidr := policy.Endpoint{Prefix: netip.MustParsePrefix("198.18.1.64/26"), Port: 443}
	fw := install(t, n, Config{Block: true, Addrs: addrs([]policy.Endpoint{cidr}), RelayPort: 154})
	if err := fw.Allow([]netip.Addr{testnet.Host4(10), testnet.Host6(10)}, []uint16{443}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		url  string
		dst  netip.Addr
		want bool
	}{
		{"allowed by name v4: to the relay", "https://198.18.1.10/", testnet.Host4(10), false},
		{"allowed by name v6: to the relay", "https://[2001:db8:1::a]/", testnet.Host6(10), false},
		{"CIDR entry: direct", "https://198.18.1.100/", testnet.Host4(100), true},
	} {
		ok, _ := curl(n, c.url)
		if hits := n.HitsTo("tcp", c.dst, 443); ok != c.want || (len(hits) > 0) != c.want {
			t.Errorf("%s: curl ok=%v, server hits=%d; want %v", c.name, ok, len(hits), c.want)
		}
	}
	for _, c := range []struct {
		name string
		ns   string
		dst  netip.Addr
		want bool
	}{
		{"QUIC to a name's address", n.Runner, testnet.Host4(10), false},
		{"QUIC to a CIDR entry", n.Runner, testnet.Host4(100), true},
		{"container: QUIC to a name's address", ctr, testnet.Host4(10), false},
		{"container: QUIC to a CIDR entry", ctr, testnet.Host4(101), true},
	} {
		before := len(n.HitsTo("udp", c.dst, 443))
		_ = n.In(c.ns, "sh", "-c", "echo quic | socat -T1 - UDP:"+c.dst.String()+":443").Run()
		if got := len(n.HitsTo("udp", c.dst, 443)) > before; got != c.want {
			t.Errorf("%s: reached=%v, want %v", c.name, got, c.want)
		}
	}
}
