package lineage

import (
	"strings"
	"sync"
)

// table is the userspace process table: pid -> the process's incarnations
// (newest first; a pid reused within Keep has two). Safe for concurrent use.
type table struct {
	mu    sync.Mutex
	procs map[int][]*Proc
	// exited is the exit order, oldest first, for expiry.
	exited []exitMark
	// changed is closed and replaced by touch, after each event.
	changed chan struct{}
}

type exitMark struct {
	pid   int
	start uint64
	at    uint64 // monotonic ns
}

// maxIncarnations bounds how many exited incarnations of one pid are kept.
const maxIncarnations = 4

func newTable() *table {
	return &table{procs: make(map[int][]*Proc), changed: make(chan struct{})}
}

func (t *table) notify() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// touch wakes everyone waiting for a change.
func (t *table) touch() {
	t.mu.Lock()
	t.notify()
	t.mu.Unlock()
}

// exec records that pid now runs exe with args (NUL-separated).
func (t *table) exec(p Proc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur := t.find(p.PID, p.Start); cur != nil && cur.Start == p.Start && !cur.Exited {
		cur.Exe, cur.Cmdline, cur.UID, cur.Cgroup = p.Exe, p.Cmdline, p.UID, p.Cgroup
		if !cur.Forked {
			cur.PPID = p.PPID // else its maker stays its parent
		}
		cur.Execs++
		cur.Seeded = false
	} else {
		t.add(p)
	}
}

// fork records a new process: it runs what its parent ran.
func (t *table) fork(p Proc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if par := t.find(p.PPID, p.Start); par != nil {
		p.Exe, p.Cmdline = par.Exe, par.Cmdline
	}
	p.Forked, p.Execs = true, 0
	t.add(p)
}

// exit marks pid's incarnation that started at start as exited at now.
func (t *table) exit(pid int, start, now uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.procs[pid] {
		if p.Start == start || start == 0 || p.Seeded {
			if !p.Exited {
				p.Exited = true
				t.exited = append(t.exited, exitMark{pid, p.Start, now})
			}
			break
		}
	}
}

// seed adds a process read from /proc unless the table knows it already.
func (t *table) seed(p Proc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.procs[p.PID]) == 0 {
		p.Seeded = true
		t.procs[p.PID] = []*Proc{&p}
	}
}

func (t *table) add(p Proc) {
	ps := t.procs[p.PID]
	if len(ps) >= maxIncarnations {
		ps = ps[:maxIncarnations-1]
	}
	t.procs[p.PID] = append([]*Proc{&p}, ps...)
}

// find returns pid's newest incarnation that had started by at (0: the
// newest), or nil. t.mu must be held.
func (t *table) find(pid int, at uint64) *Proc {
	for _, p := range t.procs[pid] {
		if at == 0 || p.Start <= at {
			return p
		}
	}
	return nil
}

// get returns a copy of pid's incarnation at the monotonic time at (0: the
// newest), and a channel closed at the table's next change.
func (t *table) get(pid int, at uint64) (Proc, bool, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.find(pid, at); p != nil {
		return *p, true, t.changed
	}
	return Proc{}, false, t.changed
}

// expire drops incarnations that exited before cutoff (monotonic ns).
func (t *table) expire(cutoff uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for n < len(t.exited) && t.exited[n].at < cutoff {
		m := t.exited[n]
		ps := t.procs[m.pid]
		for i, p := range ps {
			if p.Start == m.start && p.Exited {
				ps = append(ps[:i:i], ps[i+1:]...)
				break
			}
		}
		if len(ps) == 0 {
			delete(t.procs, m.pid)
		} else {
			t.procs[m.pid] = ps
		}
		n++
	}
	t.exited = append(t.exited[:0], t.exited[n:]...)
}

// len returns how many processes the table holds.
func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.procs)
}

// joinArgs turns NUL-separated arguments into one space-separated string.
func joinArgs(b []byte) string {
	return strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
}
