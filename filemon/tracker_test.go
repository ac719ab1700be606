package filemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

func TestDecide(t *testing.T) {
	b := entry{path: "src/a.go", dev: 1, ino: 10, size: 100, mtime: 5e9, btime: 1e9, mode: modeReg, blob: -1}
	sameFile := fileStat{dev: 1, ino: 10, size: 100, mtime: 5e9, btime: 1e9, mode: modeReg}
	with := func(f func(*fileStat)) fileStat { s := sameFile; f(&s); return s }
	sed := event.Process{PID: 7, Exe: "/usr/bin/sed"}
	mv := event.Process{PID: 8, Exe: "/usr/bin/mv"}
	at := time.Unix(100, 0)
	facts := func(kv ...any) *pending {
		p := &pending{size: -1}
		for i := 0; i < len(kv); i += 2 {
			p.facts[kv[i].(factKind)] = fact{set: true, at: at, proc: kv[i+1].(event.Process)}
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		st      fileStat
		exists  bool
		p       *pending
		same    bool // content equals the git blob
		want    string
		unknown bool // the emission has no fact: found by rescan
	}{
		{"untouched", sameFile, true, facts(), false, "[]", false},
		{"write, longer", with(func(s *fileStat) { s.size = 120; s.mtime = 6e9 }), true, facts(factWrite, sed), false, "[overwrite:7]", false},
		{"write, shorter (O_TRUNC then write)", with(func(s *fileStat) { s.size = 3; s.mtime = 6e9 }), true, facts(factWrite, sed), false, "[overwrite:7]", false},
		{"truncated, no write", with(func(s *fileStat) { s.size = 0; s.mtime = 6e9 }), true, facts(factTruncate, sed), false, "[truncate:7]", false},
		{"truncated, then appended by another", with(func(s *fileStat) { s.size = 5; s.mtime = 6e9 }), true, facts(factTruncate, sed, factWrite, mv), false, "[overwrite:8 truncate:7]", false},
		{"inotify: changed, longer", with(func(s *fileStat) { s.size = 120; s.mtime = 6e9 }), true, facts(factChanged, event.Process{}), false, "[overwrite:0]", false},
		{"inotify: changed, shorter", with(func(s *fileStat) { s.size = 3; s.mtime = 6e9 }), true, facts(factChanged, event.Process{}), false, "[truncate:0]", false},
		{"inotify and fanotify: the named fact wins", with(func(s *fileStat) { s.size = 3; s.mtime = 6e9 }), true, facts(factChanged, event.Process{}, factWrite, sed), false, "[overwrite:7]", false},
		{"write, content restored since", sameFile, true, facts(factWrite, sed), true, "[overwrite:7]", false},
		{"inferred write (touch), same blob", with(func(s *fileStat) { s.mtime = 6e9 }), true, func() *pending {
			p := facts(factWrite, sed)
			p.facts[factWrite].inferred = true
			return p
		}(), true, "[]", false},
		{"inferred write (mapping), content differs", with(func(s *fileStat) { s.mtime = 6e9 }), true, func() *pending {
			p := facts(factWrite, sed)
			p.facts[factWrite].inferred = true
			return p
		}(), false, "[overwrite:7]", false},
		{"renamed over (sed -i)", with(func(s *fileStat) { s.ino = 11 }), true, facts(factReplace, sed), false, "[overwrite:7]", false},
		{"unlinked and created again (git)", with(func(s *fileStat) { s.ino = 11 }), true, facts(factUnlink, sed, factReplace, sed), false, "[overwrite:7]", false},
		{"inode number recycled", with(func(s *fileStat) { s.btime = 2e9 }), true, facts(factUnlink, sed), false, "[overwrite:7]", false},
		{"deleted", fileStat{}, false, facts(factUnlink, mv), false, "[delete:8]", false},
		{"renamed away", fileStat{}, false, facts(factAway, mv), false, "[rename:8]", false},
		{"renamed away, then a new file put there", with(func(s *fileStat) { s.ino = 12 }), true, facts(factAway, mv, factReplace, sed), false, "[rename:8 overwrite:7]", false},
		{"renamed away and back", sameFile, true, func() *pending { p := facts(factAway, mv, factReplace, mv); p.replaced = [2]int{1, 1}; return p }(), false, "[]", false},
		{"swapped for another and restored", sameFile, true, func() *pending { p := facts(factReplace, sed); p.replaced = [2]int{2, 2}; return p }(), true, "[overwrite:7]", false},
		{"swapped and restored, inotify only", sameFile, true, func() *pending { p := facts(factReplace, event.Process{}); p.replaced = [2]int{2, 0}; return p }(), true, "[overwrite:0]", false},
		{"renamed away and written there", fileStat{}, false, func() *pending { p := facts(factAway, mv, factChanged, event.Process{}); p.size = 10; return p }(), false, "[rename:8 truncate:0]", false},
		{"rescan: gone", fileStat{}, false, facts(), false, "[delete:0]", true},
		{"rescan: replaced", with(func(s *fileStat) { s.ino = 11 }), true, facts(), false, "[overwrite:0]", true},
		{"rescan: content changed", with(func(s *fileStat) { s.mtime = 6e9 }), true, facts(), false, "[overwrite:0]", true},
		{"rescan: shorter", with(func(s *fileStat) { s.size = 1; s.mtime = 6e9 }), true, facts(), false, "[truncate:0]", true},
		{"rescan: touched, same blob", with(func(s *fileStat) { s.mtime = 6e9 }), true, facts(), true, "[]", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := decide(&b, tc.st, tc.exists, tc.p, func() bool { return tc.same })
			var got []string
			for _, e := range out {
				got = append(got, fmt.Sprintf("%s:%d", e.op, e.f.proc.PID))
				if e.f.set == tc.unknown {
					t.Errorf("%s: fact set = %v", e.op, e.f.set)
				}
			}
			if fmt.Sprint(got) != tc.want {
				t.Errorf("got %v, want %s", got, tc.want)
			}
		})
	}
}

// TestTrackerOnce checks the dedup and attribution rules end to end on a
// fake file system: many writes are one report, a pid-less fact is named
// by a later one, and a settled path reports a new kind again.
func TestTrackerOnce(t *testing.T) {
	base := &baseline{root: "/w", entries: []entry{
		{path: "", mode: modeDir, blob: -1},
		{path: "a", dev: 1, ino: 2, size: 10, mtime: 1, mode: modeReg, blob: -1},
	}}
	base.build(nil)
	state := fileStat{dev: 1, ino: 2, size: 10, mtime: 1, mode: modeReg}
	exists := true
	var got []event.File
	tr := newTracker(base, func(r event.Record) { got = append(got, *r.File) }, nil)
	tr.statPath = func(int32) (fileStat, bool) { return state, exists }
	tr.sameContent = func(int32) bool { return false }
	now := time.Unix(1000, 0)
	tr.now = func() time.Time { return now }
	tr.naming = true
	idx := base.byPath["a"]
	sh := event.Process{PID: 5, Exe: "/bin/sh", Cmdline: "sh"}

	state.size, state.mtime = 20, 2
	tr.add(idx, factWrite, event.Process{Unknown: "inotify"}, now, 20)
	tr.settleDue(false)
	if len(got) != 0 {
		t.Fatalf("settled before its time: %v", got)
	}
	now = now.Add(tr.settle)
	tr.settleDue(false)
	if len(got) != 0 {
		t.Fatalf("a pid-less fact must wait for the grace period while fanotify runs: %v", got)
	}
	for range 1000 {
		tr.add(idx, factWrite, sh, now.Add(time.Second), 20)
	}
	now = now.Add(tr.settle)
	tr.settleDue(false)
	if len(got) != 1 || got[0].Event != event.Overwrite || got[0].Process.PID != 5 || !got[0].Time.Equal(time.Unix(1000, 0)) {
		t.Fatalf("got %+v, want one overwrite by pid 5 at the first sighting", got)
	}
	tr.add(idx, factWrite, sh, now, 20)
	tr.settleDue(true)
	if len(got) != 1 {
		t.Fatalf("reported twice: %+v", got)
	}
	exists = false
	tr.add(idx, factUnlink, sh, now, -1)
	tr.settleDue(true)
	if len(got) != 2 || got[1].Event != event.Delete {
		t.Fatalf("got %+v, want a delete after the overwrite", got)
	}
	if tr.events.Load() != 2 || tr.unattributed.Load() != 0 {
		t.Errorf("counts %d/%d", tr.events.Load(), tr.unattributed.Load())
	}
}

// TestTrackerLateCopies: what settles first and what arrives after it
// in either order, the race that made TestTamper flaky under load. A
// change decided once is not decided again from inotify's late pid-less
// copy of it, nor from the final rescan that finds the same difference
// from the baseline; a change made after it still is.
func TestTrackerLateCopies(t *testing.T) {
	for _, tc := range []struct {
		name string
		// first is the named change; late what arrives after it settled.
		first, late func(tr *tracker, idx int32, now time.Time)
		// size is the file's size after first (0: gone); after changes
		// the path again before late, or is nil.
		size  int64
		after func(st *fileStat, exists *bool)
		want  []event.FileOp
	}{
		{"rename, then the rescan finds the path gone",
			func(tr *tracker, idx int32, now time.Time) {
				tr.add(idx, factAway, event.Process{PID: 5, Exe: "/bin/mv"}, now, -1)
			},
			func(tr *tracker, idx int32, now time.Time) { tr.touch(idx) },
			0, nil, []event.FileOp{event.Rename}},
		{"shorter rewrite, then inotify's copy of its truncation",
			func(tr *tracker, idx int32, now time.Time) {
				tr.add(idx, factWrite, event.Process{PID: 5, Exe: "/bin/sh"}, now, 2)
			},
			func(tr *tracker, idx int32, now time.Time) {
				tr.add(idx, factChanged, event.Process{Unknown: "inotify"}, now, 2)
			},
			2, nil, []event.FileOp{event.Overwrite}},
		{"shorter rewrite, then the rescan",
			func(tr *tracker, idx int32, now time.Time) {
				tr.add(idx, factWrite, event.Process{PID: 5, Exe: "/bin/sh"}, now, 2)
			},
			func(tr *tracker, idx int32, now time.Time) { tr.touch(idx) },
			2, nil, []event.FileOp{event.Overwrite}},
		{"rewrite, then a truncation by path that only inotify sees",
			func(tr *tracker, idx int32, now time.Time) {
				tr.add(idx, factWrite, event.Process{PID: 5, Exe: "/bin/sh"}, now, 20)
			},
			func(tr *tracker, idx int32, now time.Time) {
				tr.add(idx, factChanged, event.Process{Unknown: "inotify"}, now, 1)
			},
			20, func(st *fileStat, _ *bool) { st.size, st.mtime = 1, 3 }, []event.FileOp{event.Overwrite, event.Truncate}},
		{"rewrite, then deleted without a named event",
			func(tr *tracker, idx int32, now time.Time) {
				tr.add(idx, factWrite, event.Process{PID: 5, Exe: "/bin/sh"}, now, 20)
			},
			func(tr *tracker, idx int32, now time.Time) { tr.touch(idx) },
			20, func(_ *fileStat, exists *bool) { *exists = false }, []event.FileOp{event.Overwrite, event.Delete}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := &baseline{root: "/w", entries: []entry{
				{path: "", mode: modeDir, blob: -1},
				{path: "a", dev: 1, ino: 2, size: 10, mtime: 1, mode: modeReg, blob: -1},
			}}
			base.build(nil)
			st := fileStat{dev: 1, ino: 2, size: tc.size, mtime: 2, mode: modeReg}
			exists := tc.size > 0
			var got []event.FileOp
			tr := newTracker(base, func(r event.Record) { got = append(got, r.File.Event) }, nil)
			tr.statPath = func(int32) (fileStat, bool) { return st, exists }
			tr.sameContent = func(int32) bool { return false }
			now := time.Unix(1000, 0)
			tr.now = func() time.Time { return now }
			tr.naming = true
			idx := base.byPath["a"]
			tc.first(tr, idx, now)
			now = now.Add(tr.settle)
			tr.settleDue(false)
			if tc.after != nil {
				tc.after(&st, &exists)
			}
			tc.late(tr, idx, now)
			tr.settleDue(true)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("reported %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFilesUnder(t *testing.T) {
	base := &baseline{root: "/w"}
	for _, p := range []string{"", "a", "a/x", "a/y", "a/y/z", "a.txt", "ab", "b"} {
		mode := uint32(modeReg)
		if p == "" || p == "a" || p == "a/y" {
			mode = modeDir
		}
		base.entries = append(base.entries, entry{path: p, mode: mode, ino: uint64(len(base.entries) + 1), blob: -1})
	}
	base.build(nil)
	names := func(idx []int32) []string {
		var s []string
		for _, i := range idx {
			s = append(s, base.entries[i].path)
		}
		return s
	}
	if got := fmt.Sprint(names(base.filesUnder(base.byPath["a"]))); got != "[a/x a/y/z]" {
		t.Errorf("under a: %s", got)
	}
	if got := fmt.Sprint(names(base.filesUnder(base.byPath[""]))); got != "[a.txt a/x a/y/z ab b]" {
		t.Errorf("under root: %s", got)
	}
	for _, tc := range []struct{ root, name, rel string }{
		{"/w", "/w/a/x", "a/x"}, {"/w", "/w", ""}, {"/w", "/wx/a", "!"}, {"/", "/etc/x", "etc/x"},
	} {
		b := &baseline{root: tc.root}
		rel, ok := b.rel(tc.name)
		if !ok {
			rel = "!"
		}
		if rel != tc.rel {
			t.Errorf("rel(%q, %q) = %q, want %q", tc.root, tc.name, rel, tc.rel)
		}
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want procStat
		ok   bool
	}{
		{"42 (sed) R 7 42 42 0 -1 4194560 1 0", procStat{comm: "sed", state: 'R', ppid: 7}, true},
		{"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0", procStat{comm: "kthreadd", state: 'S', ppid: 0, kthread: true}, true},
		{"9 (a) b) (c) Z 1 9 9 0 -1 4194564 0", procStat{comm: "a) b) (c", state: 'Z', ppid: 1}, true},
		{"9 (x) R 1", procStat{}, false},
		{"9 x R 1 2 3 4 5 6", procStat{}, false},
		{"", procStat{}, false},
	} {
		got, ok := parseStat([]byte(tc.in))
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseStatusUID(t *testing.T) {
	uid, ok := parseStatusUID([]byte("Name:\tsed\nState:\tR\nUid:\t65534\t0\t0\t0\nGid:\t1\t1\t1\t1\n"))
	if !ok || uid != 65534 {
		t.Errorf("uid %d %v", uid, ok)
	}
	if _, ok := parseStatusUID([]byte("Name:\tx\nUid:\n")); ok {
		t.Error("empty Uid accepted")
	}
	if got := cmdline([]byte("sh\x00-c\x00echo x\x00")); got != "sh -c echo x" {
		t.Errorf("cmdline %q", got)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("42 (sed) R 7 42 42 0 -1 4194560 1 0"))
	f.Add([]byte("9 (a) b) (c) Z 1 9 9 0 -1 4194564 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, ok := parseStat(b)
		if ok && st.ppid < 0 {
			t.Fatalf("negative ppid from %q", b)
		}
	})
}

func FuzzParseStatusUID(f *testing.F) {
	f.Add([]byte("Uid:\t65534\t0\t0\t0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if uid, ok := parseStatusUID(b); ok && uid < 0 {
			t.Fatalf("negative uid from %q", b)
		}
	})
}

// TestCheckoutPostChangesOnlyGitConfig: the checkout's post step removes
// the credentials its main step stored in .git/config, its own change;
// anything else it writes is reported like any step's.
func TestCheckoutPostChangesOnlyGitConfig(t *testing.T) {
	base := &baseline{root: "/w", entries: []entry{
		{path: "", mode: modeDir, blob: -1},
		{path: ".git", mode: modeDir, blob: -1},
		{path: ".git/config", dev: 1, ino: 2, size: 10, mtime: 1, mode: modeReg, blob: -1},
		{path: "main.go", dev: 1, ino: 3, size: 10, mtime: 1, mode: modeReg, blob: -1},
	}}
	base.build(nil)
	var got []string
	tr := newTracker(base, func(r event.Record) {
		switch {
		case r.File != nil:
			got = append(got, string(r.File.Event)+" "+r.File.Path)
		case r.Steer != nil:
			got = append(got, "steer "+r.Steer.Path)
		}
	}, nil)
	tr.statPath = func(idx int32) (fileStat, bool) {
		e := base.entries[idx]
		return fileStat{dev: e.dev, ino: e.ino, size: 20, mtime: 2, mode: modeReg}, true
	}
	tr.sameContent = func(int32) bool { return false }
	post := event.Process{PID: 9, Exe: "/usr/bin/git", Cmdline: "git config --local --unset-all http.https://github.com/.extraheader"}
	tr.checkoutPost = func(p event.Process) bool { return p.PID == 9 }
	now := time.Unix(1000, 0)
	for _, p := range []string{".git/config", "main.go"} {
		tr.add(base.byPath[p], factWrite, post, now, 20)
	}
	tr.settleDue(true)
	if fmt.Sprint(got) != "[overwrite main.go]" {
		t.Errorf("reported %v, want [overwrite main.go]", got)
	}
}
