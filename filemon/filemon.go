// Package filemon reports tampering with a workspace's pre-existing files:
// every file that existed when monitoring began and is then overwritten,
// appended to, truncated, renamed over or away, or deleted is reported once
// per kind of change and program as an event.File, with the process that
// did it. Files
// created during the job are never reported. filemon knows nothing of the
// network policy; it emits records through an event.Emit.
//
// # How it works
//
// Start walks the workspace once and records each file's identity and stat
// data (device, inode, birth time, size, mtime, change time) — the baseline. For a git
// checkout it also takes each clean tracked file's blob id from the index,
// so a later stat difference can be checked against the content cheaply.
// Inside a directory named .git only the state git reads as configuration
// is part of the baseline (config, HEAD, packed-refs, info/attributes,
// hooks/, refs/replace/): the rest is git's own, rewritten in normal use.
//
// # The baseline is what the checkout wrote
//
// No timer decides coverage. Without Config.Checkout the baseline is the
// workspace at Start. With it, every write of the root's .git/index by a
// process of the checkout (git renames index.lock over it) rebuilds the
// baseline from that index, once that process has exited. "That index"
// is the file the checkout wrote, kept open from the fanotify event of its
// close (git's index.lock), not whatever .git/index is when the rebuild
// runs: a build's git commit in between renames its own index over it,
// and would make its tamper the baseline. The baseline holds the tracked
// paths (with the blob ids and the stat data of what the checkout wrote)
// and the untracked files the previous baseline held. A tracked file that
// already differs from its blob, or is gone, changed after the checkout
// wrote it and is reported at once, without a process (no mark was on it
// yet). The new baseline is armed before the previous one is retired. The
// checkout's own writes are never reported, nor a build's new files; the
// opens of the files directly in the root's .git are gated (see below) so
// that git, gone right after writing the index, is still named.
//
// # Steering files
//
// A new file that changes how a build's tools behave (.npmrc, .yarnrc*,
// pip.conf, sitecustomize.py, *.pth, conftest.py, go.work,
// Directory.Build.props, .git/hooks/*, .github/workflows/*) in a directory
// the monitor marks, and any change to the git state above, is reported
// as an event.Steer with its writer, not as tampering (steer.go). A new
// .github, workflows, .git/hooks, .git/info or refs/replace directory is
// marked when it appears; what was already in it then is reported without
// a writer.
//
// Three kernel interfaces then watch, and Start returns once all are armed:
//
//   - fsnotify (inotify) watches every baseline directory. It sees creates,
//     writes, deletes and renames by name but never who made them. It is
//     the only source when fanotify is not available (no CAP_SYS_ADMIN, or
//     Config.NoFanotify): then it also watches directories as they appear,
//     to follow baseline files moved into them, and every report says
//     plainly that the process is unknown and why. With fanotify, new
//     directories are not watched: the marks below follow baseline files
//     wherever they go, and watching a build's output would only cost time
//     (measured: a 100,000-file build ran at twice its wall time).
//   - A fanotify group with a mark on each baseline file's inode receives
//     FAN_MODIFY and FAN_CLOSE_WRITE with the writer's pid and a descriptor,
//     whatever path the file was reached by (a hard link, a new name after a
//     rename, /proc/self/fd). Files created later carry no mark, so a build
//     writing new files costs nothing here.
//   - A second fanotify group, reporting file handles and names
//     (FAN_REPORT_DFID_NAME), marks each baseline directory for FAN_CREATE,
//     FAN_DELETE, FAN_MOVED_FROM and FAN_MOVED_TO, giving the pid of whoever
//     deletes, renames or replaces a baseline name.
//
// # Naming short-lived writers: the open gate
//
// fanotify reports a pid, not a process; the process must be read from
// /proc. Asynchronous events reach the reader after the fact, and on a
// 2-vCPU VM the writer has already exited in about 40% of cases for sed,
// truncate or a shell redirection (measured: /proc/PID/exe gone). So the
// first group also asks for FAN_OPEN_PERM on baseline files: an open of a
// pre-existing workspace file waits until filemon has read the opener's
// identity (a few microseconds when it is already known, a full /proc read
// of the process and its parents the first time), then is always allowed.
// Every program that writes a baseline file through a descriptor must open
// it first, so sed -i, cp, a shell's > and >>, truncate, an editor or a
// script are named even after they exit. The cost is one round trip to the
// agent per open of a pre-existing file, mostly two CPU wake-ups: measured
// on a 2-vCPU VM, about 45 µs per open in a burst and up to 0.4 ms for an
// isolated one (see bench/filemon). Opens of new files are not held. The
// reader never waits on anything but /proc while an open is held; if the
// agent dies, the kernel lets held opens through. Config.NoOpenGate turns
// the gate off, leaving naming to Config.Process when the event arrives.
// The agent does so whenever its lookup asks the kernel's process table
// (package lineage), which keeps exited processes: measured, rm, mv,
// sed -i and truncate were then named 100 of 100 times each without the
// gate (TestWritersNamedWithoutGate), against 57-81% from /proc alone.
//
// Deletes and renames (rm, mv, unlink by path) open nothing, so they cannot
// be gated; their process is read when the event arrives, which can be too
// late for a short-lived program. Then the record keeps the pid and Unknown
// says the process exited before it could be identified, and it is counted
// as unattributed.
//
// # What is reported
//
// Changes are collected per baseline path and settled a moment after the
// last event for that path (at once when the writer closes the file, and at
// Close for everything); a name that vanished or changed with no event yet
// saying how waits up to a second for that event. The kind is decided from
// what the events said and the path's state at that moment:
//
//	path gone, renamed away (mv a b: a)          rename
//	path gone otherwise (rm)                     delete
//	path now another file: renamed over, or      overwrite (sed -i, perl -i,
//	  deleted and created again                    mv a b: b, git checkout)
//	the file was written (write(2), mmap)        overwrite (>>, echo x > f,
//	                                               an in-place write, cp)
//	its size changed and nothing was written     truncate (truncate -s0, : > f)
//
// The last two are told apart by fanotify, whose descriptor-mode group gets
// FAN_MODIFY for a write but not for a truncation; the truncation is seen
// when its process closes the file. Without fanotify inotify cannot tell
// them apart, and a file left shorter than at the baseline is reported as
// truncated, otherwise as overwritten. A truncation by path (truncate(2),
// which opens nothing) reaches no descriptor-mode group: a third group, in
// identifier mode (FAN_REPORT_FID), has a FAN_MODIFY mark on every
// baseline file and hears of it with the caller's pid, by whatever name
// the file was reached (a symlink, a hard link outside the root, `../`,
// /proc/PID/cwd, a container's bind mount); a change no other event named
// is judged by size, as inotify's changes are. A write that raises no
// event at all (through a shared mapping, or Linux AIO) is seen when its
// process closes the file, by size, mtime or change time (which no one
// can set back: an mtime restored with utimensat does not hide it), or by
// the final rescan by size and mtime: there the change time alone is no
// sign of a write (a rename, chmod, chown or new link moves it too, and a
// file git filters, such as LFS, cannot be checked against its blob).
//
// A baseline file written to under another name (after a rename, or through
// a hard link) is reported under its baseline path. A rename away and back,
// with no write in between, is not a change and is not reported; but a
// name that held another file in between (swapped out and back, as
// SolarWinds' SUNSPOT did around the compiler's read) is reported as an
// overwrite, though the baseline file is back; a directory swapped and
// swapped back, as an overwrite of every baseline file under it. Each
// (path, kind) is reported once per program, with the first process of it
// seen: a file written a thousand times by a build is one event, and a
// benign tool's rewrite does not hide a later one by another program (a
// change first reported without a program is not reported again with
// one). A file may be reported
// under two kinds when two things happened to it (truncated by one process
// and appended to by another; renamed away and then written). A path
// already decided is decided again only if its state has changed since,
// or an event names a process: inotify's late copy of a change fanotify
// reported, and the final rescan finding the same difference from the
// baseline, add nothing.
//
// # Nothing missed silently
//
// A kernel queue overflow (inotify or fanotify) or a watch that cannot be
// added triggers a rescan against the baseline at once, and Close always
// rescans after draining both queues. A change found only by a rescan is
// reported with Unknown saying so. The Stats record at Close counts events
// reported, Lost (queue overflows plus watches or marks that could not be
// added) and Unattributed (records whose process is not identified); they
// are always written, so a zero is a measured zero. A rescan ignores a file
// whose stat changed but whose content still hashes to its baseline blob
// (touch): only content changes count. Changes made before Start returns are
// part of the baseline.
//
// To know that inotify has delivered everything before the final rescan,
// Close creates and removes a directory named .harden-runner-filemon-sync-*
// in the root; it is never reported.
package filemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// Config says what to watch and where to report. Root and Emit are required.
type Config struct {
	// Root is the workspace directory. Reported paths are relative to it.
	Root string
	// Emit receives File, Note and Stats records. It must be safe for
	// concurrent use and must not block for long.
	Emit event.Emit
	// Process identifies a process by pid. It is called on the event path,
	// while the process may still be alive, and by the open gate for each
	// process it has not seen yet, whose open waits for it: it must be fast
	// and safe for concurrent use. Nil means a built-in reader of /proc.
	Process func(pid int) event.Process
	// Log receives diagnostics. Nil discards them; what the user must see
	// is emitted as event.Note.
	Log *slog.Logger
	// NoOpenGate disables the FAN_OPEN_PERM gate (see the package doc):
	// opens of baseline files are never held. Set it when Process names
	// exited processes (the kernel's process table); otherwise short-lived
	// writers may be reported by pid only.
	NoOpenGate bool
	// NoFanotify uses fsnotify alone, as when the agent lacks the rights
	// for fanotify: no process is ever identified.
	NoFanotify bool
	// Checkout says whether a process belongs to the checkout (in the
	// Action: the actions/checkout step). Its writes build the baseline:
	// they are never reported, and each time it writes the root's git
	// index the baseline is rebuilt from that index (see the package
	// doc). Nil: nothing after Start builds the baseline. It is called on
	// the event path: it must be fast and safe for concurrent use.
	Checkout func(event.Process) bool
	// CheckoutPost says whether a process belongs to the checkout's post
	// step, whose change to the root's .git/config (it removes the
	// credentials the checkout stored) is its own and not reported;
	// anything else it changes is. Nil: none is. Fast, concurrent-safe.
	CheckoutPost func(event.Process) bool
	// AllFiles takes every file in a git workspace into the baseline at
	// Start. By default a workspace whose root holds a git index gets the
	// tracked files (and .git's configuration) only: untracked files there
	// (node_modules, build output) are not source, and watching them is
	// what made a build slow.
	AllFiles bool
	// Steer, if set, says why a file created at rel (relative to Root,
	// slash separated) steers something, beyond the built-in steering
	// names; "" when it does not. Such files are reported as event.Steer
	// (with fanotify only). Called on the event path: fast, concurrent-safe.
	Steer func(rel string) string

	// Tests stall a reader until they close these, to force an overflow.
	inotifyHoldForTest, fanotifyHoldForTest <-chan struct{}
	// Tests hold the baseline rebuild until they close this, to make the
	// rebuild late, as on a loaded machine.
	rebuildHoldForTest <-chan struct{}
	// Tests drop the kept index, as when it could not be kept open.
	dropIndexForTest bool
}

// Monitor watches one workspace. Start it once and Close it once (Close is
// safe to repeat). Its methods are safe for concurrent use.
type Monitor struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	started  bool
	closed   bool
	run      *run // nil until Start succeeds; replaced by each rebuild
	reported *reportedSet
	procs    *procCache
	retired  event.Stats // counters of the runs that rebuilds replaced
	rebuilt  int         // baselines rebuilt from the checkout's index

	rebuild chan struct{} // the checkout wrote the index
	writer  atomic.Int64  // the pid that wrote it last
	// index is a descriptor of the index the checkout wrote last, taken
	// from the fanotify event as it was written (-1: none): the rebuild
	// reads that, not whatever is at .git/index when it runs.
	indexMu  sync.Mutex
	index    int
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{} // closed when the rebuild loop ends
}

// ErrStarted is returned by a second call to Start.
var ErrStarted = errors.New("filemon: already started")

// New validates cfg and returns a Monitor. It does no I/O.
func New(cfg Config) (*Monitor, error) {
	if cfg.Root == "" {
		return nil, errors.New("filemon: no root directory")
	}
	if cfg.Emit == nil {
		return nil, errors.New("filemon: no Emit func")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Monitor{cfg: cfg, log: log, reported: newReportedSet(), procs: newProcCache(cfg.Process, os.Getpid()),
		rebuild: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), index: -1}, nil
}

// Start records the baseline and arms the watches. It returns once
// monitoring is ready: a change made after Start returns is seen. ctx bounds
// Start only; monitoring lasts until Close. On error nothing stays armed.
func (m *Monitor) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return ErrStarted
	}
	if m.closed {
		return errors.New("filemon: closed")
	}
	m.started = true
	// A workspace that is a git checkout already: its baseline is what the
	// index tracks, not a build's untracked output (node_modules).
	var in *rebaseInput
	if !m.cfg.AllFiles {
		if root, err := filepath.Abs(m.cfg.Root); err == nil {
			if root, err = filepath.EvalSymlinks(root); err == nil {
				if fi, err := os.Stat(filepath.Join(root, ".git", "index")); err == nil && fi.Mode().IsRegular() {
					if in, err = readIndex(root, nil, nil); err != nil {
						m.log.Warn("filemon: git index; the baseline is every file", "err", err)
						in = nil
					} else {
						in.initial = true
					}
				}
			}
		}
	}
	r, err := start(ctx, m.cfg, m.log, m.opts(in))
	if err != nil {
		close(m.done)
		return fmt.Errorf("filemon: start: %w", err)
	}
	m.run = r
	go m.rebuildLoop()
	return nil
}

func (m *Monitor) opts(in *rebaseInput) startOpts {
	o := startOpts{reported: m.reported, rebase: in, procs: m.procs}
	if m.cfg.Checkout != nil {
		o.onIndex = m.indexWritten
		o.onIndexFile = m.indexFile
	}
	return o
}

// indexFile is called (on the fanotify reader) with an index written in
// the root's .git, open as fd, and its writer. The checkout's is kept for
// the rebuild, replacing an earlier one. It must not block for long.
func (m *Monitor) indexFile(p event.Process, fd int) bool {
	if !m.cfg.Checkout(p) {
		return false
	}
	m.indexMu.Lock()
	old := m.index
	m.index = fd
	m.indexMu.Unlock()
	if old >= 0 {
		closeFD(old)
	}
	m.indexWritten(p)
	return true
}

// closeFD closes a descriptor the monitor kept.
func closeFD(fd int) { os.NewFile(uintptr(fd), "").Close() }

// takeIndex hands over the kept index descriptor (-1: none).
func (m *Monitor) takeIndex() int {
	m.indexMu.Lock()
	defer m.indexMu.Unlock()
	fd := m.index
	m.index = -1
	if m.cfg.dropIndexForTest && fd >= 0 {
		closeFD(fd)
		return -1
	}
	return fd
}

// indexWritten is called (on the fanotify reader) with the process that
// wrote the root's .git/index. It must not block.
func (m *Monitor) indexWritten(p event.Process) {
	if !m.cfg.Checkout(p) {
		return // a build's git add: not the baseline
	}
	m.writer.Store(int64(p.PID))
	select {
	case m.rebuild <- struct{}{}:
	default: // one is due already, and will read the newest index
	}
}

func (m *Monitor) rebuildLoop() {
	defer close(m.done)
	for {
		select {
		case <-m.stop:
			return
		case <-m.rebuild:
			// git writes more after the index (the branch's config), in
			// the same process: the baseline is what it leaves. A tamper
			// meanwhile is still found, against the index's blob ids.
			waitExit(int(m.writer.Load()), m.stop)
			if m.cfg.rebuildHoldForTest != nil {
				<-m.cfg.rebuildHoldForTest
			}
			m.mu.Lock()
			if !m.closed {
				m.rebase()
			}
			m.mu.Unlock()
		}
	}
}

// Close stops watching: it drains the kernel queues, rescans the workspace
// against the baseline, emits what remains and then one event.Stats record
// for component "filemon". It is safe to call twice; the second call does
// nothing. Closing a Monitor that never started emits nothing.
func (m *Monitor) Close() error {
	m.stopOnce.Do(func() { close(m.stop) })
	m.mu.Lock()
	started := m.started
	m.mu.Unlock()
	if started {
		<-m.done // a rebuild in progress finishes first
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	if m.run == nil {
		m.closed = true
		return nil
	}
	select {
	case <-m.rebuild: // the checkout wrote the index just before Close
		m.rebase()
	default:
	}
	m.closed = true
	st, err := m.run.close(true, nil)
	if fd := m.takeIndex(); fd >= 0 {
		closeFD(fd)
	}
	st.Events += m.retired.Events
	st.Lost += m.retired.Lost
	st.Unattributed += m.retired.Unattributed
	if m.rebuilt == 0 && m.run.base.files == 0 {
		m.cfg.Emit(event.Record{Coverage: &event.Coverage{Time: time.Now(), Component: event.ComponentFilemon,
			NotCovered: "every file: the workspace was empty when monitoring began and no checkout wrote it",
			Reason:     "files that appear after monitoring begins are a build's own, unless the checkout wrote them"}})
	}
	m.cfg.Emit(event.Record{Stats: &st})
	return err
}

// Stats returns the counts so far, over every run rebuilds replaced (what
// Close emits, before its final rescan), for a snapshot while the monitor
// goes on. Safe for concurrent use.
func (m *Monitor) Stats() event.Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := event.Stats{Component: event.ComponentFilemon}
	if m.run != nil {
		st = m.run.counts()
	}
	st.Events += m.retired.Events
	st.Lost += m.retired.Lost
	st.Unattributed += m.retired.Unattributed
	return st
}
