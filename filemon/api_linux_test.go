package filemon

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

func TestNewValidates(t *testing.T) {
	emit := func(event.Record) {}
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", Config{Root: "/tmp", Emit: emit}, true},
		{"no root", Config{Emit: emit}, false},
		{"no emit", Config{Root: "/tmp"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	needRoot(t)
	root := treeForTest(t, baseFiles)
	rec := &recorder{}
	m, err := New(Config{Root: root, Emit: rec.emit})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("close before start: %v", err)
	}
	if len(rec.recs) != 0 {
		t.Errorf("a monitor that never started emitted %v", rec.recs)
	}
	if err := m.Start(context.Background()); err == nil {
		t.Error("start after close succeeded")
	}

	goroutines := runtime.NumGoroutine()
	m, rec = startForTest(t, Config{Root: root})
	if err := m.Start(context.Background()); !errors.Is(err, ErrStarted) {
		t.Errorf("second start: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if st := rec.stats(); len(st) != 1 || st[0] != (event.Stats{Component: "filemon"}) {
		t.Errorf("stats %+v, want one record of zeros", st)
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before Start", runtime.NumGoroutine(), goroutines)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Nothing armed is left: the workload's opens of baseline files do
	// not wait for a reader that is gone.
	workload(t, root, "sh", "-c", "cat src/a.txt > /dev/null")

	if _, err := New(Config{Root: root + "/missing", Emit: rec.emit}); err != nil {
		t.Fatal(err)
	}
	m, _ = New(Config{Root: root + "/missing", Emit: rec.emit})
	if err := m.Start(context.Background()); err == nil {
		t.Error("start on a missing root succeeded")
	}
}

// TestStreams checks that a change is reported while monitoring runs, a
// moment after it settles, not only at Close; and that Config.Process is
// what names the writer.
func TestStreams(t *testing.T) {
	needRoot(t)
	root := treeForTest(t, baseFiles)
	var calls atomic.Int64
	m, rec := startForTest(t, Config{Root: root, Process: func(pid int) event.Process {
		calls.Add(1)
		p := readProcess(pid)
		p.Cmdline = "via hook: " + p.Cmdline
		return p
	}})
	pid := workload(t, root, "sed", "-i", "s/alpha/omega/", "src/a.txt")
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.files()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := rec.files()
	if len(got) != 1 || got[0].Path != "src/a.txt" || got[0].Event != event.Overwrite || got[0].Process.PID != pid {
		t.Fatalf("before Close: %s", describe(got))
	}
	if calls.Load() == 0 || !strings.HasPrefix(got[0].Process.Cmdline, "via hook: ") {
		t.Errorf("Config.Process not used: %d calls, %+v", calls.Load(), got[0].Process)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.files()); n != 1 {
		t.Errorf("%d reports after Close, want still 1", n)
	}
}

// TestNoOpenGate runs without the gate: changes are reported, each with
// its pid, and the program when it was still running.
func TestNoOpenGate(t *testing.T) {
	needRoot(t)
	root := treeForTest(t, baseFiles)
	m, rec := startForTest(t, Config{Root: root, NoOpenGate: true})
	pid := workload(t, root, "sh", "-c", "echo x >> src/a.txt")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	got := rec.files()
	if len(got) != 1 || got[0].Event != event.Overwrite || got[0].Process.PID != pid {
		t.Fatalf("got %s", describe(got))
	}
	if !identified(got[0].Process) && got[0].Process.Unknown == "" {
		t.Errorf("unnamed without a reason: %+v", got[0].Process)
	}
}

// TestProcCache checks the cache on processes that are gone: named from
// the cache while fresh, with a reason otherwise, whatever the hook says.
func TestProcCache(t *testing.T) {
	calls := 0
	c := newProcCache(func(pid int) event.Process { calls++; return event.Process{PID: pid} }, os.Getpid())
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	const gone = 1 << 30 // no such pid
	if p := c.at(gone); p.PID != gone || p.Unknown == "" {
		t.Errorf("unknown pid: %+v", p)
	}
	c.store(gone, event.Process{PID: gone, Exe: "/usr/bin/sed", Cmdline: "sed -i"}, "/usr/bin/sed", now)
	now = now.Add(cacheTTL / 2)
	if p := c.at(gone); p.Exe != "/usr/bin/sed" {
		t.Errorf("exited after the gate saw it: %+v, want the cached sed", p)
	}
	now = now.Add(cacheTTL)
	if p := c.at(gone); p.Exe != "" || p.Unknown == "" {
		t.Errorf("stale cache entry used: %+v", p)
	}
	self := c.at(os.Getpid())
	if calls == 0 || self.PID != os.Getpid() {
		t.Errorf("live process: %+v after %d calls", self, calls)
	}
}
