package policy

import (
	"net/netip"
	"slices"
	"testing"
	"unsafe"
)

// The packed forms are what keep a 100,000-entry policy small and out of
// the garbage collector's scan; a field that brings a pointer or padding
// back shows here.
func TestPackedSizes(t *testing.T) {
	if n := unsafe.Sizeof(addrEntry{}); n > 22 {
		t.Errorf("addrEntry is %d bytes, want ≤ 22", n)
	}
	if n := unsafe.Sizeof(packedRange{}); n > 36 {
		t.Errorf("packedRange is %d bytes, want ≤ 36", n)
	}
}

func TestPackRoundTrip(t *testing.T) {
	for _, s := range []string{"0.0.0.0/0", "198.18.0.0/15", "198.18.1.10/32", "::/0", "2001:db8::/32", "2001:db8::1/128", "::ffff:0:0/96"} {
		for _, implicit := range []bool{false, true} {
			e := Endpoint{Prefix: netip.MustParsePrefix(s), Port: 443, Implicit: implicit}
			if got := packEntry(e).endpoint(); got != e {
				t.Errorf("packEntry(%v).endpoint() = %#v", e, got)
			}
			r := PrefixRange(e.Prefix, 8443)
			if got := packRange(r).unpack(); got != r {
				t.Errorf("packRange(%v).unpack() = %#v", r, got)
			}
		}
	}
}

// The iterators stop when told to, at every point of every group.
func TestIteratorsStop(t *testing.T) {
	user := mustParse(t, "a.test b.test 198.18.0.1 198.18.0.9 [2001:db8::1]")
	p := New(Block, user, true)
	all := slices.Collect(p.Endpoints())
	for n := range len(all) {
		var got []Endpoint
		for e := range p.Endpoints() {
			if len(got) == n {
				break
			}
			got = append(got, e)
		}
		if !slices.Equal(got, all[:n]) {
			t.Errorf("stopped after %d: %v", n, got)
		}
	}
	for range p.Prefixes() {
		break
	}
	for range p.AddrRanges() {
		break
	}
}
