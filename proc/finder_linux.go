package proc

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/harden-runner/harden-runner/event"
	"golang.org/x/sys/unix"
)

// recentCap is how many recently matched pids are scanned before the rest:
// a build makes most of its connections from a few processes.
const recentCap = 16

// Finder maps sockets to the processes that own them. It is safe for
// concurrent use. It queries sock_diag in the network namespace of the
// thread that makes its first lookup (the agent's own) and reads /proc.
// It remembers recently matched pids (scanned first), the socket inodes
// that its /proc/PID/fd scans saw (each hit checked with one readlink), and
// for a second each owner's Info (checked against /proc/PID/exe) and its
// ancestors.
type Finder struct {
	log    *slog.Logger
	diag   *diagConn
	pool   sync.Pool // *scanner
	cache  ancestorCache
	procs  procCache
	inodes inodeCache
	netns  namespaces // containers' network namespaces (ForwardedOwner)
	lin    Lineage    // the kernel's records, asked first; nil: none
	chains chainCache // parents chains from lin

	mu      sync.Mutex
	recent  [recentCap]int32 // most recent first
	nrecent int

	warned  atomic.Bool
	lookups atomic.Uint64
	failed  atomic.Uint64
}

// NewFinder returns a Finder. log may be nil (discard). It does no I/O: the
// netlink socket is opened on the first lookup and reopened after errors.
func NewFinder(log *slog.Logger) *Finder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Finder{log: log, diag: newDiagConn()}
	f.pool.New = func() any { return newScanner() }
	return f
}

// Close releases the Finder's netlink socket. It is safe to call twice; a
// later lookup opens a new socket.
func (f *Finder) Close() error {
	f.netns.close()
	return f.diag.close()
}

// Stats returns how many lookups were made and how many found no process.
func (f *Finder) Stats() (lookups, failed uint64) {
	return f.lookups.Load(), f.failed.Load()
}

// Owner returns the process owning the socket with this local address and,
// if remote is valid, this remote address. proto is "tcp" or "udp". A zero
// remote matches any remote: the resolver sees queries that nftables
// redirected, whose socket is connected to the original server. With
// WithLineage, the kernel's record is asked first, and proto may also be
// "udplite", "icmp" or "icmpv6". IPv4 and
// IPv4-mapped IPv6 addresses are interchangeable. When no process is found,
// PID is 0 (or the pid of a process that has since exited) and Unknown says
// why; UID is the socket's owner if the socket was found.
func (f *Finder) Owner(proto string, local, remote netip.AddrPort) event.Process {
	return f.counted(f.owner(proto, local, remote))
}

// counted counts a lookup and whether it found a process.
func (f *Finder) counted(p event.Process) event.Process {
	f.lookups.Add(1)
	if p.PID == 0 || p.Unknown != "" {
		f.failed.Add(1)
	}
	return p
}

// ipProto maps "tcp" and "udp" to their IP protocol numbers.
func ipProto(proto string) (uint8, bool) {
	switch proto {
	case "tcp":
		return unix.IPPROTO_TCP, true
	case "udp":
		return unix.IPPROTO_UDP, true
	}
	return 0, false
}

func (f *Finder) owner(proto string, local, remote netip.AddrPort) event.Process {
	if p, ok := f.fromLineage(proto, local, remote, false); ok {
		return p
	}
	ipproto, ok := ipProto(proto)
	if !ok {
		return event.Process{Unknown: "unsupported protocol " + proto}
	}
	if !local.IsValid() || local.Port() == 0 {
		return event.Process{Unknown: "no local address"}
	}
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	if remote.IsValid() {
		remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	}
	sock, err := f.socket(ipproto, local, remote)
	if err != nil {
		if errors.Is(err, errNoSocket) {
			return event.Process{Unknown: "no socket"}
		}
		if f.warned.CompareAndSwap(false, true) {
			f.log.Warn("proc: socket lookup failed; flows may lack their process", "err", err)
		}
		return event.Process{Unknown: "socket lookup: " + err.Error()}
	}
	if sock.inode == 0 {
		// TIME_WAIT and request sockets have no inode: already closed.
		return event.Process{UID: int(sock.uid), Unknown: "socket closed"}
	}
	pid := f.pid(sock.inode)
	if pid == 0 {
		return event.Process{UID: int(sock.uid), Unknown: "no process holds the socket"}
	}
	if p, ok := f.procs.get(pid); ok {
		return p
	}
	p := info(int(pid), &f.cache)
	if p.Unknown != "" {
		p.UID = int(sock.uid)
		return p
	}
	f.procs.put(p)
	return p
}

// socket finds the socket in the Finder's own namespace: see lookupSocket.
func (f *Finder) socket(proto uint8, local, remote netip.AddrPort) (diagSocket, error) {
	return lookupSocket(f.diag, proto, local, remote)
}

// lookupSocket finds a socket through c: by exact lookup when both
// addresses are known, else (or if that finds nothing) by a dump of
// sockets on the local port.
func lookupSocket(c *diagConn, proto uint8, local, remote netip.AddrPort) (diagSocket, error) {
	exactRemote := remote
	if !remote.IsValid() && proto == unix.IPPROTO_UDP {
		// A zero remote finds unconnected UDP sockets without a dump.
		exactRemote = netip.AddrPortFrom(unspecified(local.Addr()), 0)
	}
	if exactRemote.IsValid() && exactRemote.Addr().Is4() == local.Addr().Is4() {
		s, err := c.exact(proto, local, exactRemote)
		if err == nil {
			return s, nil
		}
		if err != nil && !errors.Is(err, errNoSocket) {
			return diagSocket{}, err
		}
	}
	if remote.IsValid() {
		// The exact lookup is authoritative: the socket is gone.
		return diagSocket{}, errNoSocket
	}
	// The dump walks the kernel's whole socket table (milliseconds).
	var best diagSocket
	bestScore := 0
	families := []uint8{unix.AF_INET6}
	if local.Addr().Is4() {
		// IPv4 traffic may come from an IPv4-mapped AF_INET6 socket.
		families = []uint8{unix.AF_INET, unix.AF_INET6}
	}
	for _, fam := range families {
		err := c.dump(proto, fam, local.Port(), func(s diagSocket) bool {
			if sc := score(s, local, remote); sc > bestScore {
				best, bestScore = s, sc
			}
			return true
		})
		if err != nil {
			return diagSocket{}, err
		}
		if bestScore == perfect(remote) {
			break
		}
	}
	if bestScore == 0 {
		return diagSocket{}, errNoSocket
	}
	return best, nil
}

func unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// perfect is the best score a socket can have for this lookup.
func perfect(remote netip.AddrPort) int {
	if remote.IsValid() {
		return 1 + 4 + 2 + 8
	}
	return 1 + 4 + 8
}

// score ranks how well a dumped socket matches: 0 is no match; exact
// addresses beat wildcards, and a live socket beats a closed one.
func score(s diagSocket, local, remote netip.AddrPort) int {
	sc := 1
	switch la := s.local.Addr().Unmap(); {
	case la == local.Addr():
		sc += 4
	case la.IsUnspecified():
	default:
		return 0
	}
	if remote.IsValid() {
		switch ra := s.remote.Addr().Unmap(); {
		case ra == remote.Addr() && s.remote.Port() == remote.Port():
			sc += 2
		case ra.IsUnspecified():
		default:
			return 0
		}
	}
	if s.inode != 0 {
		sc += 8
	}
	return sc
}

// pid returns the process holding socket inode, or 0: from the inode
// cache if a recent scan saw it, else by scanning recently matched
// processes first, then every process, newest first.
func (f *Finder) pid(inode uint32) int32 {
	s := f.pool.Get().(*scanner)
	defer f.pool.Put(s)
	if c, ok := f.inodes.get(inode); ok && s.holdsAt(c.pid, c.fd, inode) {
		f.remember(c.pid)
		return c.pid
	}
	var recent [recentCap]int32
	f.mu.Lock()
	n := copy(recent[:], f.recent[:f.nrecent])
	f.mu.Unlock()
	found := int32(0)
	s.seen = s.seen[:0]
	for _, pid := range recent[:n] {
		fd := s.scan(pid, inode)
		if fd >= 0 {
			found = pid
			break
		}
		if fd == -2 {
			f.forget(pid)
		}
	}
	if found == 0 && s.listPids() == nil {
	outer:
		for _, pid := range s.pids {
			for _, r := range recent[:n] {
				if r == pid {
					continue outer
				}
			}
			if s.scan(pid, inode) >= 0 {
				found = pid
				break
			}
		}
	}
	f.inodes.add(s.seen)
	if len(s.seen) > 4096 {
		s.seen = make([]fdSocket, 0, 256) // do not pool a huge buffer
	}
	if found != 0 {
		f.remember(found)
	}
	return found
}

// resetCaches forgets every cached pid, inode and process (for benchmarks).
func (f *Finder) resetCaches() {
	f.mu.Lock()
	f.nrecent = 0
	f.mu.Unlock()
	f.inodes.mu.Lock()
	f.inodes.cur, f.inodes.old = nil, nil
	f.inodes.mu.Unlock()
	f.procs.mu.Lock()
	f.procs.m = nil
	f.procs.mu.Unlock()
	f.cache.mu.Lock()
	f.cache.m = nil
	f.cache.mu.Unlock()
}

// forget drops an exited pid from the recent list.
func (f *Finder) forget(pid int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i < f.nrecent; i++ {
		if f.recent[i] == pid {
			copy(f.recent[i:f.nrecent], f.recent[i+1:f.nrecent])
			f.nrecent--
			return
		}
	}
}

// remember moves pid to the front of the recent list.
func (f *Finder) remember(pid int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := 0
	for i < f.nrecent && f.recent[i] != pid {
		i++
	}
	if i == f.nrecent {
		if f.nrecent < recentCap {
			f.nrecent++
		}
		i = f.nrecent - 1
	}
	copy(f.recent[1:i+1], f.recent[:i])
	f.recent[0] = pid
}
