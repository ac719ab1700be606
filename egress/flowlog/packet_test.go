package flowlog

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// ip4ForTest builds an IPv4 packet: header (with optLen bytes of options),
// then l4. fragOff is the fragment offset in 8-byte units.
func ip4ForTest(proto uint8, src, dst string, optLen int, fragOff uint16, l4 []byte) []byte {
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

// ext6 is one IPv6 extension header for ip6ForTest.
type ext6 struct {
	proto uint8 // its own type: 0, 43, 44, 51, 60
	body  int   // bytes after the first two (multiple of 8 minus 2, or of 4 minus 2 for AH)
	frag  uint16
}

func ip6ForTest(src, dst string, exts []ext6, proto uint8, l4 []byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	first := proto
	if len(exts) > 0 {
		first = exts[0].proto
	}
	b[6], b[7] = first, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	for i, e := range exts {
		next := proto
		if i+1 < len(exts) {
			next = exts[i+1].proto
		}
		h := make([]byte, 2+e.body)
		h[0] = next
		switch e.proto {
		case protoFragment:
			h = make([]byte, 8)
			h[0] = next
			binary.BigEndian.PutUint16(h[2:], e.frag<<3)
		case protoAH:
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

// l4ForTest is a transport header starting with the two ports, padded to n.
func l4ForTest(sport, dport uint16, n int) []byte {
	b := make([]byte, max(n, 4))
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return b
}

func TestParsePacket(t *testing.T) {
	tcp := l4ForTest(40000, 443, 20)
	udp := l4ForTest(50000, 53, 8)
	icmp := []byte{8, 0, 0, 0, 0, 1, 0, 1}
	ap := netip.MustParseAddrPort
	tests := []struct {
		name     string
		in       []byte
		src, dst string
		proto    uint8
		err      error
	}{
		{"v4 tcp", ip4ForTest(6, "198.18.0.1", "198.18.0.2", 0, 0, tcp), "198.18.0.1:40000", "198.18.0.2:443", 6, nil},
		{"v4 tcp with options", ip4ForTest(6, "198.18.0.1", "198.18.0.2", 12, 0, tcp), "198.18.0.1:40000", "198.18.0.2:443", 6, nil},
		{"v4 udp", ip4ForTest(17, "198.18.0.1", "198.18.0.2", 0, 0, udp), "198.18.0.1:50000", "198.18.0.2:53", 17, nil},
		{"v4 udplite", ip4ForTest(136, "198.18.0.1", "198.18.0.2", 0, 0, udp), "198.18.0.1:50000", "198.18.0.2:53", 136, nil},
		{"v4 sctp", ip4ForTest(132, "198.18.0.1", "198.18.0.2", 0, 0, l4ForTest(5000, 6000, 12)), "198.18.0.1:5000", "198.18.0.2:6000", 132, nil},
		{"v4 icmp", ip4ForTest(1, "198.18.0.1", "198.18.0.2", 0, 0, icmp), "198.18.0.1:0", "198.18.0.2:0", 1, nil},
		{"v4 gre (no ports)", ip4ForTest(47, "198.18.0.1", "198.18.0.2", 0, 0, udp), "198.18.0.1:0", "198.18.0.2:0", 47, nil},
		{"v4 later fragment", ip4ForTest(17, "198.18.0.1", "198.18.0.2", 0, 185, udp), "198.18.0.1:0", "198.18.0.2:0", 17, nil},
		{"v4 header only", ip4ForTest(6, "198.18.0.1", "198.18.0.2", 0, 0, nil), "198.18.0.1:0", "198.18.0.2:0", 6, ErrTruncated},
		{"v4 ports cut", ip4ForTest(6, "198.18.0.1", "198.18.0.2", 0, 0, nil)[:20], "198.18.0.1:0", "198.18.0.2:0", 6, ErrTruncated},
		{"v4 short header", ip4ForTest(6, "198.18.0.1", "198.18.0.2", 0, 0, tcp)[:19], "", "", 0, ErrTruncated},
		{"v4 ihl < 5", func() []byte { b := ip4ForTest(6, "198.18.0.1", "198.18.0.2", 0, 0, tcp); b[0] = 0x44; return b }(), "", "", 0, ErrHeader},
		{"v4 ihl beyond data", func() []byte { b := ip4ForTest(6, "198.18.0.1", "198.18.0.2", 0, 0, nil); b[0] = 0x4f; return b }(), "", "", 0, ErrTruncated},
		{"v4 total length hides ports", func() []byte {
			b := ip4ForTest(6, "198.18.0.1", "198.18.0.2", 0, 0, tcp)
			binary.BigEndian.PutUint16(b[2:], 20)
			return b
		}(), "198.18.0.1:0", "198.18.0.2:0", 6, ErrTruncated},
		{"v6 tcp", ip6ForTest("2001:db8::1", "2001:db8::2", nil, 6, tcp), "[2001:db8::1]:40000", "[2001:db8::2]:443", 6, nil},
		{"v6 icmpv6", ip6ForTest("2001:db8::1", "2001:db8::2", nil, 58, icmp), "[2001:db8::1]:0", "[2001:db8::2]:0", 58, nil},
		{"v6 hop-by-hop, dest opts, routing, udp",
			ip6ForTest("2001:db8::1", "2001:db8::2", []ext6{{proto: 0, body: 6}, {proto: 60, body: 14}, {proto: 43, body: 22}}, 17, udp),
			"[2001:db8::1]:50000", "[2001:db8::2]:53", 17, nil},
		{"v6 first fragment", ip6ForTest("2001:db8::1", "2001:db8::2", []ext6{{proto: 44}}, 17, udp), "[2001:db8::1]:50000", "[2001:db8::2]:53", 17, nil},
		{"v6 later fragment", ip6ForTest("2001:db8::1", "2001:db8::2", []ext6{{proto: 44, frag: 100}}, 17, udp), "[2001:db8::1]:0", "[2001:db8::2]:0", 17, nil},
		{"v6 ah then tcp", ip6ForTest("2001:db8::1", "2001:db8::2", []ext6{{proto: 51, body: 22}}, 6, tcp), "[2001:db8::1]:40000", "[2001:db8::2]:443", 6, nil},
		{"v6 no next header", ip6ForTest("2001:db8::1", "2001:db8::2", []ext6{{proto: 60, body: 6}}, 59, nil), "[2001:db8::1]:0", "[2001:db8::2]:0", 59, nil},
		{"v6 ext header cut", ip6ForTest("2001:db8::1", "2001:db8::2", []ext6{{proto: 0, body: 14}}, 6, tcp)[:50], "[2001:db8::1]:0", "[2001:db8::2]:0", 0, ErrTruncated},
		{"v6 short", ip6ForTest("2001:db8::1", "2001:db8::2", nil, 6, tcp)[:39], "", "", 0, ErrTruncated},
		{"v6 endless chain", ip6ForTest("2001:db8::1", "2001:db8::2", func() []ext6 {
			e := make([]ext6, 20)
			for i := range e {
				e[i] = ext6{proto: 60, body: 6}
			}
			return e
		}(), 6, tcp), "[2001:db8::1]:0", "[2001:db8::2]:0", 60, ErrHeader},
		{"version 5", []byte{0x50, 0, 0, 0}, "", "", 0, ErrVersion},
		{"empty", nil, "", "", 0, ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePacket(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var want Packet
			if tc.src != "" {
				want = Packet{Src: ap(tc.src), Dst: ap(tc.dst), Proto: tc.proto}
			}
			if got != want {
				t.Errorf("ParsePacket = %+v, want %+v", got, want)
			}
		})
	}
}

func TestProtoName(t *testing.T) {
	for p, want := range map[uint8]string{6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "132", 0: "0"} {
		if got := ProtoName(p); got != want {
			t.Errorf("ProtoName(%d) = %q, want %q", p, got, want)
		}
	}
}

func FuzzParsePacket(f *testing.F) {
	tcp := l4ForTest(40000, 443, 20)
	udp := l4ForTest(50000, 53, 8)
	f.Add(ip4ForTest(6, "198.18.0.1", "198.18.0.2", 0, 0, tcp))
	f.Add(ip4ForTest(17, "198.18.0.1", "198.18.0.2", 8, 0, udp))
	f.Add(ip4ForTest(1, "198.18.0.1", "198.18.0.2", 0, 0, []byte{8, 0, 0, 0}))
	f.Add(ip6ForTest("2001:db8::1", "2001:db8::2", nil, 6, tcp))
	f.Add(ip6ForTest("2001:db8::1", "2001:db8::2", []ext6{{proto: 0, body: 6}, {proto: 60, body: 14}, {proto: 43, body: 22}, {proto: 44}}, 17, udp))
	f.Add(ip6ForTest("2001:db8::1", "2001:db8::2", []ext6{{proto: 51, body: 10}}, 58, []byte{128, 0, 0, 0}))
	for _, p := range realPacketsForTest {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePacket(b)
		if err == nil || errors.Is(err, ErrTruncated) && p.Dst.IsValid() {
			if !p.Src.IsValid() || !p.Dst.IsValid() {
				t.Fatalf("ParsePacket(%x) = %+v, %v: addresses missing", b, p, err)
			}
			if v4 := b[0]>>4 == 4; p.Dst.Addr().Is4() != v4 || p.Src.Addr().Is4() != v4 {
				t.Fatalf("ParsePacket(%x) = %+v: wrong address family", b, p)
			}
			switch p.Proto {
			case protoTCP, protoUDP, protoUDPLite, protoSCTP, protoDCCP:
			default:
				if p.Src.Port() != 0 || p.Dst.Port() != 0 {
					t.Fatalf("ParsePacket(%x) = %+v: ports for protocol %d", b, p, p.Proto)
				}
			}
		} else if p != (Packet{}) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrHeader) {
			t.Fatalf("ParsePacket(%x) = %+v with %v", b, p, err)
		}
	})
}

func TestPrefix(t *testing.T) {
	tests := []struct {
		v    string
		fwd  bool
		want string
	}{
		{"allowed", false, "hr:a"}, {"blocked", false, "hr:b"}, {"audit", false, "hr:u"},
		{"allowed", true, "hr:fa"}, {"blocked", true, "hr:fb"}, {"audit", true, "hr:fu"},
		{"other", false, ""},
	}
	for _, tc := range tests {
		got := Prefix(eventVerdict(tc.v), tc.fwd)
		if got != tc.want {
			t.Errorf("Prefix(%s, %v) = %q, want %q", tc.v, tc.fwd, got, tc.want)
		}
		if got == "" {
			continue
		}
		v, fwd, ok := ParsePrefix(got)
		if !ok || string(v) != tc.v || fwd != tc.fwd {
			t.Errorf("ParsePrefix(%q) = %v, %v, %v", got, v, fwd, ok)
		}
	}
	for _, bad := range []string{"", "hr:", "hr:x", "hr:f", "hr:ff", "hr:aa", "hr:fab", "xx:a", "HR:a", "hr:a ", "hr:fa\x00"} {
		if v, fwd, ok := ParsePrefix(bad); ok {
			t.Errorf("ParsePrefix(%q) = %v, %v, true; want not ok", bad, v, fwd)
		}
	}
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"hr:a", "hr:fb", "hr:u", "hr:", "hr:fx", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, fwd, ok := ParsePrefix(s)
		if !ok {
			if v != "" || fwd {
				t.Fatalf("ParsePrefix(%q) = %q, %v with !ok", s, v, fwd)
			}
			return
		}
		if back := Prefix(v, fwd); back != s {
			t.Fatalf("ParsePrefix(%q) = %q, %v; Prefix gives back %q", s, v, fwd, back)
		}
	})
}
