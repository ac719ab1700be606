package policy

import (
	"bytes"
	"cmp"
	"iter"
	"net/netip"
	"slices"
)

// AddrRange is the addresses First through Last, of one family, on Port:
// what address and CIDR entries allow once merged.
type AddrRange struct {
	First, Last netip.Addr
	Port        uint16
}

// PrefixRange returns the range that p covers on port (p is masked first).
func PrefixRange(p netip.Prefix, port uint16) AddrRange {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	last, _ := netip.AddrFromSlice(b)
	return AddrRange{First: p.Addr(), Last: last, Port: port}
}

// compareRanges orders ranges by family, port and first address.
func compareRanges(a, b AddrRange) int {
	if c := cmp.Compare(a.First.BitLen(), b.First.BitLen()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Port, b.Port); c != 0 {
		return c
	}
	return a.First.Compare(b.First)
}

// MergeRanges sorts rs by family, port and first address and merges the
// ranges of one family and port that overlap or touch, so that the result
// covers exactly their union with no two ranges overlapping. It reuses rs.
func MergeRanges(rs []AddrRange) []AddrRange {
	slices.SortFunc(rs, compareRanges)
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			if cur.Port == r.Port && cur.First.BitLen() == r.First.BitLen() &&
				(r.First.Compare(cur.Last) <= 0 || cur.Last.Next() == r.First) {
				if r.Last.Compare(cur.Last) > 0 {
					cur.Last = r.Last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// AddrRanges yields the address and CIDR entries merged (MergeRanges):
// IPv4 ranges first, each family by port and first address.
func (p *Policy) AddrRanges() iter.Seq[AddrRange] {
	return func(yield func(AddrRange) bool) {
		for _, r := range p.ranges {
			if !yield(r.unpack()) {
				return
			}
		}
	}
}

// AllowsAddr reports whether an address or CIDR entry allows a on port,
// in O(log n) of the entries. An IPv4-mapped IPv6 address counts as its
// IPv4 address, as the entries do; a zone is ignored.
func (p *Policy) AllowsAddr(a netip.Addr, port uint16) bool {
	a = a.Unmap()
	if !a.IsValid() {
		return false
	}
	key := packedRange{first: a.As16(), port: port, v4: a.Is4()}
	// The first range that sorts after key; the one before it is the only
	// one that can hold a.
	i, found := slices.BinarySearchFunc(p.ranges, key, comparePacked)
	if found {
		return true
	}
	if i == 0 {
		return false
	}
	r := p.ranges[i-1]
	return r.port == port && r.v4 == key.v4 && bytes.Compare(key.first[:], r.last[:]) <= 0
}
