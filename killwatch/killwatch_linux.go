package killwatch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Watch is the attached program and its maps. Not safe for concurrent use.
type Watch struct {
	dir            string
	watched, kills *ebpf.Map
	link           link.Link
	prog           *ebpf.Program
}

// Pin names inside the pin directory.
const (
	pinLink    = "link"
	pinWatched = "watched"
	pinKills   = "kills"
)

// bpfFSMagic is BPF_FS_MAGIC (statfs f_type of a bpf filesystem).
const bpfFSMagic = 0xcafe4a11

// DefaultFS is where systemd mounts the bpf filesystem.
const DefaultFS = "/sys/fs/bpf"

// EnsureFS returns fs if a bpf filesystem is mounted there, else mounts
// one there (the directory must exist, as /sys/fs/bpf does on every
// kernel with BPF).
func EnsureFS(fs string) (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(fs, &st); err != nil {
		return "", fmt.Errorf("killwatch: %s: %w", fs, err)
	}
	if st.Type == bpfFSMagic {
		return fs, nil
	}
	if err := unix.Mount("bpf", fs, "bpf", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700"); err != nil {
		return "", fmt.Errorf("killwatch: mount a bpf filesystem on %s: %w", fs, err)
	}
	return fs, nil
}

// Open attaches the program and pins it with its maps in dir (created;
// it must be on a bpf filesystem), or opens what an earlier agent pinned
// there. On error nothing new stays pinned.
func Open(dir string) (_ *Watch, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("killwatch: %w", err)
	}
	if w, err := openPinned(dir); err == nil {
		return w, nil
	}
	// Nothing (usable) pinned: start afresh.
	_ = removePins(dir)
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("killwatch: memlock: %w", err)
	}
	objs := &killwatchObjects{}
	if err := loadKillwatchObjects(objs, nil); err != nil {
		return nil, fmt.Errorf("killwatch: load: %w", err)
	}
	nw := &Watch{dir: dir, watched: objs.Watched, kills: objs.Kills, prog: objs.OnSignal}
	defer func() {
		if err != nil {
			_ = nw.Remove()
		}
	}()
	if nw.link, err = link.AttachTracing(link.TracingOptions{Program: objs.OnSignal}); err != nil {
		return nil, fmt.Errorf("killwatch: attach: %w", err)
	}
	for name, pin := range map[string]interface{ Pin(string) error }{pinLink: nw.link, pinWatched: nw.watched, pinKills: nw.kills} {
		if err = pin.Pin(filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("killwatch: pin %s: %w", name, err)
		}
	}
	return nw, nil
}

func openPinned(dir string) (*Watch, error) {
	l, err := link.LoadPinnedLink(filepath.Join(dir, pinLink), nil)
	if err != nil {
		return nil, err
	}
	w := &Watch{dir: dir, link: l}
	if w.watched, err = ebpf.LoadPinnedMap(filepath.Join(dir, pinWatched), nil); err == nil {
		w.kills, err = ebpf.LoadPinnedMap(filepath.Join(dir, pinKills), nil)
	}
	if err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// ownNS is the inode number of our pid namespace: pids given to Add and
// Take are as getpid in it names them.
func ownNS() (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return 0, fmt.Errorf("killwatch: our pid namespace: %w", err)
	}
	return uint32(st.Ino), nil
}

func procKey(pid int) (killwatchKwProc, error) {
	ns, err := ownNS()
	return killwatchKwProc{Ns: ns, Pid: uint32(pid)}, err
}

// Add watches pid (of our pid namespace).
func (w *Watch) Add(pid int) error {
	k, err := procKey(pid)
	if err == nil {
		err = w.watched.Put(k, uint8(1))
	}
	if err != nil {
		return fmt.Errorf("killwatch: watch pid %d: %w", pid, err)
	}
	return nil
}

// The trace_signal_generate results that mean the signal did not arrive.
const (
	resultIgnored  = 1
	resultOverflow = 3
)

// TakeSignal returns who last sent sig to pid and forgets it; pid stays
// watched.
func (w *Watch) TakeSignal(pid int, sig syscall.Signal) (Kill, bool, error) {
	target, err := procKey(pid)
	if err != nil {
		return Kill{}, false, err
	}
	k := killwatchKwKey{Target: target, Sig: uint32(sig)}
	var v killwatchKwKill
	if err := w.kills.LookupAndDelete(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Kill{}, false, nil
		}
		// Hash maps got LookupAndDelete in 5.14: fall back to two calls.
		if err := w.kills.Lookup(&k, &v); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return Kill{}, false, nil
			}
			return Kill{}, false, fmt.Errorf("killwatch: read: %w", err)
		}
		_ = w.kills.Delete(&k)
	}
	return toKill(k, v), true, nil
}

func toKill(k killwatchKwKey, v killwatchKwKill) Kill {
	return Kill{Signal: syscall.Signal(k.Sig), Sender: int(v.Sender), Global: int(v.Global), SenderTID: int(v.SenderTid),
		UID: int(v.Uid), PPID: int(v.Ppid), Comm: cstr(v.Comm[:]), ParentComm: cstr(v.Pcomm[:]),
		Count: int(v.Count), Ignored: v.Result == resultIgnored || v.Result == resultOverflow, Kernel: v.Kernel != 0,
		At: time.Duration(v.Ktime)}
}

// Take returns the signals other processes sent to pid, stops watching
// it and forgets them.
func (w *Watch) Take(pid int) ([]Kill, error) {
	target, err := procKey(pid)
	if err != nil {
		return nil, err
	}
	var out []Kill
	var k killwatchKwKey
	var v killwatchKwKill
	var mine []killwatchKwKey
	it := w.kills.Iterate()
	for it.Next(&k, &v) {
		if k.Target != target {
			continue
		}
		mine = append(mine, k)
		out = append(out, toKill(k, v))
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("killwatch: read: %w", err)
	}
	for _, k := range mine {
		_ = w.kills.Delete(k)
	}
	if err := w.watched.Delete(target); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return out, fmt.Errorf("killwatch: unwatch pid %d: %w", pid, err)
	}
	return out, nil
}

func cstr(b []int8) string {
	s := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// Close releases this process's hold; the pins keep the program attached.
func (w *Watch) Close() error {
	var errs []error
	if w.link != nil {
		errs = append(errs, w.link.Close())
	}
	for _, m := range []*ebpf.Map{w.watched, w.kills} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	if w.prog != nil {
		errs = append(errs, w.prog.Close())
	}
	return errors.Join(errs...)
}

// Remove unpins everything and detaches the program (a clean stop).
func (w *Watch) Remove() error {
	err := removePins(w.dir)
	if rerr := os.Remove(w.dir); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return errors.Join(err, w.Close())
}

func removePins(dir string) error {
	var errs []error
	for _, n := range []string{pinLink, pinWatched, pinKills} {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
