package sudowatch

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// TestRestoreIsReported: as root would (sudo before disable-sudo took it,
// or another way in), put the runner's rule back: by rename, by a new
// file, by appending to /etc/sudoers. Each is an error naming the file;
// other users' rules, ignored names and the rule /etc/sudoers had at the
// start are not.
func TestRestoreIsReported(t *testing.T) {
	etc, must := etcRoot(t, "root ALL=(ALL) ALL\n%wheel ALL=(ALL) ALL\n", "root:x:0:\nrunner:x:1001:\nwheel:x:10:\n")
	root := filepath.Dir(etc)
	var mu sync.Mutex
	var notes []string
	emit := func(r event.Record) {
		if r.Note != nil {
			mu.Lock()
			notes = append(notes, string(r.Note.Level)+": "+r.Note.Message)
			mu.Unlock()
		}
	}
	w, err := New(Config{User: "runner", Root: root, Emit: emit})
	must(err)
	must(w.Start(context.Background()))
	t.Cleanup(func() { w.Close() })
	waitFor := func(file string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			ok := slices.ContainsFunc(notes, func(n string) bool { return strings.HasPrefix(n, "error: ") && strings.Contains(n, file) })
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no error for %s; notes %q", file, notes)
			}
		}
	}
	rule := []byte("runner ALL=(ALL) NOPASSWD:ALL\n")
	// Ignored by the watch, and harmless: written first, so the positive
	// controls after them show they were seen and let pass.
	must(os.WriteFile(filepath.Join(etc, "sudoers.d", "deploy"), []byte("deploy ALL=(ALL) ALL\n"), 0o440))
	must(os.WriteFile(filepath.Join(etc, "sudoers.d", "runner.bak"), rule, 0o440)) // sudo skips names with '.'
	// Put back by rename from elsewhere.
	must(os.WriteFile(filepath.Join(root, "saved"), rule, 0o440))
	must(os.Rename(filepath.Join(root, "saved"), filepath.Join(etc, "sudoers.d", "runner")))
	waitFor("/etc/sudoers.d/runner")
	// A new file, written in place.
	must(os.WriteFile(filepath.Join(etc, "sudoers.d", "zz"), []byte("# x\nrunner,deploy ALL=(ALL) ALL\n"), 0o440))
	waitFor("/etc/sudoers.d/zz")
	// The user named another way: an alias, its uid, a group it is in.
	must(os.WriteFile(filepath.Join(etc, "sudoers.d", "alias"), []byte("User_Alias HR = deploy, runner\nHR ALL=(ALL) ALL\n"), 0o440))
	waitFor("/etc/sudoers.d/alias")
	must(os.WriteFile(filepath.Join(etc, "sudoers.d", "uid"), []byte("#1001 ALL=(ALL) NOPASSWD: ALL\n"), 0o440))
	waitFor("/etc/sudoers.d/uid")
	must(os.WriteFile(filepath.Join(etc, "sudoers.d", "group"), []byte("%runner ALL=(ALL) NOPASSWD: ALL\n"), 0o440))
	waitFor("/etc/sudoers.d/group")
	// The rule was there from the start; the user joins its group.
	must(os.WriteFile(filepath.Join(etc, "group"), []byte("root:x:0:\nrunner:x:1001:\nwheel:x:10:runner\n"), 0o644))
	waitFor("line 2: %wheel ALL=(ALL) ALL")
	// A line added to /etc/sudoers.
	f, err := os.OpenFile(filepath.Join(etc, "sudoers"), os.O_APPEND|os.O_WRONLY, 0)
	must(err)
	_, err = f.Write(rule)
	must(err)
	must(f.Close())
	waitFor("/etc/sudoers has")
	must(w.Close())
	mu.Lock()
	defer mu.Unlock()
	for _, n := range notes {
		if strings.Contains(n, "sudoers.d/deploy") || strings.Contains(n, "runner.bak") {
			t.Errorf("reported: %s", n)
		}
	}
}

// TestBaselineSudoersNotReported: a rule in /etc/sudoers from the start
// (left by disable-sudo, with a warning then) is not an error later.
func TestBaselineSudoersNotReported(t *testing.T) {
	root := t.TempDir()
	etc := filepath.Join(root, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "sudoers"), []byte("runner ALL=(ALL) ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var notes []string
	var stats *event.Stats
	w, err := New(Config{User: "runner", Root: root, Emit: func(r event.Record) {
		mu.Lock()
		defer mu.Unlock()
		if r.Note != nil {
			notes = append(notes, r.Note.Message)
		}
		if r.Stats != nil {
			stats = r.Stats
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "sudoers"), []byte("runner ALL=(ALL) ALL\n# edited\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	// sudoers.d created later is watched too: the positive control.
	if err := os.MkdirAll(filepath.Join(etc, "sudoers.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "sudoers.d", "r"), []byte("runner ALL=(ALL) ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(notes)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sudoers.d made after the start is not watched")
		}
	}
	w.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(notes) != 1 || !strings.Contains(notes[0], "/etc/sudoers.d/r") {
		t.Errorf("notes %q", notes)
	}
	if stats == nil || stats.Component != "sudowatch" || stats.Events != 1 {
		t.Errorf("stats %+v", stats)
	}
}

// uidRef is a #uid reference in sudoers text.
var uidRef = regexp.MustCompile(`#(-?[0-9]+)`)

// FuzzGrantsText: a text that names the user in no way (name, uid, a
// group, ALL, a netgroup or non-Unix group) grants nothing, and no text
// makes the parser fail.
func FuzzGrantsText(f *testing.F) {
	f.Add("runner ALL=(ALL) NOPASSWD:ALL\n", "runner")
	f.Add("# runner\n%sudo ALL=ALL\n", "runner")
	f.Add("User_Alias A = runner : B = A\n!B, ALL ALL=ALL\n", "runner")
	f.Add("a, \\\n b ALL=ALL\n#1001 ALL=ALL\n", "b")
	f.Fuzz(func(t *testing.T, text, name string) {
		if name == "" {
			return // no account has an empty name ("" in sudoers is one)
		}
		u := User{Name: name, UID: "1001", Groups: []string{"wheel"}, GIDs: []string{"10"}}
		if !GrantsText(text, u) {
			return
		}
		for _, s := range []string{"ALL", "%", "+"} {
			if strings.Contains(text, s) {
				return
			}
		}
		// The uid in any spelling sudo reads as it (#01001 is #1001).
		for _, m := range uidRef.FindAllStringSubmatch(text, -1) {
			if sameID(u.UID, m[1]) {
				return
			}
		}
		if !strings.Contains(text, name) {
			t.Errorf("GrantsText(%q, %q) without the user in the text", text, name)
		}
	})
}

// TestIncludedFileIsWatched: /etc/sudoers includes a file that is not
// /etc/sudoers or in /etc/sudoers.d (missing at the start: sudo skips
// it). A rule written there later gives the user its rights back.
func TestIncludedFileIsWatched(t *testing.T) {
	etc, must := etcRoot(t, "root ALL=(ALL) ALL\n@include /etc/sudoers.local\n", "root:x:0:\nrunner:x:1001:\n")
	var mu sync.Mutex
	var notes []string
	emit := func(r event.Record) {
		if r.Note != nil {
			mu.Lock()
			notes = append(notes, r.Note.Message)
			mu.Unlock()
		}
	}
	w, err := New(Config{User: "runner", Root: filepath.Dir(etc), Emit: emit})
	must(err)
	must(w.Start(context.Background()))
	t.Cleanup(func() { w.Close() })
	must(os.WriteFile(filepath.Join(etc, "sudoers.local"), []byte("runner ALL=(ALL) NOPASSWD:ALL\n"), 0o440))
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		ok := slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, "/etc/sudoers.local") })
		mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rule in /etc/sudoers.local went unreported; notes %q", notes)
		}
	}
}

// etcRoot is a root whose /etc has sudoers, an empty sudoers.d, group,
// and a passwd with runner (uid 1001); it returns that /etc and a fatal
// check.
func etcRoot(t *testing.T, sudoers, group string) (etc string, must func(error)) {
	etc = filepath.Join(t.TempDir(), "etc")
	must = func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(etc, "sudoers.d"), 0o755))
	must(os.WriteFile(filepath.Join(etc, "sudoers"), []byte(sudoers), 0o440))
	must(os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:x:0:0::/root:/bin/sh\nrunner:x:1001:1001::/home/runner:/bin/bash\n"), 0o644))
	must(os.WriteFile(filepath.Join(etc, "group"), []byte(group), 0o644))
	return etc, must
}
