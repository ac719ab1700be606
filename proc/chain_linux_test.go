package proc

import (
	"net/netip"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/lineage"
)

// fakeLineage is a process table whose entries the test changes.
type fakeLineage struct {
	procs   map[int]lineage.Proc
	lookups int
}

func (l *fakeLineage) Process(pid int, at uint64, wait time.Duration) (lineage.Proc, bool) {
	l.lookups++
	p, ok := l.procs[pid]
	return p, ok
}
func (l *fakeLineage) FlowOwner(uint8, netip.AddrPort, netip.AddrPort, time.Duration) (lineage.Owner, bool) {
	return lineage.Owner{}, false
}
func (l *fakeLineage) LocalOwner(uint8, netip.AddrPort) (lineage.Owner, bool) {
	return lineage.Owner{}, false
}
func (l *fakeLineage) SysctlWriter(uint32, string) (lineage.Owner, bool) {
	return lineage.Owner{}, false
}

// TestLineageChainCache: a flow's process is always looked up (its exec
// shows at once); its parents chain is reused within chainTTL of the time
// it was built and walked again after.
func TestLineageChainCache(t *testing.T) {
	const sec = uint64(time.Second)
	l := &fakeLineage{procs: map[int]lineage.Proc{
		10: {PID: 10, PPID: 1, Exe: "/usr/bin/bash"},
		1:  {PID: 1, PPID: 1, Exe: "/sbin/init"},
		20: {PID: 20, PPID: 10, Exe: "/usr/bin/curl"},
	}}
	f := NewFinder(nil).WithLineage(l)
	steps := []struct {
		name       string
		pid        int // default 20
		at         uint64
		change     func()
		exe, pexe  string
		walkedMore bool // the chain was walked (more than one lookup)
	}{
		{name: "first: walked", at: 10 * sec, exe: "/usr/bin/curl", pexe: "/usr/bin/bash", walkedMore: true},
		{name: "again: cached", at: 10*sec + 1, exe: "/usr/bin/curl", pexe: "/usr/bin/bash"},
		{name: "the process exec'd: shows at once", at: 10*sec + 2, change: func() { l.procs[20] = lineage.Proc{PID: 20, PPID: 10, Exe: "/usr/bin/wget"} },
			exe: "/usr/bin/wget", pexe: "/usr/bin/bash"},
		{name: "the parent exec'd: cached within the TTL", at: 10*sec + sec/2, change: func() { l.procs[10] = lineage.Proc{PID: 10, PPID: 1, Exe: "/usr/bin/python3"} },
			exe: "/usr/bin/wget", pexe: "/usr/bin/bash"},
		{name: "after the TTL: walked again", at: 12 * sec, exe: "/usr/bin/wget", pexe: "/usr/bin/python3", walkedMore: true},
		{name: "an earlier time beyond the TTL: walked", at: 10 * sec, exe: "/usr/bin/wget", pexe: "/usr/bin/python3", walkedMore: true},
		{name: "another process under a reused parent pid, within the TTL: walked", pid: 30, at: 10*sec + 3,
			change: func() {
				l.procs[10] = lineage.Proc{PID: 10, PPID: 1, Start: 99, Exe: "/usr/bin/make"}
				l.procs[30] = lineage.Proc{PID: 30, PPID: 10, Start: 100, Exe: "/usr/bin/wget"}
			},
			exe: "/usr/bin/wget", pexe: "/usr/bin/make", walkedMore: true},
		{name: "a reused pid of the process itself, within the TTL: walked", at: 10*sec + 4,
			change: func() { l.procs[20] = lineage.Proc{PID: 20, PPID: 10, Start: 101, Exe: "/usr/bin/curl"} },
			exe:    "/usr/bin/curl", pexe: "/usr/bin/make", walkedMore: true},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		before := l.lookups
		pid := 20
		if s.pid != 0 {
			pid = s.pid
		}
		p := f.lineageInfo(pid, s.at)
		if p.Exe != s.exe || len(p.Parents) != 2 || p.Parents[0].Exe != s.pexe || p.Parents[1].Exe != "/sbin/init" {
			t.Errorf("%s: %+v; want %s, parents %s and init", s.name, p, s.exe, s.pexe)
		}
		if walked := l.lookups-before > 1; walked != s.walkedMore {
			t.Errorf("%s: %d lookups; want the chain walked: %v", s.name, l.lookups-before, s.walkedMore)
		}
		// Consumers share the cached chain and only read it; an append
		// by one (filemon's) must copy, not write into the shared array.
		if cap(p.Parents) != len(p.Parents) {
			t.Errorf("%s: parents cap %d > len %d: one consumer's append would show in another's", s.name, cap(p.Parents), len(p.Parents))
		}
	}
}
