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

func start(ctx context.Context, cfg Config, log *slog.Logger) (_ *run, err error) {
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
	procs := newProcCache(cfg.Process, os.Getpid())

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
	res, err := walk(ctx, root, walkHooks{fan: r.fan, watch: fsw.Add})
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	r.base = res.base
	if res.failed > 0 {
		r.lost.Add(uint64(res.failed))
		r.note("warning", fmt.Sprintf("%d directories, watches or marks could not be set up (first: %v); changes there are found only by rescans", res.failed, res.firstError))
	}
	blobs, berr := r.base.loadBlobs(root)
	if berr != nil {
		log.Warn("filemon: git index", "err", berr)
	}
	log.Info("filemon: baseline", "root", root, "files", r.base.files, "dirs", len(r.base.entries)-r.base.files,
		"clean_git_files", blobs, "fanotify", r.fan != nil, "gate", r.fan != nil && r.fan.gate, "took", time.Since(t0))

	r.tr = newTracker(r.base, cfg.Emit)
	r.tr.naming = r.fan != nil
	r.tr.statPath = func(idx int32) (fileStat, bool) {
		st, err := statxAt(unix.AT_FDCWD, r.base.abs(r.base.entries[idx].path))
		return st, err == nil
	}
	r.tr.sameContent = r.base.sameBlob

	r.w = &watcher{r: r, fs: fsw, unknown: unknown, syncs: make(chan string, 4), overflowed: make(chan struct{}, 1), done: make(chan struct{}), hold: cfg.inotifyHoldForTest}
	if r.fan == nil {
		r.w.follow, r.w.aliases = true, make(map[string]int32)
	} else {
		r.fan.sink.Store(&fanSink{base: r.base, tr: r.tr})
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
func (r *run) note(level, msg string) {
	r.log.Log(context.Background(), map[string]slog.Level{"info": slog.LevelInfo, "warning": slog.LevelWarn, "error": slog.LevelError}[level], "filemon: "+msg)
	r.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: "filemon", Level: level, Message: msg}})
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

func (r *run) close() error {
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

	found := r.rescan()
	r.tr.settleDue(true)
	r.log.Info("filemon: stopped", "rescan_differences", found, "events", r.tr.events.Load(),
		"lost", r.lost.Load(), "unattributed", r.tr.unattributed.Load())
	r.cfg.Emit(event.Record{Stats: &event.Stats{
		Component:    "filemon",
		Events:       r.tr.events.Load(),
		Lost:         r.lost.Load(),
		Unattributed: r.tr.unattributed.Load(),
	}})
	return errors.Join(errs...)
}
