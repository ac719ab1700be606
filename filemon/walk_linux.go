package filemon

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/harden-runner/harden-runner/internal/fanotify"
	"golang.org/x/sys/unix"
)

const statxMask = unix.STATX_TYPE | unix.STATX_MODE | unix.STATX_INO | unix.STATX_SIZE | unix.STATX_MTIME | unix.STATX_CTIME | unix.STATX_BTIME

// statxAt stats name in dirfd without following a final symlink.
func statxAt(dirfd int, name string) (fileStat, error) {
	var sx unix.Statx_t
	if err := unix.Statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC, statxMask, &sx); err != nil {
		return fileStat{}, err
	}
	st := fileStat{
		dev:   unix.Mkdev(sx.Dev_major, sx.Dev_minor),
		ino:   sx.Ino,
		size:  int64(sx.Size),
		mtime: sx.Mtime.Sec*1e9 + int64(sx.Mtime.Nsec),
		ctime: sx.Ctime.Sec*1e9 + int64(sx.Ctime.Nsec),
		mode:  uint32(sx.Mode) & modeType,
	}
	if sx.Mask&unix.STATX_BTIME != 0 {
		st.btime = sx.Btime.Sec*1e9 + int64(sx.Btime.Nsec)
	}
	return st, nil
}

func (st fileStat) entry(rel string) entry {
	return entry{path: rel, dev: st.dev, ino: st.ino, size: st.size, mtime: st.mtime, ctime: st.ctime, btime: st.btime, mode: st.mode, blob: -1}
}

// walkHooks arm the watches as the walk meets things.
type walkHooks struct {
	fan   *fan                   // nil without fanotify
	watch func(abs string) error // inotify watch on a directory
	// keep, when set, says whether a file or directory the walk meets is
	// part of the baseline; what it rejects is neither recorded nor
	// watched (nor, for a directory, entered).
	keep func(rel string, st fileStat) bool
}

// walkResult is the baseline plus what could not be watched.
type walkResult struct {
	base       *baseline
	failed     int   // directories that could not be read, watches or marks not added
	firstError error // the first of those
}

// walkDir is one directory still to read.
type walkDir struct {
	rel string
	// git is the directory's path inside a .git directory ("" for .git
	// itself), when it is in one: only what keepGit keeps is walked.
	git   string
	inGit bool
}

// walk records every file and directory under root and arms the watches
// on each, using one worker per CPU.
func walk(ctx context.Context, root string, h walkHooks) (*walkResult, error) {
	st, err := statxAt(unix.AT_FDCWD, root)
	if err != nil {
		return nil, fmt.Errorf("stat %q: %w", root, err)
	}
	if st.mode != modeDir {
		return nil, fmt.Errorf("%q is not a directory", root)
	}
	w := &walker{root: root, h: h, handles: map[string]string{}}
	w.cond = sync.NewCond(&w.mu)
	w.queue = []walkDir{{rel: ""}}
	rootEntry := st.entry("")

	n := runtime.GOMAXPROCS(0)
	results := make([][]entry, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = w.work(ctx)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	total := 1
	for _, r := range results {
		total += len(r)
	}
	base := &baseline{root: root, entries: make([]entry, 0, total)}
	base.entries = append(base.entries, rootEntry)
	for _, r := range results {
		base.entries = append(base.entries, r...)
	}
	base.build(w.handles)
	return &walkResult{base: base, failed: w.failed, firstError: w.firstErr}, nil
}

type walker struct {
	root string
	h    walkHooks

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []walkDir
	active   int
	handles  map[string]string // directory path -> fanotify key
	failed   int
	firstErr error
}

func (w *walker) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failed++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// work takes directories off the queue until the queue is empty and no
// worker can add to it.
func (w *walker) work(ctx context.Context) []entry {
	var out []entry
	var names []string
	buf := make([]byte, 64<<10)
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && w.active > 0 {
			w.cond.Wait()
		}
		if len(w.queue) == 0 {
			w.mu.Unlock()
			w.cond.Broadcast()
			return out
		}
		d := w.queue[len(w.queue)-1]
		w.queue = w.queue[:len(w.queue)-1]
		w.active++
		w.mu.Unlock()

		var sub []walkDir
		if ctx.Err() == nil {
			out, sub, names = w.readDir(d, out, names[:0], buf)
		}

		w.mu.Lock()
		w.queue = append(w.queue, sub...)
		w.active--
		w.mu.Unlock()
		w.cond.Broadcast()
	}
}

// readDir records the entries of one directory and arms its watches.
func (w *walker) readDir(d walkDir, out []entry, names []string, buf []byte) ([]entry, []walkDir, []string) {
	abs := w.root
	if d.rel != "" {
		abs = join(w.root, d.rel)
		if w.root == "/" {
			abs = "/" + d.rel
		}
	}
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			w.fail(fmt.Errorf("open %q: %w", abs, err))
		}
		return out, nil, names
	}
	defer unix.Close(fd)
	w.armDir(fd, d.rel, abs)
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err != nil {
			w.fail(fmt.Errorf("read directory %q: %w", abs, err))
			break
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	var sub []walkDir
	for _, name := range names {
		st, err := statxAt(fd, name)
		if err != nil {
			continue // gone since the directory was read
		}
		var g string
		if d.inGit {
			g = join(d.git, name)
			if !keepGit(g, st.mode == modeDir) {
				continue
			}
		}
		rel := join(d.rel, name)
		if w.h.keep != nil && !w.h.keep(rel, st) {
			continue
		}
		switch st.mode {
		case modeDir:
			sub = append(sub, walkDir{rel: rel, git: g, inGit: d.inGit || name == ".git"})
		case modeReg:
			if w.h.fan != nil {
				if err := w.h.fan.markFile(fd, name); err != nil {
					if errors.Is(err, unix.ENOENT) {
						continue
					}
					w.fail(fmt.Errorf("fanotify mark %q: %w", rel, err))
				}
			}
		case modeLink:
		default:
			continue // sockets, fifos, devices: not source
		}
		out = append(out, st.entry(rel))
	}
	return out, sub, names
}

// armDir puts the inotify watch and the fanotify directory mark on a
// directory and records its fanotify key.
func (w *walker) armDir(fd int, rel, abs string) {
	if err := w.h.watch(abs); err != nil {
		w.fail(fmt.Errorf("watch %q: %w", abs, err))
	}
	f := w.h.fan
	if f == nil {
		return
	}
	if rel == ".git" {
		if err := f.armGit(fd); err != nil {
			w.fail(fmt.Errorf("fanotify mark %q: %w", abs, err))
		}
	}
	key, fsid, err := dirKey(fd)
	if err == nil {
		f.noteMount(fsid, abs)
	}
	if f.dirs < 0 {
		return
	}
	if err != nil {
		w.fail(fmt.Errorf("%q: %w", abs, err))
		return
	}
	if err := f.markDir(fd); err != nil {
		w.fail(fmt.Errorf("fanotify mark directory %q: %w", abs, err))
		return
	}
	w.mu.Lock()
	w.handles[rel] = key
	w.mu.Unlock()
}

// dirKey returns the fanotify key (fsid, handle) of the directory open as
// fd, as fanotify.AppendKey builds it from an event, and its file system's
// id.
func dirKey(fd int) (key string, fsid uint64, err error) {
	h, _, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return "", 0, fmt.Errorf("file handle: %w", err)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return "", 0, fmt.Errorf("statfs: %w", err)
	}
	fsid = fsidOf(sfs)
	return fanotify.HandleKey(fsid, h.Type(), h.Bytes()), fsid, nil
}

// fsidOf is statfs's file system id as fanotify reports it.
func fsidOf(sfs unix.Statfs_t) uint64 {
	return uint64(uint32(sfs.Fsid.Val[0])) | uint64(uint32(sfs.Fsid.Val[1]))<<32
}
