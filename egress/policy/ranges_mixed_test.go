package policy

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestAllowsAddrMixedFamilies checks AllowsAddr against a walk of the
// entries with random IPv4, IPv6, IPv4-mapped and top-of-space addresses
// and prefixes (FuzzAllowsAddr covers IPv4 only).
func TestAllowsAddrMixedFamilies(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randAddr := func() netip.Addr {
		switch r.IntN(4) {
		case 0:
			return netip.AddrFrom4([4]byte{byte(r.IntN(4)) * 64, byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		case 1:
			a := [16]byte{0x20, 0x01, 0x0d, 0xb8, byte(r.IntN(3))}
			a[15] = byte(r.IntN(256))
			return netip.AddrFrom16(a)
		case 2:
			return netip.AddrFrom16(netip.AddrFrom4([4]byte{byte(r.IntN(4)) * 64, 0, 0, byte(r.IntN(256))}).As16())
		default:
			var a [16]byte
			for i := range a {
				a[i] = byte(r.IntN(256))
			}
			if r.IntN(2) == 0 {
				a = [16]byte{255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, byte(r.IntN(256))}
			}
			return netip.AddrFrom16(a)
		}
	}
	for iter := 0; iter < 3000; iter++ {
		var eps []Endpoint
		for range r.IntN(12) {
			a := randAddr()
			p, _ := a.Prefix(r.IntN(a.BitLen() + 1))
			eps = append(eps, Endpoint{Prefix: p, Port: uint16(r.IntN(3))})
		}
		pol := New(Block, eps, false)
		for range 50 {
			a := randAddr()
			port := uint16(r.IntN(3))
			want := false
			for e := range pol.Prefixes() {
				if e.Port == port && e.Prefix.Contains(a.Unmap()) {
					want = true
				}
			}
			if got := pol.AllowsAddr(a, port); got != want {
				t.Fatalf("AllowsAddr(%v,%d)=%v want %v; eps %v ranges %v", a, port, got, want, eps, pol.ranges)
			}
		}
	}
}
