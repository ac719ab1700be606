package policy

import (
	"bytes"
	"cmp"
	"net/netip"
)

// addrEntry is an address or CIDR entry held without pointers: 22 bytes
// against an Endpoint's 64, and a slice of them is never scanned by the
// garbage collector. A policy of 100,000 address entries is 2.2 MB.
type addrEntry struct {
	addr     [16]byte // As16 of the masked prefix's address
	bits     uint8    // prefix length in the address's own family
	v4       bool
	implicit bool
	port     uint16
}

func packEntry(e Endpoint) addrEntry {
	a := e.Prefix.Addr()
	return addrEntry{addr: a.As16(), bits: uint8(e.Prefix.Bits()), v4: a.Is4(), implicit: e.Implicit, port: e.Port}
}

func (e addrEntry) endpoint() Endpoint {
	a := netip.AddrFrom16(e.addr)
	if e.v4 {
		a = a.Unmap()
	}
	return Endpoint{Prefix: netip.PrefixFrom(a, int(e.bits)), Port: e.port, Implicit: e.implicit}
}

// packedRange is an AddrRange without pointers (36 bytes against 56). An
// IPv4 range holds the IPv4-mapped forms, so that bytes order within a
// family is address order.
type packedRange struct {
	first, last [16]byte
	port        uint16
	v4          bool
}

func packRange(r AddrRange) packedRange {
	return packedRange{first: r.First.As16(), last: r.Last.As16(), port: r.Port, v4: r.First.Is4()}
}

func (r packedRange) unpack() AddrRange {
	first, last := netip.AddrFrom16(r.first), netip.AddrFrom16(r.last)
	if r.v4 {
		first, last = first.Unmap(), last.Unmap()
	}
	return AddrRange{First: first, Last: last, Port: r.port}
}

// comparePacked is compareRanges on packed ranges: IPv4 first, then port,
// then first address.
func comparePacked(a, b packedRange) int {
	if c := cmp.Compare(boolInt(!a.v4), boolInt(!b.v4)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.port, b.port); c != 0 {
		return c
	}
	return bytes.Compare(a.first[:], b.first[:])
}
