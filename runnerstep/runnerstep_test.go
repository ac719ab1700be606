package runnerstep

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/harden-runner/harden-runner/event"
)

const (
	worker = "/home/runner/runners/2.321.0/bin/Runner.Worker"
	script = "/home/runner/work/_temp/0f3c2a4e-1b2d-4c5e-8f90-a1b2c3d4e5f6.sh"
)

func TestRootOf(t *testing.T) {
	w := event.Ancestor{PID: 10, Exe: worker, Cmdline: worker + " spawnclient 115 118"}
	listener := event.Ancestor{PID: 9, Exe: "/home/runner/runners/2.321.0/bin/Runner.Listener"}
	bash := event.Ancestor{PID: 20, Exe: "/usr/bin/bash", Cmdline: "/usr/bin/bash -e " + script}
	for _, tc := range []struct {
		name string
		p    event.Process
		want int // root pid, 0 for none
	}{
		{"grandchild of the worker", event.Process{PID: 30, Exe: "/usr/bin/curl", Parents: []event.Ancestor{bash, w, listener}}, 20},
		{"the step's shell itself", event.Process{PID: 20, Exe: "/usr/bin/bash", Cmdline: bash.Cmdline, Parents: []event.Ancestor{w, listener}}, 20},
		{"the worker itself", event.Process{PID: 10, Exe: worker, Parents: []event.Ancestor{listener}}, 0},
		{"an orphan", event.Process{PID: 31, Exe: "/usr/bin/node", Parents: []event.Ancestor{{PID: 1, Exe: "/usr/lib/systemd/systemd"}}}, 0},
		{"unknown process", event.Process{Unknown: "exited"}, 0},
		{"worker known by pid only (exited exe unread)", event.Process{PID: 30, Parents: []event.Ancestor{bash, {PID: 10}}}, 20},
		// Spoofs a step can make: none is the pinned worker (pid 10).
		{"bash copied as Runner.Worker in a step", event.Process{PID: 40, Exe: "/usr/bin/curl",
			Parents: []event.Ancestor{{PID: 35, Exe: "/usr/bin/sh"}, {PID: 33, Exe: "/tmp/x/bin/Runner.Worker"}, bash, w, listener}}, 20},
		{"exec -a Runner.Worker command line", event.Process{PID: 40, Exe: "/usr/bin/node",
			Parents: []event.Ancestor{{PID: 33, Exe: "/usr/bin/bash", Cmdline: worker + " spawnclient 1 2"}, bash, w}}, 20},
		{"a step's process that says it is actions/checkout", event.Process{PID: 40, Exe: "/usr/bin/node",
			Cmdline: "node /home/runner/work/_actions/actions/checkout/v4/dist/index.js", Parents: []event.Ancestor{bash, w}}, 20},
		{"a copy of the worker outside any step", event.Process{PID: 30, Parents: []event.Ancestor{bash, {PID: 11, Exe: worker}}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, ok := RootOf(tc.p, 10)
			if got := map[bool]int{true: root.PID}[ok]; got != tc.want || ok != (tc.want != 0) {
				t.Errorf("RootOf = %+v, %v; want pid %d", root, ok, tc.want)
			}
		})
	}
}

// mapFS is a pure stand-in for the file system: path → content.
type mapFS map[string]string

func (m mapFS) ReadHead(p string) ([]byte, error) {
	s, ok := m[p]
	if !ok {
		return nil, os.ErrNotExist
	}
	return []byte(s), nil
}

func (m mapFS) Exists(p string) bool { _, ok := m[p]; return ok }

func TestDefaultName(t *testing.T) {
	ps1 := strings.TrimSuffix(script, ".sh") + ".ps1"
	cmd := strings.TrimSuffix(script, ".sh") + ".cmd"
	fs := mapFS{
		script: "\n  \tnpm ci --ignore-scripts\nnpm test\n",
		ps1:    "$ErrorActionPreference = 'stop'\r\nWrite-Host hi\r\nif ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) { exit $LASTEXITCODE }",
		cmd:    "@echo off\r\ndir\r\n",
		"/home/runner/work/_actions/actions/setup-go/v5/action.yml":          "",
		"/home/runner/work/_actions/github/codeql-action/v3/init/action.yml": "",
		"/home/runner/work/_actions/github/codeql-action/v3/action.yml-not":  "",
		"/home/runner/work/_temp/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee":       "make",
		"/home/runner/work/_temp/11111111-2222-3333-4444-555555555555.sh":    strings.Repeat("x", 300),
		"/home/runner/work/_temp/11111111-2222-3333-4444-666666666666.sh":    "echo \xff\xfe",
		"/home/runner/work/_actions/o/r/main/a/b/action.yaml":                "",
	}
	for _, tc := range []struct{ cmdline, want string }{
		{"/usr/bin/bash -e " + script, "Run npm ci --ignore-scripts"},
		{"/usr/bin/bash --noprofile --norc -e -o pipefail " + script, "Run npm ci --ignore-scripts"},
		{`/usr/bin/pwsh -command ". '` + ps1 + `'"`, "Run Write-Host hi"},
		{`cmd /D /E:ON /V:OFF /S /C "CALL "` + cmd + `""`, "Run dir"},
		{"/usr/bin/python3 /home/runner/work/_temp/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "Run make"},
		{"/usr/bin/bash -e /home/runner/work/_temp/11111111-2222-3333-4444-555555555555.sh", "Run " + strings.Repeat("x", maxNameLen) + "…"},
		{"/usr/bin/bash -e /home/runner/work/_temp/11111111-2222-3333-4444-666666666666.sh", "Run echo \uFFFD"},
		{"/usr/bin/bash -e /home/runner/work/_temp/99999999-2222-3333-4444-555555555555.sh", ""}, // gone
		{"/home/runner/runners/2.321.0/externals/node20/bin/node /home/runner/work/_actions/actions/setup-go/v5/dist/setup/index.js", "Run actions/setup-go@v5"},
		{"/home/runner/runners/2.321.0/externals/node20/bin/node /home/runner/work/_actions/github/codeql-action/v3/init/../lib/init-action.js", "Run github/codeql-action/init@v3"},
		{"node /home/runner/work/_actions/o/r/main/a/b/dist/index.js", "Run o/r/a/b@main"},
		{"node /home/runner/work/_actions/o/r/v1/index.js", "Run o/r@v1"},
		{"/usr/bin/docker run --rm image", ""},
		{"/usr/bin/bash -e /home/runner/work/_temp/not-a-guid.sh", ""},
	} {
		if got := DefaultName(tc.cmdline, fs); got != tc.want {
			t.Errorf("DefaultName(%q) = %q, want %q", tc.cmdline, got, tc.want)
		}
	}
}

func TestTrackerRecordsEachRootOnce(t *testing.T) {
	w := event.Ancestor{PID: 10, Exe: worker}
	bash := event.Ancestor{PID: 20, Exe: "/usr/bin/bash", Cmdline: "/usr/bin/bash -e " + script}
	var got []event.Record
	emit := NewTracker(mapFS{script: "curl https://example.com\n"}, 10).Wrap(func(r event.Record) { got = append(got, r) })
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	flow := func(pid int, parents ...event.Ancestor) event.Record {
		return event.Record{Flow: &event.Flow{Time: t0, Process: event.Process{PID: pid, Parents: parents}}}
	}
	emit(flow(30, bash, w))
	emit(flow(31, bash, w))
	emit(event.Record{Note: &event.Note{Message: "x"}})
	emit(flow(32, event.Ancestor{PID: 1}))
	// Same pid, another command line: a later step that got the pid again.
	emit(flow(33, event.Ancestor{PID: 20, Exe: "/usr/bin/bash", Cmdline: "/usr/bin/bash -e /x"}, w))
	var roots []event.StepRoot
	for _, r := range got {
		if r.StepRoot != nil {
			roots = append(roots, *r.StepRoot)
		}
	}
	if len(got) != 7 || len(roots) != 2 || got[0].StepRoot == nil || got[1].Flow == nil {
		t.Fatalf("records: %d, roots %+v", len(got), roots)
	}
	if r := roots[0]; r.PID != 20 || r.Name != "Run curl https://example.com" || !r.Time.Equal(t0) {
		t.Errorf("first root %+v", r)
	}
	if r := roots[1]; r.PID != 20 || r.Name != "" {
		t.Errorf("second root %+v", r)
	}
}

func TestHostFSFollowsNoLinks(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("root:$6$hash\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "_temp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	name := "0f3c2a4e-1b2d-4c5e-8f90-a1b2c3d4e5f6.sh"
	if err := os.Symlink(secret, filepath.Join(tmp, name)); err != nil {
		t.Fatal(err)
	}
	if got := DefaultName("bash -e "+filepath.Join(tmp, name), HostFS{}); got != "" {
		t.Errorf("read through a symlink: %q", got)
	}
	// A directory link on the way is refused too.
	if err := os.Symlink(tmp, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(tmp, "11111111-2222-3333-4444-555555555555.sh")
	if err := os.WriteFile(real, []byte("go test ./...\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := DefaultName("bash -e "+filepath.Join(dir, "link", "_temp", filepath.Base(real)), HostFS{}); got != "" {
		t.Errorf("read through a directory symlink: %q", got)
	}
	if _, err := (HostFS{}).ReadHead(filepath.Join(dir, "link", filepath.Base(real))); !errors.Is(err, os.ErrNotExist) && err == nil {
		t.Error("ReadHead followed a directory link")
	}
	if got := DefaultName("bash -e "+real, HostFS{}); got != "Run go test ./..." {
		t.Errorf("plain script: %q", got)
	}
}

func FuzzDefaultName(f *testing.F) {
	f.Add("/usr/bin/bash -e "+script, "npm ci\n")
	f.Add("node /w/_actions/o/r/v1/a/index.js", "")
	f.Add(`pwsh -command ". '`+script+`'"`, "$ErrorActionPreference = 'stop'\r\n\xff")
	f.Fuzz(func(t *testing.T, cmdline, content string) {
		fs := fuzzFS{content}
		name := DefaultName(cmdline, fs)
		if !utf8.ValidString(name) {
			t.Errorf("invalid UTF-8 name %q", name)
		}
		if len(name) > len("Run ")+maxNameLen+len("…") {
			t.Errorf("name too long: %d", len(name))
		}
		if strings.ContainsAny(strings.TrimPrefix(name, "Run "), "\r\n") {
			t.Errorf("name spans lines: %q", name)
		}
		RootOf(event.Process{PID: 2, Cmdline: cmdline, Parents: []event.Ancestor{{PID: 1, Cmdline: cmdline}}}, 1)
	})
}

// fuzzFS has every file, with the same content.
type fuzzFS struct{ s string }

func (f fuzzFS) ReadHead(string) ([]byte, error) { return []byte(f.s), nil }
func (f fuzzFS) Exists(string) bool              { return true }
