package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/filemon"
)

// DefaultFiles are the files under /etc whose change is reported as
// tampering: name resolution (resolv.conf, hosts: our resolver and
// firewall do not depend on them, but a step that rewrites them is up to
// something) and sudo's policy (disable-sudo depends on it; sudo.conf can
// point sudo at another sudoers file). A directory covers everything in it.
var DefaultFiles = []string{"resolv.conf", "hosts", "sudoers", "sudoers.d", "sudo.conf"}

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
	// IfExplained, if set, picks more files (rel as for Explain) whose
	// changes are reported only when Explain has something to say about
	// them: the user and group databases change with every package that
	// adds a system user, and matter here only when a change gives the
	// user sudo; so does a file that sudoers includes.
	IfExplained func(rel string) bool
	Log         *slog.Logger
}

// Files watches FilesConfig.Files with package filemon (fanotify: the
// writer's pid, inotify for names) and turns each change into a tamper
// error. Close is safe to call twice.
type Files struct {
	m     *filemon.Monitor
	count func() int
	wg    sync.WaitGroup // reports of new files waiting for their writer
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
	explain := cfg.Explain
	report := func(t time.Time, rel, what, more string, p event.Process) {
		msg := fmt.Sprintf("%s: %s by %s", path.Join(cfg.Root, rel), what, who(p)) + more
		cfg.Emit(event.Record{Note: &event.Note{Time: t, Component: event.ComponentGuard, Level: event.LevelError, Tamper: true,
			Process: &p, Message: msg}})
		n.Add(1) // once the note is out: a reader of Changes finds it
	}
	files := &Files{count: func() int { return int(n.Load()) }}
	emit := func(rec event.Record) {
		switch {
		case rec.File != nil && explain != nil && cfg.IfExplained != nil && !watched(cfg.Files, rec.File.Path) && cfg.IfExplained(rec.File.Path):
			if more := explain(rec.File.Path); more != "" {
				report(rec.File.Time, rec.File.Path, string(rec.File.Event), more, rec.File.Process)
			}
		case rec.File != nil && watched(cfg.Files, rec.File.Path):
			more := ""
			if explain != nil {
				more = explain(rec.File.Path)
			}
			report(rec.File.Time, rec.File.Path, string(rec.File.Event), more, rec.File.Process)
		case rec.Steer != nil && rec.Steer.Why == steerWhy:
			// A file new since the baseline (a sudoers.d drop-in put back).
			// It is reported as it is created, before its writer has
			// written it: what it says (Explain) is read once it is.
			st := *rec.Steer
			if explain == nil {
				report(st.Time, st.Path, st.Change, "", st.Process)
				break
			}
			always := watched(cfg.Files, st.Path) // else picked by IfExplained
			files.wg.Add(1)
			go func() {
				defer files.wg.Done()
				abs := filepath.Join(cfg.Root, filepath.FromSlash(st.Path))
				says := func() bool { return explain(st.Path) != "" }
				var more string
				if empty(abs) {
					// Created, not written yet: another file's grant
					// would explain it now, not what it will say.
					waitWritten(abs, func() bool { return !empty(abs) }, writtenWait)
					more = explain(st.Path)
				} else if more = explain(st.Path); more == "" {
					waitWritten(abs, says, writtenWait)
					more = explain(st.Path)
				}
				if always || more != "" {
					report(st.Time, st.Path, st.Change, more, st.Process)
				}
			}()
		case rec.Note != nil && rec.Note.Level != event.LevelInfo:
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
		if watched(cfg.Files, rel) || (explain != nil && cfg.IfExplained != nil && cfg.IfExplained(rel)) {
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
	files.m = m
	return files, nil
}

// writtenWait bounds the wait for a new watched file's writer to close it.
const writtenWait = time.Second

// empty reports whether the file at abs is there and holds nothing.
func empty(abs string) bool {
	fi, err := os.Stat(abs)
	return err == nil && fi.Size() == 0
}

// waitWritten waits until the file at abs is closed after a write
// (inotify IN_CLOSE_WRITE), done says so (its writer finished before the
// watch was set), or d passes.
func waitWritten(abs string, done func() bool, d time.Duration) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, abs, unix.IN_CLOSE_WRITE|unix.IN_DELETE_SELF|unix.IN_ONESHOT); err != nil {
		return
	}
	if done() {
		return
	}
	_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(d.Milliseconds()))
}

// Changes returns how many changes of watched files were reported.
func (f *Files) Changes() int { return f.count() }

// Close stops watching; changes still settling are reported first.
func (f *Files) Close() error {
	err := f.m.Close()
	f.wg.Wait()
	return err
}

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
