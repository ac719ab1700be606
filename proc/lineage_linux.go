package proc

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/lineage"
)

// Lineage is what the kernel recorded about processes and socket owners
// (a started *lineage.Tracker). A Finder with one asks it first and falls
// back to sock_diag and /proc when it knows nothing.
type Lineage interface {
	Process(pid int, at uint64, wait time.Duration) (lineage.Proc, bool)
	FlowOwner(proto uint8, src, dst netip.AddrPort, wait time.Duration) (lineage.Owner, bool)
	LocalOwner(proto uint8, src netip.AddrPort) (lineage.Owner, bool)
	SysctlWriter(netns uint32, name string) (lineage.Owner, bool)
}

const (
	// flowWait bounds the wait for a flow record: a connected UDP
	// socket's flow is recorded just after its first send, which the
	// firewall's readers may see first.
	flowWait = 10 * time.Millisecond
	// tableWait bounds the wait for the process table to hold every event
	// the kernel submitted (an exec may be in the ring buffer). The table
	// is current within microseconds on an idle machine; a loaded one can
	// delay the reader by tens of milliseconds.
	tableWait = 250 * time.Millisecond
)

// WithLineage makes f ask l first. Call it before the first lookup; it
// returns f.
func (f *Finder) WithLineage(l Lineage) *Finder {
	f.lin = l
	return f
}

// lineageProto maps a protocol name to the number the BPF side keys by.
func lineageProto(proto string) (uint8, bool) {
	switch proto {
	case "tcp":
		return 6, true
	case "udp":
		return 17, true
	case "udplite":
		return 136, true
	case "icmp":
		return 1, true
	case "icmpv6":
		return 58, true
	}
	return 0, false
}

// fromLineage is the kernel's answer for a flow's owner, if it has one.
// forwarded: the flow came from a container (its ID is then looked up).
func (f *Finder) fromLineage(proto string, local, remote netip.AddrPort, forwarded bool) (event.Process, bool) {
	n, ok := lineageProto(proto)
	if !ok || f.lin == nil {
		return event.Process{}, false
	}
	var o lineage.Owner
	if remote.IsValid() {
		o, ok = f.lin.FlowOwner(n, local, remote, flowWait)
	} else if local.IsValid() {
		o, ok = f.lin.LocalOwner(n, local)
	}
	if !ok || o.PID <= 0 {
		return event.Process{}, false
	}
	p := f.lineageInfo(o.PID, o.At)
	p.UID = o.UID
	if forwarded && p.Container == "" {
		p.Container = containerID(o.PID)
	}
	return p, true
}

// Info returns who pid is: from the kernel's process table when f has
// one (also for a process that has exited since), else as Info reads
// /proc. The table answers only once it holds every event submitted so
// far, so a process that has exec'd is never named by its old image.
func (f *Finder) Info(pid int) event.Process {
	if f.lin == nil || pid <= 0 {
		return info(pid, &f.cache)
	}
	return f.lineageInfo(pid, 0)
}

// lineageInfo builds pid's event.Process (as it was at the monotonic time
// at; 0: now) from the table, reading /proc for what the table lacks.
func (f *Finder) lineageInfo(pid int, at uint64) event.Process {
	lp, ok := f.lin.Process(pid, at, tableWait)
	if !ok {
		p := info(pid, &f.cache)
		p.PID = pid
		return p
	}
	p := event.Process{PID: pid, Exe: lp.Exe, Cmdline: lp.Cmdline, UID: lp.UID}
	// Keyed by the process itself (pid and start time), not by its
	// parent's pid alone: a reused pid is another process.
	key := chainKey{pid: pid, start: lp.Start, ppid: lp.PPID}
	if at != 0 {
		if ps, ok := f.chains.get(key, at); ok {
			p.Parents = ps
			return p
		}
	}
	for ppid := lp.PPID; ppid > 0 && len(p.Parents) < maxParents; {
		a, ok := f.lin.Process(ppid, at, 0)
		if !ok {
			// Not in the table: the rest of the chain from /proc.
			rest := info(ppid, &f.cache)
			p.Parents = append(p.Parents, event.Ancestor{PID: ppid, Exe: rest.Exe, Cmdline: rest.Cmdline})
			p.Parents = append(p.Parents, rest.Parents...)
			break
		}
		p.Parents = append(p.Parents, event.Ancestor{PID: ppid, Exe: a.Exe, Cmdline: a.Cmdline})
		if a.PPID == ppid {
			break
		}
		ppid = a.PPID
	}
	// Clipped: the chain is shared with the cache and its later lookups.
	p.Parents = slices.Clip(p.Parents[:min(len(p.Parents), maxParents)])
	if at != 0 {
		f.chains.put(key, at, p.Parents)
	}
	return p
}

// SysctlWriter returns the process that last wrote the sysctl name (as
// sysctl(8) spells it) in the network namespace whose inode number is
// netns, from the kernel's record; Unknown says why when there is none.
func (f *Finder) SysctlWriter(netns uint32, name string) event.Process {
	if f.lin == nil {
		return event.Process{Unknown: "sysctl writes name no process without the kernel's records (eBPF)"}
	}
	o, ok := f.lin.SysctlWriter(netns, name)
	if !ok || o.PID <= 0 {
		return event.Process{Unknown: "no sysctl write recorded: changed through netlink (IFLA_INET_CONF), or from another network namespace"}
	}
	p := f.lineageInfo(o.PID, o.At)
	p.UID = o.UID
	return p
}

// chainCache holds a process's parents chain as the table gave it at a
// monotonic time, for lookups as of within chainTTL of that time, either
// side: a process opening thousands of connections a second otherwise
// walks the same chain, a table lookup per ancestor, for each
// (bench/conn.sh, perf). The process itself is always looked up (its exec
// is never missed); an ancestor that exec'd within chainTTL of a lookup may
// show its image from the other side of that exec, as the /proc path's
// ancestorCache may.
type chainCache struct {
	mu sync.Mutex
	m  map[chainKey]cachedChain
}

// chainKey is one process (pid and start time) under one parent (a
// reparented process has another chain).
type chainKey struct {
	pid   int
	start uint64
	ppid  int
}

type cachedChain struct {
	parents []event.Ancestor
	at      uint64
}

const (
	chainTTL      = uint64(time.Second)
	chainCacheMax = 4096
)

// get returns k's chain if one was built within chainTTL of at. The slice
// is shared by every lookup of k, clipped so that an append copies it:
// callers read a Process's Parents and never write its elements. A copy
// per lookup was a quarter of the agent's allocations at thousands of
// connections a second.
func (c *chainCache) get(k chainKey, at uint64) ([]event.Ancestor, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || max(at, e.at)-min(at, e.at) > chainTTL {
		return nil, false
	}
	return e.parents, true
}

// put keeps parents (clipped, read-only from now on) as k's chain at at.
func (c *chainCache) put(k chainKey, at uint64, parents []event.Ancestor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= chainCacheMax {
		c.m = make(map[chainKey]cachedChain) // a flood of distinct processes: forget rather than grow
	}
	c.m[k] = cachedChain{parents: parents, at: at}
}
