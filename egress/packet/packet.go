// Package packet reads what the first packet of a flow says: addresses,
// IP protocol (after IPv6 extension headers) and ports. The firewall hands
// such packets to user space twice, logged (egress/flowlog, NFLOG) and
// held (egress/gate, NFQUEUE); both parse them here. Pure: no I/O, and it
// never panics on untrusted input (FuzzParse).
package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// IP protocol numbers that Parse knows (Packet.Proto): transports, and
// the IPv6 extension headers it steps over.
const (
	HopOpts  = 0
	ICMP     = 1
	TCP      = 6
	UDP      = 17
	DCCP     = 33
	Routing  = 43
	Fragment = 44
	AH       = 51
	ICMPv6   = 58
	NoNext   = 59
	DstOpts  = 60
	SCTP     = 132
	UDPLite  = 136
)

// Errors from Parse.
var (
	ErrTruncated = errors.New("packet: truncated")
	ErrVersion   = errors.New("packet: not an IPv4 or IPv6 packet")
	ErrHeader    = errors.New("packet: malformed IP header")
)

// maxExtHeaders bounds the IPv6 extension-header chain Parse follows.
const maxExtHeaders = 16

// Packet is what the first packet of a flow says.
type Packet struct {
	Src, Dst netip.AddrPort
	Proto    uint8 // IP protocol: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...
}

// Parse parses an IPv4 or IPv6 packet that starts at the IP header, as
// NFLOG hands it over: the addresses, the transport protocol (after IPv6
// extension headers: hop-by-hop, routing, fragment, destination options,
// AH) and, for TCP, UDP, UDP-Lite, SCTP and DCCP, the ports. Other protocols
// (ICMP, ICMPv6, ...) and non-first fragments have port 0. The input is
// untrusted; Parse never panics. When the IP header is intact but the
// transport header is cut off, it returns the packet without ports and
// ErrTruncated.
func Parse(b []byte) (Packet, error) {
	p, _, err := ParseL4(b)
	return p, err
}

// ParseL4 is Parse that also returns the transport header and what
// follows it (nil if there is none).
func ParseL4(b []byte) (Packet, []byte, error) {
	if len(b) < 1 {
		return Packet{}, nil, ErrTruncated
	}
	switch b[0] >> 4 {
	case 4:
		return parse4(b)
	case 6:
		return parse6(b)
	}
	return Packet{}, nil, ErrVersion
}

func parse4(b []byte) (Packet, []byte, error) {
	if len(b) < 20 {
		return Packet{}, nil, ErrTruncated
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 {
		return Packet{}, nil, ErrHeader
	}
	if len(b) < ihl {
		return Packet{}, nil, ErrTruncated
	}
	if total := int(binary.BigEndian.Uint16(b[2:])); total >= ihl && total < len(b) {
		b = b[:total] // ignore trailing bytes beyond the datagram
	}
	p := Packet{Proto: b[9]}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	p.Src, p.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
	if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
		return p, nil, nil // a later fragment: no transport header
	}
	return ports(p, b[ihl:])
}

func parse6(b []byte) (Packet, []byte, error) {
	if len(b) < 40 {
		return Packet{}, nil, ErrTruncated
	}
	if pl := int(binary.BigEndian.Uint16(b[4:])); pl != 0 && 40+pl < len(b) {
		b = b[:40+pl] // 0 is a jumbogram: keep what we have
	}
	src := netip.AddrFrom16([16]byte(b[8:24]))
	dst := netip.AddrFrom16([16]byte(b[24:40]))
	p := Packet{Src: netip.AddrPortFrom(src, 0), Dst: netip.AddrPortFrom(dst, 0)}
	next, rest := b[6], b[40:]
	for range maxExtHeaders {
		switch next {
		case HopOpts, Routing, DstOpts:
			if len(rest) < 8 {
				p.Proto = next
				return p, nil, ErrTruncated
			}
			n := (int(rest[1]) + 1) * 8
			if len(rest) < n {
				p.Proto = next
				return p, nil, ErrTruncated
			}
			next, rest = rest[0], rest[n:]
		case AH:
			if len(rest) < 8 {
				p.Proto = next
				return p, nil, ErrTruncated
			}
			n := (int(rest[1]) + 2) * 4
			if len(rest) < n {
				p.Proto = next
				return p, nil, ErrTruncated
			}
			next, rest = rest[0], rest[n:]
		case Fragment:
			if len(rest) < 8 {
				p.Proto = next
				return p, nil, ErrTruncated
			}
			next = rest[0]
			if binary.BigEndian.Uint16(rest[2:])&0xfff8 != 0 {
				p.Proto = next
				return p, nil, nil // a later fragment: no transport header
			}
			rest = rest[8:]
		default:
			p.Proto = next
			return ports(p, rest)
		}
	}
	p.Proto = next
	return p, nil, ErrHeader
}

// ports fills in the ports of protocols that start with source and
// destination port.
func ports(p Packet, l4 []byte) (Packet, []byte, error) {
	switch p.Proto {
	case TCP, UDP, UDPLite, SCTP, DCCP:
	default:
		return p, l4, nil
	}
	if len(l4) < 4 {
		return p, nil, ErrTruncated
	}
	p.Src = netip.AddrPortFrom(p.Src.Addr(), binary.BigEndian.Uint16(l4[0:]))
	p.Dst = netip.AddrPortFrom(p.Dst.Addr(), binary.BigEndian.Uint16(l4[2:]))
	return p, l4, nil
}

// ProtoName returns the name event.Flow uses for an IP protocol: "tcp",
// "udp", "icmp", "icmpv6", or the number.
func ProtoName(proto uint8) string {
	return protoName(proto)
}

// OwnerProto names proto as owner lookups (proc.Finder.Owner) take it:
// "tcp", "udp", "udplite", "icmp", "icmpv6"; false for protocols no
// lookup can place.
func OwnerProto(proto uint8) (string, bool) {
	switch proto {
	case UDPLite:
		return "udplite", true
	case TCP, UDP, ICMP, ICMPv6:
		return protoName(proto), true
	}
	return "", false
}

func protoName(proto uint8) string {
	switch proto {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case ICMP:
		return "icmp"
	case ICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(proto))
}
