// Package packettest builds IPv4 and IPv6 packets for tests of code that
// reads them (packet.Parse and its callers).
package packettest

import (
	"encoding/binary"
	"net/netip"

	"github.com/harden-runner/harden-runner/egress/packet"
)

// IPv4 builds an IPv4 packet: header (with optLen bytes of NOP options),
// then l4. fragOff is the fragment offset in 8-byte units. src and dst
// must be IPv4 addresses.
func IPv4(proto uint8, src, dst string, optLen int, fragOff uint16, l4 []byte) []byte {
	ihl := 20 + optLen
	b := make([]byte, ihl+len(l4))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[6:], fragOff&0x1fff)
	b[8] = 64
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	for i := 20; i < ihl; i++ {
		b[i] = 1 // NOP options
	}
	copy(b[ihl:], l4)
	return b
}

// Ext6 is one IPv6 extension header for IPv6.
type Ext6 struct {
	Proto uint8  // its own type: 0, 43, 44, 51, 60
	Body  int    // bytes after the first two (multiple of 8 minus 2, or of 4 minus 2 for AH)
	Frag  uint16 // fragment offset in 8-byte units, for packet.Fragment
}

// IPv6 builds an IPv6 packet: header, the extension headers exts in
// order, then l4 of protocol proto.
func IPv6(src, dst string, exts []Ext6, proto uint8, l4 []byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	first := proto
	if len(exts) > 0 {
		first = exts[0].Proto
	}
	b[6], b[7] = first, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	for i, e := range exts {
		next := proto
		if i+1 < len(exts) {
			next = exts[i+1].Proto
		}
		h := make([]byte, 2+e.Body)
		h[0] = next
		switch e.Proto {
		case packet.Fragment:
			h = make([]byte, 8)
			h[0] = next
			binary.BigEndian.PutUint16(h[2:], e.Frag<<3)
		case packet.AH:
			h[1] = byte(len(h)/4 - 2)
		default:
			h[1] = byte(len(h)/8 - 1)
		}
		b = append(b, h...)
	}
	b = append(b, l4...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// L4 is a transport header starting with the two ports, padded to n bytes
// (at least 4).
func L4(sport, dport uint16, n int) []byte {
	b := make([]byte, max(n, 4))
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return b
}
