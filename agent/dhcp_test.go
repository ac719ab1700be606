package agent

import (
	"net/netip"
	"slices"
	"testing"
)

func TestParseLeaseServers(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []string
	}{
		{"networkd", "# This is private data.\nADDRESS=10.1.0.4\nSERVER_ADDRESS=168.63.129.16\nROUTER=10.1.0.1\n", []string{"168.63.129.16"}},
		{"dhclient", "lease {\n  interface \"eth0\";\n  option dhcp-server-identifier 10.0.0.1;\n}\nlease {\n  option dhcp-server-identifier 10.0.0.2;\n}\n", []string{"10.0.0.1", "10.0.0.2"}},
		{"garbage and unspecified", "SERVER_ADDRESS=not-an-address\nSERVER_ADDRESS=0.0.0.0\n", nil},
		{"empty", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, a := range parseLeaseServers([]byte(c.in)) {
				got = append(got, a.String())
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func FuzzParseLeaseServers(f *testing.F) {
	f.Add([]byte("SERVER_ADDRESS=168.63.129.16\n"))
	f.Add([]byte("option dhcp-server-identifier ::ffff:10.0.0.1;\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, a := range parseLeaseServers(b) {
			if !a.IsValid() || a.IsUnspecified() || a.Is4In6() {
				t.Fatalf("bad address %v", a)
			}
			_ = netip.AddrFrom16(a.As16())
		}
	})
}
