package proc

import (
	"slices"
	"sync"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// inodeCache maps socket inodes that scans have seen to the pid and fd
// that held them. A hit is checked with one readlink, so a stale entry
// costs a miss, never a wrong answer. Two generations bound its size: when
// the current one fills, it becomes the old one and the older is dropped.
type inodeCache struct {
	mu       sync.Mutex
	cur, old map[uint32]fdSocket
}

const inodeCacheGen = 8192

func (c *inodeCache) get(inode uint32) (fdSocket, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.cur[inode]; ok {
		return s, true
	}
	s, ok := c.old[inode]
	return s, ok
}

func (c *inodeCache) add(socks []fdSocket) {
	if len(socks) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		c.cur = make(map[uint32]fdSocket)
	}
	for _, s := range socks {
		if len(c.cur) >= inodeCacheGen {
			c.old, c.cur = c.cur, make(map[uint32]fdSocket)
		}
		c.cur[s.inode] = s
	}
}

// procCache keeps the Info of processes that own sockets for a short
// while: a build tool that opens hundreds of connections a second would
// otherwise have its /proc files read for each. An entry is used only if
// the process's exe is unchanged (it did not exec something else).
type procCache struct {
	mu sync.Mutex
	m  map[int32]cachedProc
}

type cachedProc struct {
	p  event.Process
	at time.Time
}

const (
	procTTL      = time.Second
	procCacheMax = 1024
)

func (c *procCache) get(pid int32) (event.Process, bool) {
	c.mu.Lock()
	e, ok := c.m[pid]
	c.mu.Unlock()
	if !ok || time.Since(e.at) > procTTL || !exeIs(int(pid), e.p.Exe) {
		return event.Process{}, false
	}
	p := e.p
	p.Parents = slices.Clone(p.Parents) // callers own what they get
	return p, true
}

func (c *procCache) put(p event.Process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= procCacheMax {
		c.m = make(map[int32]cachedProc)
	}
	c.m[int32(p.PID)] = cachedProc{p: p, at: time.Now()}
}
