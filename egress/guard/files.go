package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/filemon"
)

// DefaultFiles are the files under /etc whose change is reported as
// tampering: name resolution (resolv.conf, hosts: our resolver and
// firewall do not depend on them, but a step that rewrites them is up to
// something) and sudo's policy (disable-sudo depends on it). A directory
// covers everything in it.
var DefaultFiles = []string{"resolv.conf", "hosts", "sudoers", "sudoers.d"}

// steerWhy marks filemon's Steer records of files new under a watched path.
const steerWhy = "guard: a watched file"

// FilesConfig says which files to watch.
type FilesConfig struct {
	Root    string   // default /etc
	Files   []string // relative to Root; default DefaultFiles
	Emit    event.Emit
	Process func(pid int) event.Process // required
	// Explain, if set, says more about a change of the file rel (relative
	// to Root, slash separated), appended to its one report line: e.g.
	// that a sudoers change gives disable-sudo's user its rights back.
	Explain func(rel string) string
	Log     *slog.Logger
}

// Files watches FilesConfig.Files with package filemon (fanotify: the
// writer's pid, inotify for names) and turns each change into a tamper
// error. Close is safe to call twice.
type Files struct {
	m     *filemon.Monitor
	count func() int
}

// WatchFiles baselines Root and starts watching; it returns once armed.
// filemon watches all of Root (it follows renames and hard links), and
// only changes of the listed files are reported.
func WatchFiles(ctx context.Context, cfg FilesConfig) (*Files, error) {
	if cfg.Emit == nil || cfg.Process == nil {
		return nil, errors.New("guard: files: Emit and Process are required")
	}
	if cfg.Root == "" {
		cfg.Root = "/etc"
	}
	if len(cfg.Files) == 0 {
		cfg.Files = DefaultFiles
	}
	n := new(atomic.Int64)
	report := func(t time.Time, rel, what string, p event.Process) {
		msg := fmt.Sprintf("%s: %s by %s", path.Join(cfg.Root, rel), what, who(p))
		if cfg.Explain != nil {
			msg += cfg.Explain(rel)
		}
		n.Add(1)
		cfg.Emit(event.Record{Note: &event.Note{Time: t, Component: "guard", Level: "error", Tamper: true,
			Process: &p, Message: msg}})
	}
	emit := func(rec event.Record) {
		switch {
		case rec.File != nil && watched(cfg.Files, rec.File.Path):
			report(rec.File.Time, rec.File.Path, string(rec.File.Event), rec.File.Process)
		case rec.Steer != nil && rec.Steer.Why == steerWhy && watched(cfg.Files, rec.Steer.Path):
			// A file new since the baseline (a sudoers.d drop-in put back).
			report(rec.Steer.Time, rec.Steer.Path, rec.Steer.Change, rec.Steer.Process)
		case rec.Note != nil && rec.Note.Level != "info":
			// filemon's own trouble (lost events, no fanotify) matters here
			// too: say which watch it is about.
			note := *rec.Note
			note.Component = "guard"
			note.Message = "watching " + cfg.Root + ": " + note.Message
			cfg.Emit(event.Record{Note: &note})
		}
		// File records of other paths, StepRoots and filemon's Stats
		// belong to the workspace monitor's report, not here.
	}
	// New files are not tampering for filemon (it guards what existed):
	// as steering files, the watched paths' new files are reported too.
	steer := func(rel string) string {
		if watched(cfg.Files, rel) {
			return steerWhy
		}
		return ""
	}
	m, err := filemon.New(filemon.Config{Root: cfg.Root, Emit: emit, Process: cfg.Process, Log: cfg.Log, NoOpenGate: true,
		Steer: steer})
	if err != nil {
		return nil, fmt.Errorf("guard: watch %s: %w", cfg.Root, err)
	}
	if err := m.Start(ctx); err != nil {
		return nil, fmt.Errorf("guard: watch %s: %w", cfg.Root, err)
	}
	return &Files{m: m, count: func() int { return int(n.Load()) }}, nil
}

// Changes returns how many changes of watched files were reported.
func (f *Files) Changes() int { return f.count() }

// Close stops watching; changes still settling are reported first.
func (f *Files) Close() error { return f.m.Close() }

// watched reports whether p (slash-separated, relative to the root) is one
// of files or inside one of them.
func watched(files []string, p string) bool {
	for _, f := range files {
		if p == f || strings.HasPrefix(p, f+"/") {
			return true
		}
	}
	return false
}

func who(p event.Process) string {
	s := fmt.Sprintf("pid %d", p.PID)
	if p.Exe != "" {
		s += " " + p.Exe
	}
	if p.Cmdline != "" {
		s += " (" + p.Cmdline + ")"
	}
	if p.Unknown != "" {
		s += " (" + p.Unknown + ")"
	}
	return s
}
