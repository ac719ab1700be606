// Package proc says who is behind a pid or a socket: Info reads what /proc
// says about a process and its parents, and Finder maps a TCP or UDP socket,
// named by its addresses, to the process that holds it (sock_diag netlink for
// the socket's inode, then /proc/PID/fd for the holder).
package proc

import (
	"bytes"
	"errors"
	"io/fs"
	"sync"
	"syscall"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// maxParents caps the parent chain that Info follows.
const maxParents = 32

// Info returns what /proc says about pid: its executable (readlink
// /proc/PID/exe), its command line (arguments joined by single spaces), its
// real uid and its parent chain, nearest first, up to but excluding pid 0 and
// at most 32 links. A pid that no longer exists gives PID set and
// Unknown="exited". Info is safe for concurrent use.
func Info(pid int) event.Process { return info(pid, nil) }

// info is Info with an optional cache of ancestors (nil: read everything).
func info(pid int, cache *ancestorCache) event.Process {
	p := event.Process{PID: pid}
	if pid <= 0 {
		p.Unknown = "invalid pid"
		return p
	}
	var buf [4096]byte
	st, err := readStatus(pid, buf[:])
	if err != nil {
		p.Unknown = "exited"
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errNoSuchProcess) && !errors.Is(err, syscall.ESRCH) {
			p.Unknown = "unreadable: " + err.Error()
		}
		return p
	}
	p.UID = st.uid
	p.Exe = readExe(pid)
	p.Cmdline = readCmdline(pid, buf[:])
	// A process caught inside execve shows its new exe but no command line
	// yet (kernel threads have neither): give the exec a few ms to finish.
	for i := 0; p.Cmdline == "" && p.Exe != "" && i < 5; i++ {
		time.Sleep(2 * time.Millisecond)
		p.Cmdline = readCmdline(pid, buf[:])
	}
	for ppid := st.ppid; ppid > 0 && len(p.Parents) < maxParents; {
		a, next, ok := cache.get(ppid)
		if !ok {
			next, err = readPPid(ppid, buf[:])
			if err != nil {
				// The parent exited between our reads: say who it was.
				p.Parents = append(p.Parents, event.Ancestor{PID: ppid})
				break
			}
			a = event.Ancestor{PID: ppid, Exe: readExe(ppid), Cmdline: readCmdline(ppid, buf[:])}
			cache.put(a, next)
		}
		p.Parents = append(p.Parents, a)
		if next == ppid {
			break
		}
		ppid = next
	}
	return p
}

// ancestorCache remembers recently read ancestors for a short while:
// a build's connections share a few long-lived parents (the shell, the
// runner), and reading each one costs three /proc files. A nil cache caches
// nothing. Entries are trusted for ancestorTTL, far shorter than the time
// the kernel takes to hand out the same pid again.
type ancestorCache struct {
	mu sync.Mutex
	m  map[int]cachedAncestor
}

type cachedAncestor struct {
	a    event.Ancestor
	ppid int
	at   time.Time
}

const (
	ancestorTTL      = time.Second
	ancestorCacheMax = 4096
)

func (c *ancestorCache) get(pid int) (event.Ancestor, int, bool) {
	if c == nil {
		return event.Ancestor{}, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[pid]
	if !ok || time.Since(e.at) > ancestorTTL {
		return event.Ancestor{}, 0, false
	}
	return e.a, e.ppid, true
}

func (c *ancestorCache) put(a event.Ancestor, ppid int) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[int]cachedAncestor)
	}
	if len(c.m) >= ancestorCacheMax {
		for pid, e := range c.m {
			if time.Since(e.at) > ancestorTTL {
				delete(c.m, pid)
			}
		}
		if len(c.m) >= ancestorCacheMax {
			clear(c.m)
		}
	}
	c.m[a.PID] = cachedAncestor{a: a, ppid: ppid, at: time.Now()}
}

// status is what Info needs from /proc/PID/status.
type status struct {
	ppid int
	uid  int
}

var errNoSuchProcess = errors.New("no such process")

// readStatus reads the PPid and real Uid lines of /proc/PID/status.
func readStatus(pid int, buf []byte) (status, error) {
	b, err := readProc(pid, "status", buf)
	if err != nil {
		return status{}, err
	}
	st := status{ppid: -1, uid: -1}
	for len(b) > 0 && (st.ppid < 0 || st.uid < 0) {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("PPid:")):
			st.ppid = firstInt(line[len("PPid:"):])
		case bytes.HasPrefix(line, []byte("Uid:")):
			st.uid = firstInt(line[len("Uid:"):])
		}
	}
	if st.ppid < 0 || st.uid < 0 {
		// A zombie being reaped can leave status nearly empty.
		return status{}, errNoSuchProcess
	}
	return st, nil
}

// readPPid reads the parent pid from /proc/PID/stat, which is cheaper for
// the kernel to produce than status.
func readPPid(pid int, buf []byte) (int, error) {
	b, err := readProc(pid, "stat", buf)
	if err != nil {
		return 0, err
	}
	return parseStatPPid(b)
}

// parseStatPPid returns the fourth field of /proc/PID/stat: "pid (comm)
// state ppid ...", where comm may hold spaces and parentheses.
func parseStatPPid(b []byte) (int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+4 > len(b) {
		return 0, errNoSuchProcess
	}
	b = b[i+2:] // "S ppid ..."
	if j := bytes.IndexByte(b, ' '); j >= 0 {
		if n := firstInt(b[j:]); n >= 0 {
			return n, nil
		}
	}
	return 0, errNoSuchProcess
}

// firstInt parses the first decimal field of b (skipping blanks); -1 if none.
func firstInt(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	n, digits := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int(b[i]-'0')
		digits++
		if digits > 10 {
			return -1
		}
	}
	if digits == 0 {
		return -1
	}
	return n
}

// readCmdline returns /proc/PID/cmdline with its NUL separators turned into
// spaces and the trailing NUL dropped. Arguments longer than buf are cut.
func readCmdline(pid int, buf []byte) string {
	b, err := readProc(pid, "cmdline", buf)
	if err != nil {
		return ""
	}
	return joinArgs(b)
}

// joinArgs turns NUL-separated arguments into one space-separated string,
// dropping the trailing NUL. It reuses b.
func joinArgs(b []byte) string {
	b = bytes.TrimSuffix(b, []byte{0})
	for i, c := range b {
		if c == 0 {
			b[i] = ' '
		}
	}
	return string(b)
}
