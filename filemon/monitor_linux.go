package filemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/harden-runner/harden-runner/event"
	"golang.org/x/sys/unix"
)

const (
	settleTick = 100 * time.Millisecond
	syncWait   = 3 * time.Second
)

// run is a started monitor.
type run struct {
	cfg  Config
	log  *slog.Logger
	base *baseline
	tr   *tracker
	fan  *fan // nil without fanotify
	w    *watcher

	lost      atomic.Uint64
	warned    sync.Map // source -> struct{}: one note per kind of loss
	rescanReq chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup // settle and rescan loops
}

// startOpts is what a Monitor shares with each of its runs.
type startOpts struct {
	reported *reportedSet
	onIndex  func(event.Process) // the root's .git/index was written; nil: not watched
	// onIndexFile receives each index written in the root's .git, open,
	// and its writer; it says whether it kept the descriptor.
	onIndexFile func(p event.Process, fd int) bool
	rebase      *rebaseInput // nil: the baseline is the workspace as found
	// procs is shared, so that a process the gate named for one run is
	// known to the next (git exits right after writing the index).
	procs *procCache
}

func start(ctx context.Context, cfg Config, log *slog.Logger, opts startOpts) (_ *run, err error) {
	root, err := filepath.Abs(cfg.Root)
	if err == nil {
		// Events name real paths: a root reached through a symlink would
		// match none of them.
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, log: log, rescanReq: make(chan struct{}, 1), stop: make(chan struct{})}
	procs := opts.procs
	if procs == nil {
		procs = newProcCache(cfg.Process, os.Getpid())
	}

	unknown := event.Process{Unknown: "no process information: fanotify not used (Config.NoFanotify)"}
	if !cfg.NoFanotify {
		f, notes, ferr := openFan(!cfg.NoOpenGate, procs, log)
		for _, n := range notes {
			r.note("warning", n)
		}
		if ferr != nil {
			unknown.Unknown = "no process information: fanotify unavailable (" + ferr.Error() + ")"
			r.note("warning", "process attribution unavailable, changes are still detected: "+ferr.Error())
		} else {
			r.fan = f
			r.fan.overflow = r.overflow
			r.fan.hold = cfg.fanotifyHoldForTest
			r.fan.steerAlso = cfg.Steer
			r.fan.gitRoot = filepath.Join(root, ".git")
			r.fan.onIndex = opts.onIndex
			r.fan.onIndexFile = opts.onIndexFile
			unknown.Unknown = "seen by inotify only: fanotify reported no process for this change"
			f.start()
		}
	}
	fsw, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		r.closeFan()
		return nil, fmt.Errorf("inotify: %w", err)
	}
	defer func() {
		if err != nil {
			fsw.Close()
			r.closeFan()
		}
	}()

	t0 := time.Now()
	hooks := walkHooks{fan: r.fan, watch: fsw.Add}
	if opts.rebase != nil {
		hooks.keep = opts.rebase.keep
	}
	res, err := walk(ctx, root, hooks)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	r.base = res.base
	if opts.rebase != nil {
		opts.rebase.carry(r.base)
	}
	if res.failed > 0 {
		r.lost.Add(uint64(res.failed))
		r.note("warning", fmt.Sprintf("%d directories, watches or marks could not be set up (first: %v); changes there are found only by rescans", res.failed, res.firstError))
	}
	var blobs int
	var berr error
	if opts.rebase != nil {
		// The very index the baseline was built from: the one in .git now
		// may be a later git's.
		blobs, berr = r.base.blobsFrom(opts.rebase.data, opts.rebase.hashLen, "", opts.rebase.indexTime)
	} else {
		blobs, berr = r.base.loadBlobs(root)
	}
	if berr != nil {
		log.Warn("filemon: git index", "err", berr)
	}
	log.Info("filemon: baseline", "root", root, "files", r.base.files, "dirs", len(r.base.entries)-r.base.files,
		"clean_git_files", blobs, "fanotify", r.fan != nil, "gate", r.fan != nil && r.fan.gate, "took", time.Since(t0))

	var late []afterCheckout
	if opts.rebase != nil {
		late = opts.rebase.verify(r.base)
	}
	r.tr = newTracker(r.base, cfg.Emit, opts.reported)
	r.tr.naming = r.fan != nil
	r.tr.checkout = cfg.Checkout
	r.tr.checkoutPost = cfg.CheckoutPost
	for _, a := range late {
		f := event.File{Time: time.Now(), Path: a.path, Event: event.Overwrite, Process: event.Process{
			Unknown: "changed after the checkout wrote it and before monitoring covered it (" + time.Since(t0).Round(time.Millisecond).String() + "): no event names the writer"}}
		switch {
		case a.deleted:
			f.Event = event.Delete
		case a.shorter:
			f.Event = event.Truncate
		}
		r.tr.report(f)
	}
	r.tr.statPath = func(idx int32) (fileStat, bool) {
		st, err := statxAt(unix.AT_FDCWD, r.base.abs(r.base.entries[idx].path))
		return st, err == nil
	}
	r.tr.sameContent = r.base.sameBlob

	r.w = &watcher{r: r, fs: fsw, unknown: unknown, syncs: make(chan string, 4), overflowed: make(chan struct{}, 1), done: make(chan struct{}), hold: cfg.inotifyHoldForTest}
	if r.fan == nil {
		r.w.follow, r.w.aliases = true, make(map[string]int32)
	} else {
		r.fan.sink.Store(&fanSink{base: r.base, tr: r.tr, handles: make(map[string][]int32)})
		if r.fan.modifyRefused.Load() {
			r.note("warning", "fanotify refused file-identifier marks on part of the workspace (a file system without file handles): a truncate(2) by path there is reported without its process")
		}
	}
	go r.w.run()
	r.wg.Add(2)
	go r.settleLoop()
	go r.rescanLoop()
	if res.failed > 0 {
		r.requestRescan()
	}
	return r, nil
}

func (r *run) closeFan() {
	if r.fan != nil {
		r.fan.stop()
	}
}

// note emits a Note record for the user.
func (r *run) note(level event.Level, msg string) {
	r.log.Log(context.Background(), map[event.Level]slog.Level{event.LevelInfo: slog.LevelInfo, event.LevelWarning: slog.LevelWarn, event.LevelError: slog.LevelError}[level], "filemon: "+msg)
	r.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentFilemon, Level: level, Message: msg}})
}

// overflow counts a kernel queue overflow and rescans.
func (r *run) overflow(source string) {
	r.lost.Add(1)
	if _, dup := r.warned.LoadOrStore(source, struct{}{}); !dup {
		r.note("warning", source+" event queue overflowed: events were lost; rescanning the workspace against the baseline (changes found so are reported without a process)")
	}
	r.requestRescan()
}

// watchFailed counts a directory that could not be watched and rescans.
func (r *run) watchFailed(dir string, err error) {
	r.lost.Add(1)
	if _, dup := r.warned.LoadOrStore("watch", struct{}{}); !dup {
		r.note("warning", fmt.Sprintf("cannot watch new directory %q: %v; rescanning against the baseline", dir, err))
	}
	r.requestRescan()
}

func (r *run) requestRescan() {
	select {
	case r.rescanReq <- struct{}{}:
	default: // one is already due
	}
}

func (r *run) settleLoop() {
	defer r.wg.Done()
	t := time.NewTicker(settleTick)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.tr.settleDue(false)
		}
	}
}

func (r *run) rescanLoop() {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-r.rescanReq:
			r.rescan()
		}
	}
}

// rescan compares every baseline file with its path now and hands each
// difference to the tracker, which decides (and names the process if an
// event for it arrives in time).
func (r *run) rescan() int {
	n := 0
	for i := range r.base.entries {
		e := &r.base.entries[i]
		if e.isDir() {
			continue
		}
		st, err := statxAt(unix.AT_FDCWD, r.base.abs(e.path))
		if err != nil || !e.sameFile(st) || st.size != e.size || st.mtime != e.mtime {
			r.tr.touch(int32(i))
			n++
		}
	}
	return n
}

// syncInotify waits until the watcher has consumed every inotify event
// queued before the call, by creating a directory in the root and waiting
// for its event. An overflow may drop that event: then it tries again.
func (r *run) syncInotify() error {
	deadline := time.NewTimer(syncWait)
	defer deadline.Stop()
	for try := 0; ; try++ {
		name := syncPrefix + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(try)
		p := r.base.abs(name)
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
		done, err := r.waitSync(name, deadline.C)
		os.Remove(p)
		if done || err != nil {
			return err
		}
	}
}

// waitSync waits for the event of sync directory name. It returns false
// (and no error) when an overflow may have dropped it.
func (r *run) waitSync(name string, deadline <-chan time.Time) (bool, error) {
	for {
		select {
		case got := <-r.w.syncs:
			if got == name {
				return true, nil
			}
		case <-r.w.overflowed:
			return false, nil
		case <-r.w.done:
			return false, errors.New("watcher stopped")
		case <-deadline:
			return false, fmt.Errorf("no inotify event after %v", syncWait)
		}
	}
}

// close stops the run: it drains the kernel queues and reports what is
// pending. rescan compares the workspace with the baseline first (at the
// Monitor's Close); a run retired for a newer baseline skips it, and drop
// names the paths the checkout has just rewritten, which are not
// reported. It returns the run's counters.
func (r *run) close(rescan bool, drop func(path string) bool) (event.Stats, error) {
	var errs []error
	// Let the queues deliver what happened before Close, then stop them.
	if err := r.syncInotify(); err != nil {
		r.log.Warn("filemon: inotify not drained; the rescan covers it", "err", err)
	}
	r.closeFan()
	if err := r.w.fs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("filemon: close inotify: %w", err))
	}
	<-r.w.done
	close(r.stop)
	r.wg.Wait()

	found := 0
	if rescan {
		found = r.rescan()
	}
	if drop != nil {
		r.tr.mu.Lock()
		r.tr.drop = drop
		r.tr.mu.Unlock()
	}
	r.tr.settleDue(true)
	r.log.Info("filemon: stopped", "rescan_differences", found, "events", r.tr.events.Load(),
		"lost", r.lost.Load(), "unattributed", r.tr.unattributed.Load())
	return event.Stats{
		Component:    event.ComponentFilemon,
		Events:       r.tr.events.Load(),
		Lost:         r.lost.Load(),
		Unattributed: r.tr.unattributed.Load(),
	}, errors.Join(errs...)
}

// rebase rebuilds the baseline from the index the checkout just wrote
// and retires the current run. The new run is armed before the old one
// stops, so nothing goes unwatched in between. Called with m.mu held.
func (m *Monitor) rebase() {
	old := m.run
	// The checkout's index is handed over from the fanotify queue: let the
	// reader catch up with what the checkout did before it exited.
	if old.fan != nil {
		if err := old.fan.barrier(syncWait); err != nil {
			m.log.Warn("filemon: wait for the fanotify reader before the rebuild", "err", err)
		}
	}
	var kept *os.File
	if fd := m.takeIndex(); fd >= 0 {
		kept = os.NewFile(uintptr(fd), "the checkout's git index")
		defer kept.Close()
	}
	in, err := readIndex(old.base.root, old.base, kept)
	if err == nil {
		var r *run
		r, err = start(context.Background(), m.cfg, m.log, m.opts(in))
		if err == nil {
			nb := r.base
			clean := func(path string) bool {
				idx, ok := nb.byPath[path]
				return ok && nb.entries[idx].blob >= 0
			}
			st, cerr := old.close(false, clean)
			if cerr != nil {
				m.log.Warn("filemon: retire the previous baseline", "err", cerr)
			}
			m.retired.Events += st.Events
			m.retired.Lost += st.Lost
			m.retired.Unattributed += st.Unattributed
			m.run = r
			m.rebuilt++
			r.note("info", fmt.Sprintf("baseline rebuilt from the checkout's git index: %d tracked files, %d files in all", len(in.tracked), nb.files))
			if kept == nil {
				// Read by name: a git run after the checkout (a build's
				// commit) may have replaced the index by then, and what it
				// changed became baseline.
				m.cfg.Emit(event.Record{Coverage: &event.Coverage{Time: time.Now(), Component: event.ComponentFilemon,
					NotCovered: "changes made between the checkout and the rebuild of the baseline",
					Reason:     "the checkout's own git index could not be kept open, so the rebuild read .git/index by name"}})
			}
			return
		}
	}
	// Keep watching the previous baseline; what the checkout wrote since
	// is not covered, and the summary says so.
	m.log.Warn("filemon: rebuild the baseline", "err", err)
	m.cfg.Emit(event.Record{Coverage: &event.Coverage{Time: time.Now(), Component: event.ComponentFilemon,
		NotCovered: "the files the checkout wrote",
		Reason:     "the baseline could not be rebuilt from the checkout's git index: " + err.Error()}})
}

// waitExit waits until process pid has exited, or stop is closed. A pid
// that cannot be opened has exited already (or was never known).
func waitExit(pid int, stop <-chan struct{}) {
	if pid <= 0 {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	for {
		select {
		case <-stop:
			return
		default:
		}
		// Wake now and then to see stop; the pidfd turns readable at exit.
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100)
		if n > 0 || (err != nil && !errors.Is(err, unix.EINTR)) {
			return
		}
	}
}

// counts are the run's counters so far.
func (r *run) counts() event.Stats {
	return event.Stats{Component: event.ComponentFilemon, Events: r.tr.events.Load(), Lost: r.lost.Load(),
		Unattributed: r.tr.unattributed.Load()}
}
