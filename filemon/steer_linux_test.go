package filemon

import (
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/event"
)

func (r *recorder) steers() []event.Steer {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.Steer
	for _, rec := range r.recs {
		if rec.Steer != nil {
			out = append(out, *rec.Steer)
		}
	}
	return out
}

// TestSteeringFiles: each file that steers a build's tools, created or
// changed after the checkout, is reported as its own kind with its writer,
// and not as tampering.
func TestSteeringFiles(t *testing.T) {
	needRoot(t)
	origin := originForTest(t)
	// As the agent runs the monitor: the checkout is recognised only with
	// the kernel's process table (agent.isCheckout), which also names a git
	// init that exited before a lagging reader saw .git appear.
	fromTable := lineageFinderForTest(t)
	for _, tc := range []struct {
		script string
		path   string
		change string
	}{
		{"echo registry=http://198.18.0.9/ > .npmrc", ".npmrc", "created"},
		{"echo 'npmRegistryServer: x' > .yarnrc.yml", ".yarnrc.yml", "created"},
		{"printf '[global]\\nindex-url=x\\n' > pip.conf", "pip.conf", "created"},
		{"echo 'import os' > sitecustomize.py", "sitecustomize.py", "created"},
		{"echo 'import evil' > lib/evil.pth", "lib/evil.pth", "created"},
		{"echo 'import os' > lib/conftest.py", "lib/conftest.py", "created"},
		{"printf 'go 1.22\\nuse ./evil\\n' > go.work", "go.work", "created"},
		{"echo '<Project/>' > Directory.Build.props", "Directory.Build.props", "created"},
		{"printf '#!/bin/sh\\ncurl x\\n' > .git/hooks/pre-commit", ".git/hooks/pre-commit", "created"},
		{"mkdir -p .github/workflows && echo 'on: push' > .github/workflows/evil.yml", ".github/workflows/evil.yml", "created"},
		{"git config core.hooksPath /tmp/evil", ".git/config", "overwrite"},
		{"git symbolic-ref HEAD refs/heads/other", ".git/HEAD", "overwrite"},
		{"git pack-refs --all", ".git/packed-refs", "created"},
		{"mkdir -p .git/info && echo '* filter=evil' > .git/info/attributes", ".git/info/attributes", "created"},
		{"git replace HEAD HEAD~1", ".git/refs/replace/", "created"},
		{"echo /tmp/evil/objects > .git/objects/info/alternates", ".git/objects/info/alternates", "created"},
		{"echo 0123 > .git/info/grafts", ".git/info/grafts", "created"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			root := treeForTest(t, nil)
			m, rec := startForTest(t, Config{Root: root, Checkout: isFakeCheckout, NoOpenGate: true, Process: fromTable})
			checkout(t, root, "git init -q; git remote add origin "+origin+"; git fetch -q origin +refs/heads/main:refs/remotes/origin/main; git checkout -q --force -B main refs/remotes/origin/main")
			waitRebuilt(t, m, 1)
			workload(t, root, "sh", "-c", tc.script)
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			for _, s := range rec.steers() {
				if !strings.HasPrefix(s.Path, tc.path) {
					t.Errorf("also reported: %s %s (%s)", s.Change, s.Path, s.Process.Unknown)
				}
			}
			if fs := rec.files(); len(fs) != 0 {
				t.Errorf("reported as tampering:%s", describe(fs))
			}
			var got []string
			found := false
			for _, s := range rec.steers() {
				got = append(got, s.Change+" "+s.Path+" by "+program(s.Process)+" "+s.Process.Unknown)
				if strings.HasPrefix(s.Path, tc.path) && s.Change == tc.change && s.Why != "" {
					found = true
					// The writer: named, or (a short-lived one, gone before the
					// event was read; no gate can hold a create) its pid, or
					// the maker of the directory it was created in.
					if !identified(s.Process) && s.Process.PID == 0 && !strings.Contains(s.Process.Unknown, "was made by pid") {
						t.Errorf("%s %s: no writer: %q", s.Change, s.Path, s.Process.Unknown)
					}
					if identified(s.Process) && !strings.Contains("dash git mkdir", program(s.Process)) {
						t.Errorf("%s %s: writer %s, not the workload", s.Change, s.Path, program(s.Process))
					}
				}
			}
			t.Logf("steering records: %q", got)
			if !found {
				t.Errorf("no %s %s reported; steering records: %q", tc.change, tc.path, got)
			}
		})
	}
}
