package packet_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/harden-runner/harden-runner/egress/packet"
	"github.com/harden-runner/harden-runner/egress/packet/packettest"
)

func TestParsePacket(t *testing.T) {
	tcp := packettest.L4(40000, 443, 20)
	udp := packettest.L4(50000, 53, 8)
	icmp := []byte{8, 0, 0, 0, 0, 1, 0, 1}
	ap := netip.MustParseAddrPort
	tests := []struct {
		name     string
		in       []byte
		src, dst string
		proto    uint8
		err      error
	}{
		{"v4 tcp", packettest.IPv4(6, "198.18.0.1", "198.18.0.2", 0, 0, tcp), "198.18.0.1:40000", "198.18.0.2:443", 6, nil},
		{"v4 tcp with options", packettest.IPv4(6, "198.18.0.1", "198.18.0.2", 12, 0, tcp), "198.18.0.1:40000", "198.18.0.2:443", 6, nil},
		{"v4 udp", packettest.IPv4(17, "198.18.0.1", "198.18.0.2", 0, 0, udp), "198.18.0.1:50000", "198.18.0.2:53", 17, nil},
		{"v4 udplite", packettest.IPv4(136, "198.18.0.1", "198.18.0.2", 0, 0, udp), "198.18.0.1:50000", "198.18.0.2:53", 136, nil},
		{"v4 sctp", packettest.IPv4(132, "198.18.0.1", "198.18.0.2", 0, 0, packettest.L4(5000, 6000, 12)), "198.18.0.1:5000", "198.18.0.2:6000", 132, nil},
		{"v4 icmp", packettest.IPv4(1, "198.18.0.1", "198.18.0.2", 0, 0, icmp), "198.18.0.1:0", "198.18.0.2:0", 1, nil},
		{"v4 gre (no ports)", packettest.IPv4(47, "198.18.0.1", "198.18.0.2", 0, 0, udp), "198.18.0.1:0", "198.18.0.2:0", 47, nil},
		{"v4 later fragment", packettest.IPv4(17, "198.18.0.1", "198.18.0.2", 0, 185, udp), "198.18.0.1:0", "198.18.0.2:0", 17, nil},
		{"v4 header only", packettest.IPv4(6, "198.18.0.1", "198.18.0.2", 0, 0, nil), "198.18.0.1:0", "198.18.0.2:0", 6, packet.ErrTruncated},
		{"v4 ports cut", packettest.IPv4(6, "198.18.0.1", "198.18.0.2", 0, 0, nil)[:20], "198.18.0.1:0", "198.18.0.2:0", 6, packet.ErrTruncated},
		{"v4 short header", packettest.IPv4(6, "198.18.0.1", "198.18.0.2", 0, 0, tcp)[:19], "", "", 0, packet.ErrTruncated},
		{"v4 ihl < 5", func() []byte { b := packettest.IPv4(6, "198.18.0.1", "198.18.0.2", 0, 0, tcp); b[0] = 0x44; return b }(), "", "", 0, packet.ErrHeader},
		{"v4 ihl beyond data", func() []byte { b := packettest.IPv4(6, "198.18.0.1", "198.18.0.2", 0, 0, nil); b[0] = 0x4f; return b }(), "", "", 0, packet.ErrTruncated},
		{"v4 total length hides ports", func() []byte {
			b := packettest.IPv4(6, "198.18.0.1", "198.18.0.2", 0, 0, tcp)
			binary.BigEndian.PutUint16(b[2:], 20)
			return b
		}(), "198.18.0.1:0", "198.18.0.2:0", 6, packet.ErrTruncated},
		{"v6 tcp", packettest.IPv6("2001:db8::1", "2001:db8::2", nil, 6, tcp), "[2001:db8::1]:40000", "[2001:db8::2]:443", 6, nil},
		{"v6 icmpv6", packettest.IPv6("2001:db8::1", "2001:db8::2", nil, 58, icmp), "[2001:db8::1]:0", "[2001:db8::2]:0", 58, nil},
		{"v6 hop-by-hop, dest opts, routing, udp",
			packettest.IPv6("2001:db8::1", "2001:db8::2", []packettest.Ext6{{Proto: 0, Body: 6}, {Proto: 60, Body: 14}, {Proto: 43, Body: 22}}, 17, udp),
			"[2001:db8::1]:50000", "[2001:db8::2]:53", 17, nil},
		{"v6 first fragment", packettest.IPv6("2001:db8::1", "2001:db8::2", []packettest.Ext6{{Proto: 44}}, 17, udp), "[2001:db8::1]:50000", "[2001:db8::2]:53", 17, nil},
		{"v6 later fragment", packettest.IPv6("2001:db8::1", "2001:db8::2", []packettest.Ext6{{Proto: 44, Frag: 100}}, 17, udp), "[2001:db8::1]:0", "[2001:db8::2]:0", 17, nil},
		{"v6 ah then tcp", packettest.IPv6("2001:db8::1", "2001:db8::2", []packettest.Ext6{{Proto: 51, Body: 22}}, 6, tcp), "[2001:db8::1]:40000", "[2001:db8::2]:443", 6, nil},
		{"v6 no next header", packettest.IPv6("2001:db8::1", "2001:db8::2", []packettest.Ext6{{Proto: 60, Body: 6}}, 59, nil), "[2001:db8::1]:0", "[2001:db8::2]:0", 59, nil},
		{"v6 ext header cut", packettest.IPv6("2001:db8::1", "2001:db8::2", []packettest.Ext6{{Proto: 0, Body: 14}}, 6, tcp)[:50], "[2001:db8::1]:0", "[2001:db8::2]:0", 0, packet.ErrTruncated},
		{"v6 short", packettest.IPv6("2001:db8::1", "2001:db8::2", nil, 6, tcp)[:39], "", "", 0, packet.ErrTruncated},
		{"v6 endless chain", packettest.IPv6("2001:db8::1", "2001:db8::2", func() []packettest.Ext6 {
			e := make([]packettest.Ext6, 20)
			for i := range e {
				e[i] = packettest.Ext6{Proto: 60, Body: 6}
			}
			return e
		}(), 6, tcp), "[2001:db8::1]:0", "[2001:db8::2]:0", 60, packet.ErrHeader},
		{"version 5", []byte{0x50, 0, 0, 0}, "", "", 0, packet.ErrVersion},
		{"empty", nil, "", "", 0, packet.ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := packet.Parse(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var want packet.Packet
			if tc.src != "" {
				want = packet.Packet{Src: ap(tc.src), Dst: ap(tc.dst), Proto: tc.proto}
			}
			if got != want {
				t.Errorf("ParsePacket = %+v, want %+v", got, want)
			}
		})
	}
}

func TestProtoName(t *testing.T) {
	for p, want := range map[uint8]string{6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "132", 0: "0"} {
		if got := packet.ProtoName(p); got != want {
			t.Errorf("ProtoName(%d) = %q, want %q", p, got, want)
		}
	}
}

func FuzzParsePacket(f *testing.F) {
	tcp := packettest.L4(40000, 443, 20)
	udp := packettest.L4(50000, 53, 8)
	f.Add(packettest.IPv4(6, "198.18.0.1", "198.18.0.2", 0, 0, tcp))
	f.Add(packettest.IPv4(17, "198.18.0.1", "198.18.0.2", 8, 0, udp))
	f.Add(packettest.IPv4(1, "198.18.0.1", "198.18.0.2", 0, 0, []byte{8, 0, 0, 0}))
	f.Add(packettest.IPv6("2001:db8::1", "2001:db8::2", nil, 6, tcp))
	f.Add(packettest.IPv6("2001:db8::1", "2001:db8::2", []packettest.Ext6{{Proto: 0, Body: 6}, {Proto: 60, Body: 14}, {Proto: 43, Body: 22}, {Proto: 44}}, 17, udp))
	f.Add(packettest.IPv6("2001:db8::1", "2001:db8::2", []packettest.Ext6{{Proto: 51, Body: 10}}, 58, []byte{128, 0, 0, 0}))
	for _, p := range realPacketsForTest {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := packet.Parse(b)
		if err == nil || errors.Is(err, packet.ErrTruncated) && p.Dst.IsValid() {
			if !p.Src.IsValid() || !p.Dst.IsValid() {
				t.Fatalf("ParsePacket(%x) = %+v, %v: addresses missing", b, p, err)
			}
			if v4 := b[0]>>4 == 4; p.Dst.Addr().Is4() != v4 || p.Src.Addr().Is4() != v4 {
				t.Fatalf("ParsePacket(%x) = %+v: wrong address family", b, p)
			}
			switch p.Proto {
			case packet.TCP, packet.UDP, packet.UDPLite, packet.SCTP, packet.DCCP:
			default:
				if p.Src.Port() != 0 || p.Dst.Port() != 0 {
					t.Fatalf("ParsePacket(%x) = %+v: ports for protocol %d", b, p, p.Proto)
				}
			}
		} else if p != (packet.Packet{}) && !errors.Is(err, packet.ErrTruncated) && !errors.Is(err, packet.ErrHeader) {
			t.Fatalf("ParsePacket(%x) = %+v with %v", b, p, err)
		}
	})
}
