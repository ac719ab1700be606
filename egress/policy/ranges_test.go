package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestMergeRanges(t *testing.T) {
	ep := func(s string, port uint16) Endpoint {
		return Endpoint{Prefix: netip.MustParsePrefix(s), Port: port}
	}
	cases := []struct {
		name string
		in   []Endpoint
		want []string // first-last/port
	}{
		{"disjoint", []Endpoint{ep("10.0.0.0/24", 443), ep("10.0.2.0/24", 443)},
			[]string{"10.0.0.0-10.0.0.255/443", "10.0.2.0-10.0.2.255/443"}},
		{"nested", []Endpoint{ep("10.0.0.0/16", 443), ep("10.0.3.0/24", 443), ep("10.0.0.7/32", 443)},
			[]string{"10.0.0.0-10.0.255.255/443"}},
		{"adjacent", []Endpoint{ep("10.0.1.0/24", 443), ep("10.0.0.0/24", 443), ep("10.0.2.0/23", 443)},
			[]string{"10.0.0.0-10.0.3.255/443"}},
		{"other port stays apart", []Endpoint{ep("10.0.0.0/24", 443), ep("10.0.0.0/25", 80)},
			[]string{"10.0.0.0-10.0.0.127/80", "10.0.0.0-10.0.0.255/443"}},
		{"families apart", []Endpoint{ep("2001:db8::/32", 443), ep("0.0.0.0/0", 443), ep("2001:db9::/32", 443)},
			[]string{"0.0.0.0-255.255.255.255/443", "2001:db8::-2001:db9:ffff:ffff:ffff:ffff:ffff:ffff/443"}},
		{"duplicates", []Endpoint{ep("198.18.1.1/32", 22), ep("198.18.1.1/32", 22)},
			[]string{"198.18.1.1-198.18.1.1/22"}},
		{"top of the space", []Endpoint{ep("255.255.255.255/32", 1), ep("255.255.255.254/32", 1)},
			[]string{"255.255.255.254-255.255.255.255/1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rs []AddrRange
			for _, e := range c.in {
				rs = append(rs, PrefixRange(e.Prefix, e.Port))
			}
			var got []string
			for _, r := range MergeRanges(rs) {
				got = append(got, fmt.Sprintf("%v-%v/%d", r.First, r.Last, r.Port))
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestAllowsAddr(t *testing.T) {
	p := New(Block, mustParse(t, `10.0.0.0/16:443 10.0.3.0/24:443 10.0.5.7:22 192.0.2.255:443 193.0.0.0:443
		[2001:db8::/32]:443 [::/0]:80 0.0.0.0/0:8080 example.com:443`), false)
	cases := []struct {
		addr string
		port uint16
		want bool
	}{
		{"10.0.0.0", 443, true},
		{"10.0.255.255", 443, true},
		{"10.0.3.9", 443, true},
		{"10.1.0.0", 443, false},
		{"9.255.255.255", 443, false},
		{"10.0.0.1", 22, false},
		{"10.0.5.7", 22, true},
		{"10.0.5.8", 22, false},
		{"10.0.5.7", 23, false},
		{"192.0.2.255", 443, true},
		{"193.0.0.0", 443, true},
		{"192.0.3.0", 443, false},
		{"::ffff:10.0.0.1", 443, true}, // mapped counts as IPv4
		{"2001:db8::1", 443, true},
		{"2001:db8::1%eth0", 443, true}, // zone ignored
		{"2001:db9::", 443, false},
		{"10.0.0.1", 80, false}, // ::/0 is IPv6 only
		{"2001:db9::", 80, true},
		{"255.255.255.255", 8080, true},
		{"::1", 8080, false},
		{"0.0.0.0", 1, false},
	}
	for _, c := range cases {
		if got := p.AllowsAddr(netip.MustParseAddr(c.addr), c.port); got != c.want {
			t.Errorf("AllowsAddr(%s, %d) = %v, want %v", c.addr, c.port, got, c.want)
		}
	}
	if New(Block, nil, false).AllowsAddr(netip.MustParseAddr("10.0.0.1"), 443) {
		t.Error("an empty policy allows an address")
	}
}

// FuzzAllowsAddr checks the binary search over merged ranges against a
// walk of every entry.
func FuzzAllowsAddr(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0, 16, 1, 10, 0, 3, 0, 24, 1, 10, 0, 0, 9}, uint8(1))
	f.Add([]byte{0, 0, 0, 0, 0, 2, 255, 255, 255, 255}, uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, port uint8) {
		var eps []Endpoint
		for len(data) >= 10 {
			a := netip.AddrFrom4([4]byte(data[:4]))
			p, err := a.Prefix(int(data[4] % 33))
			if err != nil {
				t.Fatal(err)
			}
			eps = append(eps, Endpoint{Prefix: p, Port: uint16(data[5] % 4)})
			data = data[6:]
		}
		if len(data) < 4 {
			return
		}
		a := netip.AddrFrom4([4]byte(data[:4]))
		pol := New(Block, eps, false)
		want := false
		for _, e := range eps {
			if e.Port == uint16(port%4) && e.Prefix.Contains(a) {
				want = true
			}
		}
		if got := pol.AllowsAddr(a, uint16(port%4)); got != want {
			t.Fatalf("AllowsAddr(%v, %d) = %v, want %v (entries %v)", a, port%4, got, want, eps)
		}
	})
}
