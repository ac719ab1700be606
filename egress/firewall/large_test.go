package firewall

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/internal/testnet"
)

// largeList returns n distinct address entries, about half IPv4 and
// half IPv6, inside the test ranges (198.19.0.0/16, 2001:db8:2::/48) and
// never adjacent to each other, so none merges and the set holds n elements.
func largeList(n int) []policy.Endpoint {
	out := make([]policy.Endpoint, 0, n)
	for i := 0; len(out) < n; i++ {
		if i%2 == 0 {
			j := i / 2 // 198.19.x.y with y even, on 443 then 8443
			port := uint16(443)
			if j >= 128*256 {
				j, port = j-128*256, 8443
			}
			a := netip.AddrFrom4([4]byte{198, 19, byte(j / 128), byte(j % 128 * 2)})
			out = append(out, policy.Endpoint{Prefix: netip.PrefixFrom(a, 32), Port: port})
			continue
		}
		var b [16]byte
		copy(b[:], netip.MustParseAddr("2001:db8:2::").AsSlice())
		j := uint32(i / 2 * 4) // /126 blocks with a gap between them
		b[12], b[13], b[14], b[15] = byte(j>>24), byte(j>>16), byte(j>>8), byte(j)
		out = append(out, policy.Endpoint{Prefix: netip.PrefixFrom(netip.AddrFrom16(b), 127), Port: 443})
	}
	return out
}

// TestLargeAllowList installs allow-lists far beyond what one netlink
// message holds and checks, with real connections and the far end's log,
// that the entries are enforced: an allowed address gets through, one that
// is not on the list does not. 4,000 entries used to fail with ENOBUFS,
// 6,000 with EMSGSIZE.
func TestLargeAllowList(t *testing.T) {
	testnet.Skip(t, "curl")
	sizes := []int{4_000, 6_000, 100_000}
	if testing.Short() {
		sizes = sizes[:2]
	}
	for _, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			n := testnet.New(t)
			n.StartServers(os.Args[0], "tls::443")
			eps := append(largeList(size),
				policy.Endpoint{Prefix: netip.PrefixFrom(testnet.Host4(100), 32), Port: 443},
				policy.Endpoint{Prefix: netip.PrefixFrom(testnet.Host6(100), 128), Port: 443},
				// Overlapping and adjacent entries, merged before install.
				policy.Endpoint{Prefix: netip.MustParsePrefix("198.18.1.96/29"), Port: 443},
				policy.Endpoint{Prefix: netip.MustParsePrefix("198.18.1.104/30"), Port: 443},
				policy.Endpoint{Prefix: netip.MustParsePrefix("2001:db8:1::60/124"), Port: 443},
			)
			start := time.Now()
			fw := install(t, n, Config{Block: true, Addrs: addrs(eps)})
			t.Logf("%d entries installed in %v", len(eps), time.Since(start))
			// Every element arrived (a truncated list would enforce a part).
			count := func(v4 bool) (n int) {
				for range familyRanges(addrs(eps), v4) {
					n++
				}
				return n
			}
			for set, want := range map[string]int{setNet4: count(true), setNet6: count(false)} {
				got, err := fw.conn.GetSetElements(fw.sets[set])
				if err != nil {
					t.Fatalf("list %s: %v", set, err)
				}
				// An interval set lists each range as a start and an end.
				if len(got) != 2*want && len(got) != want {
					t.Errorf("set %s holds %d elements, want %d ranges", set, len(got), want)
				}
			}
			for _, c := range []struct {
				url  string
				dst  netip.Addr
				want bool
			}{
				{"https://198.18.1.100/", testnet.Host4(100), true},
				{"https://198.18.1.107/", testnet.Host4(107), true},
				{"https://198.18.1.108/", testnet.Host4(108), false},
				{"https://[2001:db8:1::64]/", testnet.Host6(100), true},
				{"https://[2001:db8:1::6f]/", testnet.Host6(0x6f), true},
				{"https://[2001:db8:1::70]/", testnet.Host6(0x70), false},
			} {
				ok, _ := curl(n, c.url)
				if hits := n.HitsTo("tcp", c.dst, 443); ok != c.want || (len(hits) > 0) != c.want {
					t.Errorf("%s: curl ok=%v, server hits=%d; want %v", c.url, ok, len(hits), c.want)
				}
			}
		})
	}
}
