package privmon

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/proc"
)

// TestReportsExecs runs a stand-in for sudo (a copy of sleep, so the test
// needs no sudo installed) as an unprivileged user and expects one record
// naming the program and the process's new command line; a program not
// watched leaves no record.
func TestReportsExecs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for fanotify")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(dir, "fake-sudo")
	other := filepath.Join(dir, "not-watched")
	for _, p := range []string{fake, other} {
		if out, err := exec.Command("cp", "/bin/sleep", p).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	var mu sync.Mutex
	var got []event.Exec
	m, err := New(Config{Programs: []string{fake, filepath.Join(dir, "missing")}, Process: proc.InfoAfterExec, Emit: func(r event.Record) {
		if r.Exec != nil {
			mu.Lock()
			got = append(got, *r.Exec)
			mu.Unlock()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if w := m.Watched(); len(w) != 1 || w[0] != fake {
		t.Fatalf("watched %v, want only %s", w, fake)
	}
	for _, p := range []string{fake, other} {
		if out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", p, "0.2").CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", p, err, out)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("records %+v, want exactly one (the watched program)", got)
	}
	e := got[0]
	if e.Program != fake || e.Process.Exe != fake || !strings.Contains(e.Process.Cmdline, "fake-sudo 0.2") || e.Process.UID != 65534 {
		t.Errorf("record %+v, want %s run by uid 65534 with its own command line", e, fake)
	}
}

func TestStartFailsWithNothingToWatch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for fanotify")
	}
	m, err := New(Config{Programs: []string{"/nonexistent/sudo"}, Process: proc.InfoAfterExec, Emit: func(event.Record) {}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded with no program to watch")
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("New accepted a config without Emit and Process")
	}
}
