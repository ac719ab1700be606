package resolver

import (
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"
)

// Bounds of the TCP side. UDP has its own (maxUpstreamWaiting).
const (
	// MaxTCPConns is how many TCP clients are served at once. Further
	// connections wait in the kernel's accept queue until one ends: a
	// flood of connections (5,000 held 5,178 sockets before) costs a
	// bounded number of sockets and goroutines, and UDP stays answered.
	MaxTCPConns = 512
	// maxTCPQueries is how many queries one TCP connection may ask before
	// it is closed (the client reconnects).
	maxTCPQueries = 128
	// tcpReadTimeout bounds the wait for a new connection's first query.
	tcpReadTimeout = 2 * time.Second
	tcpIdle        = 10 * time.Second // between queries, when not busy
	tcpIdleBusy    = 500 * time.Millisecond
)

// tcpListener bounds l to MaxTCPConns connections (x/net's LimitListener)
// and counts the open ones and their high-water mark.
func (r *Resolver) tcpListener(l *net.TCPListener) net.Listener {
	return netutil.LimitListener(&countingListener{TCPListener: l, r: r}, MaxTCPConns)
}

// drainTCP takes, at shutdown, the connections still waiting in l's accept
// queue (never served: the bound was reached), closes them and returns how
// many there were. The server's own Accept is refused from now on too.
func (r *Resolver) drainTCP(l *net.TCPListener) int64 {
	r.closing.Store(true)
	var n int64
	if rc, err := l.SyscallConn(); err == nil {
		// accept4 until the queue is empty (EAGAIN: the socket is
		// non-blocking), without waiting for more.
		_ = rc.Control(func(fd uintptr) {
			for {
				c, _, err := unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
				if err != nil {
					return
				}
				unix.Close(c)
				n++
			}
		})
	}
	return n + r.tcpRefused.Swap(0)
}

// tcpIdleTimeout is how long an idle TCP connection is kept: shorter once
// most slots are taken, so idle clients make room for waiting ones.
func (r *Resolver) tcpIdleTimeout() time.Duration {
	if r.tcpOpen.Load() > MaxTCPConns*3/4 {
		return tcpIdleBusy
	}
	return tcpIdle
}

type countingListener struct {
	*net.TCPListener
	r *Resolver
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			return nil, err
		}
		if l.r.closing.Load() {
			// Shutting down: not served, counted by drainTCP.
			l.r.tcpRefused.Add(1)
			c.Close()
			continue
		}
		n := l.r.tcpOpen.Add(1)
		for {
			h := l.r.tcpHigh.Load()
			if n <= h || l.r.tcpHigh.CompareAndSwap(h, n) {
				break
			}
		}
		cc := &countedConn{TCPConn: c, r: l.r}
		l.r.tcpConns.Store(cc, struct{}{})
		return cc, nil
	}
}

type countedConn struct {
	*net.TCPConn
	r       *Resolver
	closed  atomic.Bool
	counted atomic.Bool // checked for an unread query at shutdown
}

// Close counts, during shutdown, a connection closed with bytes of a query
// unread: the server stopped reading it, and the query is lost.
func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.r.tcpOpen.Add(-1)
		if c.r.closing.Load() {
			c.countUnread()
		}
		c.r.tcpConns.Delete(c)
	}
	return c.TCPConn.Close()
}

// countUnread counts c once if it holds bytes of a query nobody read.
func (c *countedConn) countUnread() {
	if !c.counted.Swap(true) && unread(c.TCPConn) > 0 {
		c.r.tcpUnread.Add(1)
	}
}

// countUnreadTCP checks, once shutdown has given up waiting, the
// connections the server has not closed yet.
func (r *Resolver) countUnreadTCP() {
	r.tcpConns.Range(func(k, _ any) bool {
		k.(*countedConn).countUnread()
		return true
	})
}

// unread returns how many received bytes c holds that were not read yet.
func unread(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n
}
