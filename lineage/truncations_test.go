package lineage

import "testing"

func TestTruncationMatches(t *testing.T) {
	// Directories by path: /ws is device 1 inode 10, /ws/src inode 11.
	dirs := map[string][2]uint64{"/ws": {1, 10}, "/ws/src": {1, 11}, "/": {1, 2}}
	stat := func(d string) (uint64, uint64, bool) {
		v, ok := dirs[d]
		return v[0], v[1], ok
	}
	for _, c := range []struct {
		name string
		r    Truncation
		abs  string
		want bool
	}{
		{"absolute", Truncation{Path: "/ws/src/a.go"}, "/ws/src/a.go", true},
		{"absolute, unclean", Truncation{Path: "/ws//src/./a.go"}, "/ws/src/a.go", true},
		{"absolute, other file", Truncation{Path: "/ws/src/b.go"}, "/ws/src/a.go", false},
		{"relative from its directory", Truncation{Path: "a.go", CwdDev: 1, CwdIno: 11}, "/ws/src/a.go", true},
		{"relative from the root of the workspace", Truncation{Path: "./src/a.go", CwdDev: 1, CwdIno: 10}, "/ws/src/a.go", true},
		{"relative from /", Truncation{Path: "ws/src/a.go", CwdDev: 1, CwdIno: 2}, "/ws/src/a.go", true},
		{"relative, same name elsewhere", Truncation{Path: "a.go", CwdDev: 1, CwdIno: 10}, "/ws/src/a.go", false},
		{"relative, other device", Truncation{Path: "a.go", CwdDev: 2, CwdIno: 11}, "/ws/src/a.go", false},
		{"climbing", Truncation{Path: "../src/a.go", CwdDev: 1, CwdIno: 11}, "/ws/src/a.go", false},
		{"a suffix of a name, not a path", Truncation{Path: "c/a.go", CwdDev: 1, CwdIno: 10}, "/ws/src/a.go", false},
		{"dot", Truncation{Path: ".", CwdDev: 1, CwdIno: 11}, "/ws/src", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := matches(c.r, c.abs, stat); got != c.want {
				t.Errorf("matches(%q from %d:%d, %q) = %v, want %v", c.r.Path, c.r.CwdDev, c.r.CwdIno, c.abs, got, c.want)
			}
		})
	}
}

func TestTruncationsKeepTheNewest(t *testing.T) {
	var s truncations
	stat := func(string) (uint64, uint64, bool) { return 0, 0, false }
	for i := range maxTruncations + 10 {
		s.add(Truncation{Owner: Owner{PID: i + 1, At: uint64(i + 1)}, Path: "/f"})
	}
	if len(s.rec) != maxTruncations {
		t.Fatalf("kept %d, want %d", len(s.rec), maxTruncations)
	}
	if r, ok := s.find("/f", 0, ^uint64(0), stat); !ok || r.Owner.PID != maxTruncations+10 {
		t.Errorf("find = %+v, %v; want the newest", r, ok)
	}
	if r, ok := s.find("/f", 0, 10, stat); ok { // 1..10 were dropped
		t.Errorf("find before the oldest kept = %+v; want none", r)
	}
}
