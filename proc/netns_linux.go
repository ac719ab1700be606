package proc

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/event"
)

// netnsRescan is how often at most the network namespaces are listed again
// after a forwarded flow's socket was found in none of the known ones.
const netnsRescan = 250 * time.Millisecond

// namespaces keeps a sock_diag socket in each network namespace other than
// the Finder's own (containers'), and which one last held each address.
type namespaces struct {
	mu      sync.Mutex
	self    uint64
	conns   map[uint64]*diagConn // netns inode → a sock_diag socket inside it
	byAddr  map[netip.Addr]uint64
	scanned time.Time
}

// ForwardedOwner is Owner for a flow the host routed rather than sent (or a
// DNS query redirected to the resolver from a container): a container's,
// whose socket lives in the container's network namespace. As with Owner,
// a zero remote matches any.
// It finds the namespace that has the socket (sock_diag inside each), then
// the process holding it (socket inodes are unique across namespaces, so
// the /proc scan is Owner's), and names its container from its cgroup.
func (f *Finder) ForwardedOwner(proto string, local, remote netip.AddrPort) event.Process {
	return f.counted(f.forwardedOwner(proto, local, remote))
}

func (f *Finder) forwardedOwner(proto string, local, remote netip.AddrPort) event.Process {
	// The kernel's records hold containers' sockets too (global pids).
	if p, ok := f.fromLineage(proto, local, remote, true); ok {
		return p
	}
	ipproto, ok := ipProto(proto)
	if !ok {
		return event.Process{Unknown: "container; no socket lookup for " + proto}
	}
	if !local.IsValid() || local.Port() == 0 {
		return event.Process{Unknown: "container; no local address"}
	}
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	if remote.IsValid() {
		remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	}
	sock, err := f.netns.find(ipproto, local, remote)
	if err != nil {
		return event.Process{Unknown: "container: " + err.Error()}
	}
	if sock.inode == 0 {
		return event.Process{UID: int(sock.uid), Unknown: "container: socket closed"}
	}
	pid := f.pid(sock.inode)
	if pid == 0 {
		return event.Process{UID: int(sock.uid), Unknown: "container: no process holds the socket"}
	}
	p := info(int(pid), &f.cache)
	p.Container = containerID(int(pid))
	return p
}

// find looks the socket up in the namespace that last held local's
// address, else in every other namespace, listing them again (at most
// every netnsRescan) when none has it.
func (n *namespaces) find(proto uint8, local, remote netip.AddrPort) (diagSocket, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conns == nil {
		n.conns = make(map[uint64]*diagConn)
		n.byAddr = make(map[netip.Addr]uint64)
		st, err := os.Stat("/proc/thread-self/ns/net")
		if err != nil {
			return diagSocket{}, fmt.Errorf("own network namespace: %w", err)
		}
		n.self = st.Sys().(*syscall.Stat_t).Ino
	}
	try := func(ino uint64) (diagSocket, bool, error) {
		c := n.conns[ino]
		if c == nil {
			return diagSocket{}, false, nil
		}
		s, err := lookupSocket(c, proto, local, remote)
		if errors.Is(err, errNoSocket) {
			return diagSocket{}, false, nil
		}
		if err != nil {
			// The namespace is gone (or its socket broke): drop it.
			c.close()
			delete(n.conns, ino)
			return diagSocket{}, false, nil
		}
		n.byAddr[local.Addr()] = ino
		return s, true, nil
	}
	if ino, ok := n.byAddr[local.Addr()]; ok {
		if s, ok, err := try(ino); ok || err != nil {
			return s, err
		}
	}
	for pass := 0; pass < 2; pass++ {
		for ino := range n.conns {
			if s, ok, err := try(ino); ok || err != nil {
				return s, err
			}
		}
		if pass == 0 && time.Since(n.scanned) >= netnsRescan {
			n.rescan()
			continue
		}
		break
	}
	return diagSocket{}, errors.New("socket not found in any network namespace")
}

// maxNetns bounds the namespaces watched (one netlink socket each).
const maxNetns = 256

// rescan lists the network namespaces that processes are in and opens a
// sock_diag socket inside each new one; the ones no process is in any
// more are closed.
func (n *namespaces) rescan() {
	n.scanned = time.Now()
	s := newScanner()
	if s.listPids() != nil {
		return
	}
	alive := map[uint64]bool{}
	for _, pid := range s.pids {
		path := "/proc/" + strconv.Itoa(int(pid)) + "/ns/net"
		st, err := os.Stat(path)
		if err != nil {
			continue
		}
		ino := st.Sys().(*syscall.Stat_t).Ino
		if ino == n.self || alive[ino] {
			continue
		}
		alive[ino] = true
		if n.conns[ino] != nil || len(n.conns) >= maxNetns {
			continue
		}
		fd, err := socketInNetns(path)
		if err != nil {
			continue // the process left; another may name the namespace
		}
		c := newDiagConn()
		c.fd, c.fixed = fd, true
		n.conns[ino] = c
	}
	for ino, c := range n.conns {
		if !alive[ino] {
			c.close()
			delete(n.conns, ino)
		}
	}
	for a, ino := range n.byAddr {
		if !alive[ino] {
			delete(n.byAddr, a)
		}
	}
}

func (n *namespaces) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ino, c := range n.conns {
		c.close()
		delete(n.conns, ino)
	}
}

// socketInNetns opens a NETLINK_SOCK_DIAG socket inside the network
// namespace at nsPath. It switches a dedicated, locked thread into the
// namespace and back; if it cannot switch back, that thread ends with its
// goroutine instead of running anything else in the wrong namespace.
func socketInNetns(nsPath string) (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, err}
			return
		}
		defer unix.Close(self)
		target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, err}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("setns %s: %w", nsPath, err)}
			return
		}
		fd, serr := openDiagSocket()
		if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
			if serr == nil {
				unix.Close(fd)
			}
			ch <- result{-1, fmt.Errorf("setns back: %w", err)} // the thread stays locked and ends
			return
		}
		runtime.UnlockOSThread()
		ch <- result{fd, serr}
	}()
	r := <-ch
	return r.fd, r.err
}

// containerRe finds a container's ID in a cgroup path: docker's
// (docker-ID.scope, /docker/ID) and containerd's or podman's alike.
var containerRe = regexp.MustCompile(`(?m)(?:docker|libpod|cri-containerd)[-/]([0-9a-f]{64})(?:\.scope)?(?:/|$)`)

// containerID returns the short ID of the container a process runs in,
// from /proc/PID/cgroup, or "".
func containerID(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	return parseContainerID(b)
}

// parseContainerID finds a container's short ID in /proc/PID/cgroup.
func parseContainerID(cgroup []byte) string {
	if m := containerRe.FindSubmatch(cgroup); m != nil {
		return string(m[1][:12])
	}
	return ""
}
