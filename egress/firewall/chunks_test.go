package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/internal/testnet"
)

// TestRangeChunkBoundaries installs 0, 1 and about one or two messages'
// worth (elemsPerMsg) of ranges per family and checks that the kernel holds
// exactly those intervals: none lost or repeated at a chunk's edge, none
// overwritten through the reused chunk slice.
func TestRangeChunkBoundaries(t *testing.T) {
	for _, size := range []int{0, 1, elemsPerMsg - 1, elemsPerMsg, elemsPerMsg + 1, 2 * elemsPerMsg, 2*elemsPerMsg + 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			n := testnet.New(t)
			var eps []policy.Endpoint
			want := map[string][]string{}
			for i := range size { // never adjacent: nothing merges
				a := netip.AddrFrom4([4]byte{198, 19, byte(i / 128), byte(i % 128 * 2)})
				eps = append(eps, policy.Endpoint{Prefix: netip.PrefixFrom(a, 32), Port: 443})
				want[setNet4] = append(want[setNet4], fmt.Sprintf("%x-%x", concatKey(a, 443), concatKey(a, 443)))
				var b [16]byte
				copy(b[:], netip.MustParseAddr("2001:db8:2::").AsSlice())
				b[14], b[15] = byte(i>>6), byte(i<<2)
				first := netip.AddrFrom16(b)
				eps = append(eps, policy.Endpoint{Prefix: netip.PrefixFrom(first, 127), Port: 22})
				want[setNet6] = append(want[setNet6], fmt.Sprintf("%x-%x", concatKey(first, 22), concatKey(first.Next(), 22)))
			}
			fw := install(t, n, Config{Block: true, Addrs: addrs(eps)})
			for _, set := range []string{setNet4, setNet6} {
				got := setIntervals(t, fw, set)
				slices.Sort(want[set])
				if !slices.Equal(got, want[set]) {
					t.Errorf("%s holds %d intervals (%d distinct), want %d", set, len(got), len(slices.Compact(slices.Clone(got))), len(want[set]))
				}
			}
		})
	}
}

// TestEdgeRanges installs ranges the kernel must take whole: /0 of either
// family, the top of each address space, an IPv4-mapped IPv6 prefix (an
// IPv4 entry), on ports that share addresses.
func TestEdgeRanges(t *testing.T) {
	n := testnet.New(t)
	eps, err := policy.ParseEndpoints("0.0.0.0/0:8080 255.255.255.255:1 255.255.255.254:1 [::/0]:80 " +
		"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535 [::ffff:10.0.0.0/104]:22 10.0.0.0/8:23")
	if err != nil {
		t.Fatal(err)
	}
	fw := install(t, n, Config{Block: true, Addrs: addrs(eps)})
	want := map[string][]string{
		setNet4: {"000000001f900000-ffffffff1f900000", "0a00000000160000-0affffff00160000",
			"0a00000000170000-0affffff00170000", "fffffffe00010000-ffffffff00010000"},
		setNet6: {"0000000000000000000000000000000000500000-ffffffffffffffffffffffffffffffff00500000",
			"ffffffffffffffffffffffffffffffffffff0000-ffffffffffffffffffffffffffffffffffff0000"},
	}
	for _, set := range []string{setNet4, setNet6} {
		got := setIntervals(t, fw, set)
		if !slices.Equal(got, want[set]) {
			t.Errorf("%s holds %v, want %v", set, got, want[set])
		}
	}
}

// setIntervals lists the kernel's elements of set as "key-keyend" in hex,
// sorted.
func setIntervals(t *testing.T, fw *Firewall, set string) []string {
	t.Helper()
	els, err := fw.conn.GetSetElements(fw.sets[set])
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range els {
		got = append(got, fmt.Sprintf("%x-%x", e.Key, e.KeyEnd))
	}
	slices.Sort(got)
	return got
}
