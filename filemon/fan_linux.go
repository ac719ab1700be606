package filemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/fanotify"
	"golang.org/x/sys/unix"
)

// fan owns the three fanotify groups and the thread that reads them.
//
// The content group (descriptor mode) has an inode mark on every baseline
// file for FAN_MODIFY, FAN_CLOSE_WRITE and, with the gate, FAN_OPEN_PERM.
// The directory group (FAN_REPORT_DFID_NAME) has an inode mark on every
// baseline directory for entry changes. The modify group (FAN_REPORT_FID)
// has an inode mark on every baseline file for FAN_MODIFY alone: it is the
// one that hears of a truncate(2), which the content group cannot (no path
// to open a descriptor with), with its pid. Marks live on inodes, so they
// follow a file or directory wherever it is renamed to, and see it changed
// through any name (a symlink, a hard link elsewhere, /proc/PID/cwd, a
// container's mount of it).
type fan struct {
	content int // content group fd
	dirs    int // directory group fd, -1 when the kernel refused one
	modify  int // modify group fd, -1 when the kernel refused one
	// mounts holds, per file system id (uint64), the absolute path (string)
	// of the first directory the walk marked on it: the modify group
	// reports file handles, which the reader opens relative to it. A path,
	// not a descriptor: an open descriptor would keep the job from
	// unmounting a file system mounted inside the workspace.
	mounts sync.Map
	// modifyRefused is set once a modify-group mark failed (logged once,
	// and a note after the walk); handleFailed once a handle could not be
	// opened for a reason other than the file being gone (logged once).
	modifyRefused, handleFailed atomic.Bool
	wake                        int // eventfd: Close asks the reader to drain and stop
	syncfd                      int // eventfd: barrier asks the reader to drain and go on
	// barriers are the waiters of barrier, closed once the reader has
	// read what was queued when they asked.
	barriers chan chan struct{}
	gate     bool
	self     int32
	log      *slog.Logger
	procs    *procCache

	sink     atomic.Pointer[fanSink] // nil until the baseline is built
	overflow func(source string)     // called on a queue overflow
	// gitKey is the fanotify key of the root's .git directory once it is
	// marked; onIndex receives the process that wrote .git/index there
	// (git renames index.lock over it), nil to ignore it.
	gitKey  atomic.Pointer[string]
	gitRoot string // the root's .git directory, absolute
	onIndex func(event.Process)
	// onIndexFile receives each git index written directly in gitRoot
	// (index.lock, closed after writing, before git renames it over
	// index) as a descriptor of its own, and the writer; it returns
	// whether it kept the descriptor. The descriptor holds what that
	// writer wrote even after a later git renames another index over it.
	onIndexFile func(p event.Process, fd int) bool
	// extra maps the fanotify key of each directory marked after the walk
	// (a new .git, .github, workflows, hooks) to its path relative to the
	// root: only steering files are looked for there.
	extra sync.Map
	// steerAlso is Config.Steer (nil: the built-in names only).
	steerAlso func(rel string) string
	done      chan struct{}   // closed when the reader has stopped and closed the fds
	hold      <-chan struct{} // tests only: receives until the test closes it
}

// fanSink is where events go once the baseline exists.
type fanSink struct {
	base *baseline
	tr   *tracker
	// handles caches which baseline files a modify-group file handle
	// (its fanotify key) is: a file written a thousand times is opened by
	// handle once. The reader's alone.
	handles map[string][]int32
}

const (
	contentMask = unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE
	dirMask     = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO | unix.FAN_ONDIR
	drainLimit  = 2 * time.Second
)

// openFan creates the groups. gate asks for FAN_OPEN_PERM; if the kernel
// has no permission events the gate is dropped and notes says so. An error
// means fanotify cannot be used at all (typically no CAP_SYS_ADMIN).
func openFan(gate bool, procs *procCache, log *slog.Logger) (f *fan, notes []string, err error) {
	const initFlags = unix.FAN_CLOEXEC | unix.FAN_NONBLOCK | unix.FAN_UNLIMITED_MARKS
	const fileFlags = unix.O_RDONLY | unix.O_LARGEFILE | unix.O_CLOEXEC
	content := -1
	if gate {
		content, err = unix.FanotifyInit(unix.FAN_CLASS_CONTENT|initFlags, fileFlags)
		if err != nil && !errors.Is(err, unix.EPERM) {
			notes = append(notes, fmt.Sprintf("open gate unavailable (fanotify permission events: %v): short-lived writers may be reported by pid only", err))
			gate = false
		}
	}
	if !gate {
		content, err = unix.FanotifyInit(unix.FAN_CLASS_NOTIF|initFlags, fileFlags)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("fanotify_init: %w", err)
	}
	dirs, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|initFlags|unix.FAN_REPORT_DFID_NAME, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		notes = append(notes, fmt.Sprintf("fanotify directory events unavailable (%v): deletes and renames are seen by inotify only, without the process", err))
		dirs = -1
	}
	modify, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|initFlags|unix.FAN_REPORT_FID, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		notes = append(notes, fmt.Sprintf("fanotify file identifiers unavailable (%v): a truncate(2) by path is reported without its process", err))
		modify = -1
	}
	var wake, syncfd int
	wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err == nil {
		syncfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			unix.Close(wake)
		}
	}
	if err != nil {
		unix.Close(content)
		for _, g := range []int{dirs, modify} {
			if g >= 0 {
				unix.Close(g)
			}
		}
		return nil, nil, fmt.Errorf("eventfd: %w", err)
	}
	f = &fan{content: content, dirs: dirs, modify: modify, wake: wake, syncfd: syncfd, barriers: make(chan chan struct{}, 8),
		gate: gate, self: int32(os.Getpid()), log: log, procs: procs, done: make(chan struct{})}
	return f, notes, nil
}

// markFile marks the regular file name in directory dirfd.
func (f *fan) markFile(dirfd int, name string) error {
	mask := uint64(contentMask)
	if f.gate {
		mask |= unix.FAN_OPEN_PERM
	}
	if err := unix.FanotifyMark(f.content, unix.FAN_MARK_ADD|unix.FAN_MARK_DONT_FOLLOW, mask, dirfd, name); err != nil {
		return err
	}
	if f.modify < 0 {
		return nil
	}
	err := unix.FanotifyMark(f.modify, unix.FAN_MARK_ADD|unix.FAN_MARK_DONT_FOLLOW, unix.FAN_MODIFY, dirfd, name)
	if err != nil && !errors.Is(err, unix.ENOENT) && f.modifyRefused.CompareAndSwap(false, true) {
		// A file system without file handles (EOPNOTSUPP, EXDEV, ENODEV): its
		// truncations by path go unnamed; everything else still works.
		f.log.Warn("filemon: fanotify file identifiers refused: a truncate(2) by path there is reported without its process",
			"name", name, "err", err)
	}
	if errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// noteMount remembers the directory at abs if it is the first seen on
// file system fsid: the modify group's file handles are opened relative
// to it.
func (f *fan) noteMount(fsid uint64, abs string) {
	if f.modify >= 0 {
		f.mounts.LoadOrStore(fsid, abs)
	}
}

// markDir marks the directory open as dirfd.
func (f *fan) markDir(dirfd int) error {
	if f.dirs < 0 {
		return nil
	}
	return unix.FanotifyMark(f.dirs, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, dirMask, dirfd, "")
}

// armGit marks the root's .git directory, open as fd: its entry changes,
// so that the writer of .git/index is seen, and with the gate the opens of
// the files directly in it, so that the writer is named even after it
// exits (git writes index.lock, renames it over index, and is gone). The
// closes after writing of the files directly in it hand each index written
// there to onIndexFile.
func (f *fan) armGit(fd int) error {
	var mask uint64
	if f.gate {
		mask |= unix.FAN_OPEN_PERM
	}
	if f.onIndexFile != nil {
		mask |= unix.FAN_CLOSE_WRITE
	}
	if mask != 0 {
		err := unix.FanotifyMark(f.content, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, mask|unix.FAN_EVENT_ON_CHILD, fd, "")
		if err != nil {
			return fmt.Errorf("fanotify mark on .git's files: %w", err)
		}
	}
	if f.dirs < 0 {
		return nil
	}
	if err := f.markDir(fd); err != nil {
		return err
	}
	key, _, err := dirKey(fd)
	if err != nil {
		return err
	}
	f.gitKey.Store(&key)
	return nil
}

// dirAppeared marks a directory created after the walk at rel (relative
// to the root; abs is its absolute path) that may hold steering files, or
// is the root's .git, and reports the steering files already in it: they
// were created before the mark, so no event names their writer.
func (f *fan) dirAppeared(s *fanSink, rel string, creator event.Process) {
	abs := s.base.abs(rel)
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return // gone again
	}
	defer unix.Close(fd)
	if rel == ".git" && f.onIndex != nil {
		if err := f.armGit(fd); err != nil {
			f.log.Warn("filemon: mark new .git", "err", err)
		}
		// A reader that lagged behind the checkout (a loaded machine)
		// marks .git after the index is written, and no event will say
		// so: an index already there is taken as the writing of the
		// process that made .git, which onIndex accepts only if it is
		// the checkout's. The rebuild checks every tracked file against
		// the index's blob ids.
		var st unix.Stat_t
		if unix.Fstatat(fd, "index", &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			f.onIndex(creator)
		}
	} else if f.dirs >= 0 {
		if err := f.markDir(fd); err != nil {
			f.log.Warn("filemon: mark new directory", "dir", rel, "err", err)
			return
		}
	}
	if key, _, err := dirKey(fd); err == nil {
		f.extra.Store(key, rel)
	}
	if s.tr.checkout != nil && creator.PID != 0 && s.tr.checkout(creator) {
		return // the checkout made it (git init): its content is the checkout's
	}
	if _, baseGit := s.base.byPath[".git"]; !baseGit && (rel == ".git" || strings.HasPrefix(rel, ".git/")) {
		// A .git that is new since the baseline holds what git init wrote (HEAD, config, sample
		// hooks), whoever ran it: a git that exited before its event was
		// read cannot be told from the checkout's. Later changes are seen.
		return
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := join(rel, e.Name())
		if e.IsDir() {
			if steerDir(p) {
				f.dirAppeared(s, p, creator)
			}
			continue
		}
		if why := f.steerWhy(p); why != "" {
			who := event.Process{Unknown: fmt.Sprintf("created before its new directory %q was watched; the directory was made by pid %d (%s)", rel, creator.PID, creator.Exe)}
			s.tr.steerCreated(p, why, who, time.Now())
		}
	}
}

// start runs the reader. It must run before the first mark is added: the
// gate's opens wait for it.
// steerWhy is steerNew, then Config.Steer.
func (f *fan) steerWhy(rel string) string {
	if why := steerNew(rel); why != "" || f.steerAlso == nil {
		return why
	}
	return f.steerAlso(rel)
}

func (f *fan) start() { go f.read() }

// stop makes the reader read what is queued, then close the groups (which
// lets any open still waiting on the gate proceed), and waits for it.
func (f *fan) stop() {
	var one = [8]byte{1}
	unix.Write(f.wake, one[:])
	<-f.done
}

func (f *fan) read() {
	// A thread of its own: the reader answers the gate, and must not wait
	// behind the Go scheduler's other work more than it has to.
	runtime.LockOSThread()
	defer func() {
		unix.Close(f.content)
		for _, g := range []int{f.dirs, f.modify} {
			if g >= 0 {
				unix.Close(g)
			}
		}
		unix.Close(f.wake)
		unix.Close(f.syncfd)
		close(f.done)
	}()
	buf := make([]byte, 256<<10)
	fds := []unix.PollFd{{Fd: int32(f.content), Events: unix.POLLIN}, {Fd: int32(f.wake), Events: unix.POLLIN},
		{Fd: int32(f.syncfd), Events: unix.POLLIN}}
	// The groups after the three fixed entries, each with its handler.
	var groups []func(*fanotify.Event)
	for _, g := range []struct {
		fd int
		fn func(*fanotify.Event)
	}{{f.dirs, f.dirEvent}, {f.modify, f.modifyEvent}} {
		if g.fd >= 0 {
			fds = append(fds, unix.PollFd{Fd: int32(g.fd), Events: unix.POLLIN})
			groups = append(groups, g.fn)
		}
	}
	for {
		_, err := unix.Poll(fds, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			f.log.Error("filemon: poll fanotify", "err", err)
			return
		}
		if f.hold != nil {
			<-f.hold
		}
		if fds[1].Revents != 0 {
			f.drain(buf, time.Now().Add(drainLimit))
			return
		}
		if fds[2].Revents != 0 {
			f.answerBarriers(buf)
			continue
		}
		// One read per readable group, then poll again: on the gate's path
		// every syscall counts, and a read that finds nothing is one more.
		// The modify group first: a write's FAN_MODIFY is queued there
		// when the content group's is, before its FAN_CLOSE_WRITE, which
		// may settle the file at once; read after it, the modify event
		// would open the file again with the change already decided.
		for i, fn := range groups {
			if g := int(fds[3+i].Fd); g == f.modify && fds[3+i].Revents != 0 {
				f.readGroup(g, buf, fn)
			}
		}
		if fds[0].Revents != 0 {
			f.readGroup(f.content, buf, f.contentEvent)
		}
		for i, fn := range groups {
			if g := int(fds[3+i].Fd); g != f.modify && fds[3+i].Revents != 0 {
				f.readGroup(g, buf, fn)
			}
		}
	}
}

// barrier returns once the reader has handled every event queued before
// the call, or an error after timeout or if the reader has stopped.
func (f *fan) barrier(timeout time.Duration) error {
	done := make(chan struct{})
	select {
	case f.barriers <- done:
	case <-f.done:
		return errors.New("fanotify reader stopped")
	}
	// After the send: a reader that took the requests before it still
	// finds the eventfd readable, and takes this one next.
	var one = [8]byte{1}
	if _, err := unix.Write(f.syncfd, one[:]); err != nil {
		return fmt.Errorf("wake fanotify reader: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-f.done:
		return errors.New("fanotify reader stopped")
	case <-t.C:
		return fmt.Errorf("fanotify reader did not catch up within %v", timeout)
	}
}

// answerBarriers drains the groups for the barrier calls waiting.
func (f *fan) answerBarriers(buf []byte) {
	var b [8]byte
	unix.Read(f.syncfd, b[:])
	var waiting []chan struct{}
	for more := true; more; {
		select {
		case c := <-f.barriers:
			waiting = append(waiting, c)
		default:
			more = false
		}
	}
	f.drain(buf, time.Now().Add(drainLimit))
	for _, c := range waiting {
		close(c)
	}
}

// drain reads the groups until none has anything queued, or until the
// deadline: a workload still busy at Close must not keep it open forever.
func (f *fan) drain(buf []byte, deadline time.Time) {
	for {
		more := f.modify >= 0 && f.readGroup(f.modify, buf, f.modifyEvent) // first: see read
		if f.readGroup(f.content, buf, f.contentEvent) {
			more = true
		}
		if f.dirs >= 0 && f.readGroup(f.dirs, buf, f.dirEvent) {
			more = true
		}
		if !more || time.Now().After(deadline) {
			return
		}
	}
}

// readGroup does one read(2) of fd and handles its events. It reports
// whether anything was read.
func (f *fan) readGroup(fd int, buf []byte, handle func(*fanotify.Event)) bool {
	n, err := unix.Read(fd, buf)
	switch {
	case errors.Is(err, unix.EINTR):
		return true
	case err != nil:
		if !errors.Is(err, unix.EAGAIN) {
			f.log.Error("filemon: read fanotify", "err", err)
		}
		return false
	case n <= 0:
		return false
	}
	if err := fanotify.Parse(buf[:n], func(ev *fanotify.Event) bool { handle(ev); return true }); err != nil {
		// Cannot happen with a kernel that speaks version 3; any
		// descriptors in the unparsed rest leak, so say so loudly.
		f.log.Error("filemon: parse fanotify events", "err", err)
		f.overflow("fanotify (unparsable events)")
	}
	return true
}

// contentEvent handles one event of the content group.
func (f *fan) contentEvent(ev *fanotify.Event) {
	if ev.Mask&unix.FAN_Q_OVERFLOW != 0 {
		f.overflow("fanotify")
	}
	if ev.FD < 0 {
		return
	}
	fd := int(ev.FD)
	defer unix.Close(fd)
	if ev.Mask&unix.FAN_OPEN_PERM != 0 {
		f.procs.gate(int(ev.PID))
		// Always allow: the gate exists to read who opens, never to refuse.
		if err := fanotify.Allow(f.content, ev.FD); err != nil {
			f.log.Error("filemon: answer fanotify permission event", "err", err)
		}
	}
	if ev.Mask&contentMask == 0 || ev.PID == f.self {
		return
	}
	s := f.sink.Load()
	if s == nil {
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return
	}
	now := time.Now()
	who := f.lazyProc(ev.PID)
	mtime := st.Mtim.Sec*1e9 + st.Mtim.Nsec
	ctime := st.Ctim.Sec*1e9 + st.Ctim.Nsec
	inBase := false
	s.base.lookupIno(st.Dev, st.Ino, func(idx int32) {
		inBase = true
		if ev.Mask&unix.FAN_MODIFY != 0 {
			s.tr.add(idx, factWrite, who(), now, st.Size)
			s.tr.seen(idx, st.Size, mtime, ctime)
		}
		if ev.Mask&unix.FAN_CLOSE_WRITE != 0 {
			// A descriptor-mode group gets no FAN_MODIFY for a truncation
			// (ftruncate, O_TRUNC): the kernel has no path to open for it.
			// The close still comes: a file that changed since it was last
			// seen, with no write, was truncated by the process closing it.
			s.tr.closedWrite(idx, st.Size, mtime, ctime, who, now)
		}
	})
	if !inBase && ev.Mask&unix.FAN_CLOSE_WRITE != 0 && f.onIndexFile != nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		f.indexClosed(fd, who)
	}
}

// modifyEvent handles one event of the modify group: the file it names
// (by handle) was written or truncated by ev.PID.
func (f *fan) modifyEvent(ev *fanotify.Event) {
	if ev.Mask&unix.FAN_Q_OVERFLOW != 0 {
		f.overflow("fanotify (file identifiers)")
	}
	if ev.Mask&unix.FAN_MODIFY == 0 || !ev.HasFID || ev.PID == f.self || len(ev.Handle) < 4 {
		return
	}
	s := f.sink.Load()
	if s == nil {
		return
	}
	var kb [64]byte
	key := fanotify.AppendKey(kb[:0], ev.FSID, ev.Handle)
	idxs, ok := s.handles[string(key)]
	if !ok {
		var known bool
		idxs, known = f.baselineFiles(s, ev)
		if known {
			if len(s.handles) >= maxHandles {
				clear(s.handles)
			}
			s.handles[string(key)] = idxs
		}
	}
	if len(idxs) == 0 {
		return
	}
	who := f.lazyProc(ev.PID)
	now := time.Now()
	for _, idx := range idxs {
		s.tr.modified(idx, who, now)
	}
}

// lazyProc returns a lookup of pid's process that asks f.procs once, on
// first use: most events need none.
func (f *fan) lazyProc(pid int32) func() event.Process {
	var proc event.Process
	named := false
	return func() event.Process {
		if !named {
			proc, named = f.procs.at(int(pid)), true
		}
		return proc
	}
}

// maxHandles bounds fanSink.handles; past it the cache starts over.
const maxHandles = 4096

// baselineFiles returns the baseline files that the modify group's event
// ev names by file handle (more than one for hard links in the baseline),
// or none; known is false when that could not be found out this time (the
// answer must not be kept).
func (f *fan) baselineFiles(s *fanSink, ev *fanotify.Event) (idxs []int32, known bool) {
	dir, ok := f.mounts.Load(ev.FSID)
	if !ok {
		return nil, true // not a file system the walk marked anything on
	}
	mfd, err := unix.Open(dir.(string), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0) // not O_PATH: open_by_handle_at refuses one
	if err != nil {
		f.handleError(err)
		return nil, false
	}
	defer unix.Close(mfd)
	// The path is the runner user's to rename: a directory of another file
	// system there now would answer every handle "stale", and that answer
	// is kept. Not this time, and not kept.
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(mfd, &sfs); err != nil || fsidOf(sfs) != ev.FSID {
		f.handleError(fmt.Errorf("%s is no longer on the file system it was", dir.(string)))
		return nil, false
	}
	h := unix.NewFileHandle(int32(binary.LittleEndian.Uint32(ev.Handle)), ev.Handle[4:])
	fd, err := unix.OpenByHandleAt(mfd, h, unix.O_PATH|unix.O_CLOEXEC)
	if errors.Is(err, unix.ESTALE) {
		return nil, true // gone since: its deletion is an event of its own
	}
	if err != nil {
		f.handleError(err)
		return nil, false
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	unix.Close(fd)
	if err != nil {
		return nil, false
	}
	s.base.lookupIno(st.Dev, st.Ino, func(idx int32) { idxs = append(idxs, idx) })
	return idxs, true
}

// handleError logs, once, that a modify-group event could not be turned
// into its file: such a truncate(2) by path is reported without a process.
func (f *fan) handleError(err error) {
	if f.handleFailed.CompareAndSwap(false, true) {
		f.log.Warn("filemon: open a fanotify file handle: a truncate(2) by path may be reported without its process", "err", err)
	}
}

// indexClosed hands the file open as fd, just closed after writing, to
// onIndexFile if it is a git index directly in the root's .git. It opens
// nothing (the gate would wait on this very thread): the descriptor is the
// event's, duplicated.
func (f *fan) indexClosed(fd int, who func() event.Process) {
	var lb [4096]byte
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), lb[:])
	if err != nil {
		return
	}
	p := strings.TrimSuffix(string(lb[:n]), " (deleted)")
	dir, name := filepath.Split(p)
	if filepath.Clean(dir) != f.gitRoot || (name != "index.lock" && name != "index") {
		return
	}
	var sig [4]byte
	if n, err := unix.Pread(fd, sig[:], 0); err != nil || n != 4 || string(sig[:]) != "DIRC" {
		return
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		f.log.Warn("filemon: keep the git index written", "err", err)
		return
	}
	if !f.onIndexFile(who(), dup) {
		unix.Close(dup)
	}
}

// dirEvent handles one event of the directory group.
func (f *fan) dirEvent(ev *fanotify.Event) {
	if ev.Mask&unix.FAN_Q_OVERFLOW != 0 {
		f.overflow("fanotify (directories)")
		return
	}
	if !ev.HasDir || ev.PID == f.self || len(ev.Name) == 0 {
		return
	}
	s := f.sink.Load()
	if s == nil {
		return
	}
	var kb [128]byte
	key := fanotify.AppendKey(kb[:0], ev.DirFSID, ev.DirHandle)
	if gk := f.gitKey.Load(); gk != nil && *gk == string(key) && string(ev.Name) == "index" &&
		ev.Mask&(unix.FAN_MOVED_TO|unix.FAN_CREATE) != 0 && f.onIndex != nil {
		f.onIndex(f.procs.at(int(ev.PID)))
	}
	var dirRel string
	dir, isBase := s.base.byHandle[string(key)]
	if isBase {
		dirRel = s.base.entries[dir].path
	} else if v, ok := f.extra.Load(string(key)); ok {
		dirRel = v.(string)
	} else {
		return
	}
	var rel [512]byte
	p := rel[:0]
	if dirRel != "" {
		p = append(append(p, dirRel...), '/')
	}
	p = append(p, ev.Name...)
	created := ev.Mask&(unix.FAN_CREATE|unix.FAN_MOVED_TO) != 0
	if created && ev.Mask&unix.FAN_ONDIR != 0 {
		if rp := string(p); (rp == ".git" && f.onIndex != nil) || steerDir(rp) {
			if _, known := s.base.byPath[rp]; !known {
				f.dirAppeared(s, rp, f.procs.at(int(ev.PID)))
			}
		}
		if !isBase {
			return
		}
	}
	if !isBase {
		if why := f.steerWhy(string(p)); created && why != "" {
			s.tr.steerCreated(string(p), why, f.procs.at(int(ev.PID)), time.Now())
		}
		return
	}
	idx, ok := s.base.byPath[string(p)]
	if !ok {
		if why := f.steerWhy(string(p)); created && why != "" && ev.Mask&unix.FAN_ONDIR == 0 {
			s.tr.steerCreated(string(p), why, f.procs.at(int(ev.PID)), time.Now())
		}
		return // not a baseline name: a build's own file
	}
	proc := f.procs.at(int(ev.PID))
	now := time.Now()
	if s.base.entries[idx].isDir() {
		if ev.Mask&unix.FAN_ONDIR != 0 && ev.Mask&unix.FAN_MOVED_FROM != 0 {
			s.tr.addTree(idx, factAway, proc, now)
		}
		// Anything put at the name: a directory, or a symlink to one.
		if ev.Mask&(unix.FAN_CREATE|unix.FAN_MOVED_TO) != 0 {
			s.tr.replaceTree(idx, proc, now, true)
		}
		return
	}
	if ev.Mask&unix.FAN_DELETE != 0 {
		s.tr.add(idx, factUnlink, proc, now, -1)
	}
	if ev.Mask&unix.FAN_MOVED_FROM != 0 {
		s.tr.add(idx, factAway, proc, now, -1)
	}
	if ev.Mask&(unix.FAN_CREATE|unix.FAN_MOVED_TO) != 0 {
		s.tr.replace(idx, proc, now, true)
	}
}
