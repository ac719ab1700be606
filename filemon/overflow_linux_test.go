package filemon

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/event"
)

// lowerSysctlForTest sets a /proc/sys limit while fn runs (new inotify
// instances and fanotify groups take their queue size when created) and
// restores it at once.
func lowerSysctlForTest(t *testing.T, path string, v int, fn func()) {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("cannot read %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(v)), 0o644); err != nil {
		t.Skipf("cannot lower %s: %v", path, err)
	}
	restore := func() {
		if err := os.WriteFile(path, old, 0o644); err != nil {
			t.Errorf("restore %s to %s: %v", path, strings.TrimSpace(string(old)), err)
		}
	}
	defer restore()
	fn()
}

// TestOverflow forces a kernel queue to overflow: the reader is stalled
// while a flood of new files fills a queue lowered to a few dozen events,
// and the tampering happens both before and after the flood, so some of its
// events are certainly dropped. Every tamper must still be reported, and
// the loss counted.
func TestOverflow(t *testing.T) {
	needRoot(t)
	const flood = `i=0; while [ $i -lt 6000 ]; do : > src/new$i; i=$((i+1)); done`
	cases := []struct {
		name   string
		sysctl string
		cfg    func(hold <-chan struct{}) Config
		named  bool // tampers are named despite the overflow
	}{
		{
			name:   "inotify only",
			sysctl: "/proc/sys/fs/inotify/max_queued_events",
			cfg:    func(h <-chan struct{}) Config { return Config{NoFanotify: true, inotifyHoldForTest: h} },
		},
		{
			name:   "inotify with fanotify",
			sysctl: "/proc/sys/fs/inotify/max_queued_events",
			cfg:    func(h <-chan struct{}) Config { return Config{inotifyHoldForTest: h} },
			named:  true, // fanotify lost nothing
		},
		{
			name:   "fanotify",
			sysctl: "/proc/sys/fs/fanotify/max_queued_events",
			// The gate would stall the workload's opens with the reader.
			cfg: func(h <-chan struct{}) Config { return Config{NoOpenGate: true, fanotifyHoldForTest: h} },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := treeForTest(t, baseFiles)
			hold := make(chan struct{})
			cfg := tc.cfg(hold)
			cfg.Root = root
			var m *Monitor
			var rec *recorder
			lowerSysctlForTest(t, tc.sysctl, 32, func() { m, rec = startForTest(t, cfg) })
			released := false
			release := func() {
				if !released {
					close(hold)
					released = true
				}
			}
			t.Cleanup(release)

			sed := workload(t, root, "sed", "-i", "s/alpha/ALPHA/", "src/a.txt")
			workload(t, root, "sh", "-c", flood)
			trunc := workload(t, root, "truncate", "-s0", "src/b.txt")
			workload(t, root, "sh", "-c", "echo more >> src/c.txt")
			workload(t, root, "rm", "README.md")
			release()
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}

			got := rec.files()
			want := map[string]event.FileOp{"src/a.txt": event.Overwrite, "src/b.txt": event.Truncate, "src/c.txt": event.Overwrite, "README.md": event.Delete}
			if len(got) != len(want) {
				t.Fatalf("reported %d changes, want %d:%s", len(got), len(want), describe(got))
			}
			unattributed := 0
			for _, f := range got {
				if want[f.Path] != f.Event {
					t.Errorf("%s %s, want %s", f.Event, f.Path, want[f.Path])
				}
				if !identified(f.Process) {
					unattributed++
					if f.Process.Unknown == "" {
						t.Errorf("%s %s: unidentified without a reason", f.Event, f.Path)
					}
				}
			}
			if tc.named {
				for _, f := range got {
					wantPID := map[string]int{"src/a.txt": sed, "src/b.txt": trunc}[f.Path]
					if wantPID != 0 && f.Process.PID != wantPID {
						t.Errorf("%s %s: pid %d, want %d", f.Event, f.Path, f.Process.PID, wantPID)
					}
				}
			}
			st := rec.stats()
			if len(st) != 1 || st[0].Lost == 0 || st[0].Events != uint64(len(want)) || st[0].Unattributed != uint64(unattributed) {
				t.Errorf("stats %+v, want lost > 0, %d events, %d unattributed", st, len(want), unattributed)
			}
			if !strings.Contains(strings.Join(rec.notes(), "\n"), "overflowed") {
				t.Errorf("no note about the overflow: %q", rec.notes())
			}
			t.Logf("stats %+v", st)
		})
	}
}
