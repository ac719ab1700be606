package resolver

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestSystemUpstreams(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	real := write("real", "# comment\nnameserver 198.18.0.2\nnameserver 2001:db8::2\nsearch x\n")
	stub := write("stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\n")
	for _, c := range []struct {
		name, conf, resolved string
		want                 []string
		err                  bool
	}{
		{"plain", real, "/nonexistent", []string{"198.18.0.2:53", "[2001:db8::2]:53"}, false},
		{"stub uses resolved's upstreams", stub, real, []string{"198.18.0.2:53", "[2001:db8::2]:53"}, false},
		{"stub without resolved", stub, "/nonexistent", nil, true},
		{"stub behind stub", stub, stub, nil, true},
		{"no file", "/nonexistent", real, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := SystemUpstreams(c.conf, c.resolved)
			if (err != nil) != c.err {
				t.Fatalf("err %v, want error %v", err, c.err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i].String() != c.want[i] {
					t.Errorf("got %v, want %v", got, c.want)
				}
			}
		})
	}
}

func TestParseUpstream(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.2": "198.18.0.2:53", "198.18.0.2:5353": "198.18.0.2:5353",
		"2001:db8::2": "[2001:db8::2]:53", "[2001:db8::2]:54": "[2001:db8::2]:54", " ::ffff:198.18.0.2 ": "198.18.0.2:53",
	} {
		got, err := ParseUpstream(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseUpstream(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "dns.google", "1.2.3.4:0", "1.2.3.4:x", "[::1]"} {
		if _, err := ParseUpstream(bad); err == nil {
			t.Errorf("ParseUpstream(%q) accepted", bad)
		}
	}
}

func FuzzParseResolvConf(f *testing.F) {
	f.Add([]byte("nameserver 1.2.3.4\nnameserver ::1\n"))
	f.Add([]byte("nameserver fe80::1%eth0\n\x00nameserver"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, ap := range ParseResolvConf(b) {
			if !ap.IsValid() || ap.Port() != 53 {
				t.Fatalf("bad upstream %v", ap)
			}
		}
	})
}

func FuzzParseUpstream(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "[::1]:53", "::1", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := ParseUpstream(s)
		if err == nil && (!ap.IsValid() || ap.Port() == 0 || ap.Addr().Is4In6()) {
			t.Fatalf("ParseUpstream(%q) = %v", s, ap)
		}
		_ = netip.AddrPort{}
	})
}
