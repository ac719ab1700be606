package flowlog

import "testing"

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
