package firewall

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// TestSetBridgeNets: the bridge subnets reach the kernel's sets, replace
// the ones before, survive a restore, and a prefix too wide for a docker
// network is refused without changing them.
func TestSetBridgeNets(t *testing.T) {
	n := testnet.New(t)
	fw := install(t, n, Config{Block: true})
	list := func() string {
		t.Helper()
		var b strings.Builder
		for _, s := range []string{setBridge4, setBridge6} {
			out, err := n.In(n.Runner, "nft", "list", "set", "inet", DefaultTable, s).CombinedOutput()
			if err != nil {
				t.Fatalf("nft list set %s: %v\n%s", s, err, out)
			}
			b.Write(out)
		}
		return b.String()
	}
	if s := list(); strings.Contains(s, "elements") {
		t.Errorf("bridge sets not empty at first:\n%s", s)
	}
	first := []netip.Prefix{netip.MustParsePrefix("198.19.0.1/24"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8:5::1/64"), netip.MustParsePrefix("fe80::/64")}
	if err := fw.SetBridgeNets(first); err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "198.19.0.0/24", "2001:db8:5::/64", "fe80::/64"}
	check := func(when string, want, not []string) {
		t.Helper()
		s := list()
		for _, w := range want {
			if !strings.Contains(s, w) {
				t.Errorf("%s: %s not in the sets:\n%s", when, w, s)
			}
		}
		for _, w := range not {
			if strings.Contains(s, w) {
				t.Errorf("%s: %s still in the sets:\n%s", when, w, s)
			}
		}
	}
	check("set", want, []string{"10.1.0.0/16"})
	if err := fw.SetBridgeNets([]netip.Prefix{netip.MustParsePrefix("172.17.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	check("replaced", []string{"172.17.0.0/16"}, want)
	for _, bad := range []string{"0.0.0.0/0", "8.0.0.0/7", "2000::/3"} {
		if err := fw.SetBridgeNets([]netip.Prefix{netip.MustParsePrefix(bad)}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("SetBridgeNets(%s): %v, want an error naming it", bad, err)
		}
	}
	if _, err := n.In(n.Runner, "nft", "delete", "table", "inet", DefaultTable).CombinedOutput(); err != nil {
		t.Fatal(err)
	}
	if err := fw.Restore(); err != nil {
		t.Fatal(err)
	}
	check("restored", []string{"172.17.0.0/16"}, []string{"0.0.0.0/0", "8.0.0.0/7"})
}
