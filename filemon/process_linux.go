package filemon

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"golang.org/x/sys/unix"
)

// This file is the stand-in for the shared process package: Config.Process
// replaces readProcess when set.

const maxAncestors = 64

// readProcess identifies pid from /proc: exe, command line, real uid and
// the parent chain up to PID 1. For a process that is gone it returns the
// pid with Unknown set.
func readProcess(pid int) event.Process {
	var buf [4096]byte
	p := event.Process{PID: pid}
	dir := "/proc/" + strconv.Itoa(pid)
	p.Exe = readExe(dir, buf[:])
	p.Cmdline = cmdline(readProc(dir+"/cmdline", buf[:]))
	st, ok := parseStat(readProc(dir+"/stat", buf[:]))
	uid, uidOK := parseStatusUID(readProc(dir+"/status", buf[:]))
	if uidOK {
		p.UID = uid
	}
	switch {
	case !ok && p.Exe == "" && p.Cmdline == "":
		return event.Process{PID: pid, Unknown: "process exited before it could be identified"}
	case !ok:
		// Exited while being read: its name is known, its uid (0 would
		// read as root) and parents are not.
		p.Unknown = "process exited while it was being identified (uid and parents unknown)"
		return p
	case !uidOK:
		p.Unknown = "process exited while it was being identified (uid unknown)"
		return p
	case st.kthread:
		p.Cmdline = "[" + st.comm + "]"
	case p.Exe == "" || st.state == 'Z' || st.state == 'X':
		// Exiting: its memory (command line) and executable are gone.
		return event.Process{PID: pid, UID: p.UID,
			Unknown: "process exited before it could be identified (command name " + strconv.Quote(st.comm) + ")"}
	}
	seen := map[int]bool{pid: true}
	for ppid := st.ppid; ppid > 0 && !seen[ppid] && len(p.Parents) < maxAncestors; {
		seen[ppid] = true
		pdir := "/proc/" + strconv.Itoa(ppid)
		a := event.Ancestor{PID: ppid, Exe: readExe(pdir, buf[:]), Cmdline: cmdline(readProc(pdir+"/cmdline", buf[:]))}
		pst, ok := parseStat(readProc(pdir+"/stat", buf[:]))
		if a.Exe == "" && a.Cmdline == "" && ok && pst.kthread {
			a.Cmdline = "[" + pst.comm + "]"
		}
		p.Parents = append(p.Parents, a)
		if !ok {
			break
		}
		ppid = pst.ppid
	}
	return p
}

// readProc reads a small /proc file into buf; nil on any error.
func readProc(path string, buf []byte) []byte {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		k, err := unix.Read(fd, buf[n:])
		if err != nil || k <= 0 {
			break
		}
		n += k
	}
	return buf[:n]
}

// readExe returns the target of dir/exe without a " (deleted)" suffix.
func readExe(dir string, buf []byte) string {
	n, err := unix.Readlink(dir+"/exe", buf)
	if err != nil || n <= 0 {
		return ""
	}
	return strings.TrimSuffix(string(buf[:n]), " (deleted)")
}

// procCache remembers who each pid was when the open gate (or an earlier
// event) saw it alive, so that an event read after the process exited can
// still name it. Entries are trusted for cacheTTL after they were last
// confirmed: long enough for a writer to finish, far too short for the
// kernel to hand its pid to another process in between.
type procCache struct {
	resolve func(pid int) event.Process
	self    int
	now     func() time.Time

	mu sync.Mutex
	m  map[int]cachedProc
}

type cachedProc struct {
	p    event.Process
	exe  string
	seen time.Time
}

const (
	cacheTTL = 10 * time.Second
	cacheMax = 4096
)

func newProcCache(resolve func(int) event.Process, self int) *procCache {
	if resolve == nil {
		resolve = readProcess
	}
	// Whatever resolves, a record that names nobody says why.
	named := func(pid int) event.Process {
		p := resolve(pid)
		if !identified(p) && p.Unknown == "" {
			p.PID = pid
			p.Unknown = "process exited before it could be identified"
		}
		return p
	}
	return &procCache{resolve: named, self: self, now: time.Now, m: make(map[int]cachedProc)}
}

// gate records the identity of pid, which is blocked in open and so alive.
// It is on the path of every open of a baseline file: when pid is known and
// still runs the same program it costs one readlink.
func (c *procCache) gate(pid int) {
	if pid == c.self || pid <= 0 {
		return
	}
	var buf [512]byte
	exe := readExe("/proc/"+strconv.Itoa(pid), buf[:])
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[pid]
	if ok && exe != "" && e.exe == exe {
		e.seen = now
		c.m[pid] = e
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.store(pid, c.resolve(pid), exe, now)
}

// at identifies pid for an event that has just been read.
func (c *procCache) at(pid int) event.Process {
	if pid <= 0 {
		return event.Process{Unknown: "no process reported"}
	}
	var buf [512]byte
	exe := readExe("/proc/"+strconv.Itoa(pid), buf[:])
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[pid]
	c.mu.Unlock()
	if exe != "" {
		if ok && e.exe == exe {
			return e.p
		}
		p := c.resolve(pid)
		if identified(p) {
			c.store(pid, p, exe, now)
		}
		return p
	}
	if ok && now.Sub(e.seen) < cacheTTL {
		return e.p // exited after the gate (or an earlier event) saw it
	}
	return c.resolve(pid)
}

func (c *procCache) store(pid int, p event.Process, exe string, now time.Time) {
	if !identified(p) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= cacheMax {
		for k, e := range c.m {
			if now.Sub(e.seen) >= cacheTTL {
				delete(c.m, k)
			}
		}
		if len(c.m) >= cacheMax {
			clear(c.m)
		}
	}
	c.m[pid] = cachedProc{p: p, exe: exe, seen: now}
}
