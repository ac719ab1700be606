package proc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// sock_diag (NETLINK_SOCK_DIAG, inet_diag) without a library: the exact
// lookup (a request without NLM_F_DUMP) is the cheap one, and the library we
// have (vishvananda/netlink SocketGet) only dumps with a port filter and a
// single address family, so it misses IPv4-mapped AF_INET6 sockets and
// allocates a fresh netlink socket per call. See diag_bench_test.go.

const (
	sizeofNlmsghdr   = 16
	sizeofDiagReq    = 56 // struct inet_diag_req_v2
	sizeofDiagMsg    = 72 // struct inet_diag_msg
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	noCookie         = ^uint32(0)
	allStates        = ^uint32(0)
)

// diagSocket is what sock_diag says about one socket.
type diagSocket struct {
	family uint8
	state  uint8
	local  netip.AddrPort
	remote netip.AddrPort
	uid    uint32
	inode  uint32
}

var errNoSocket = errors.New("no such socket")

// diagConn is one NETLINK_SOCK_DIAG socket, used under mu.
type diagConn struct {
	mu  sync.Mutex
	fd  int // -1 until opened
	seq uint32
	// sendErr is the error of the last request's send, reported by receive.
	sendErr error
	req     [sizeofNlmsghdr + sizeofDiagReq]byte
	buf     []byte
	// fixed: the socket was opened in another namespace; once closed it
	// is not reopened (a new one would be in the caller's namespace).
	fixed bool
}

func newDiagConn() *diagConn {
	return &diagConn{fd: -1, buf: make([]byte, 32<<10)}
}

func (c *diagConn) open() error {
	if c.fd >= 0 {
		return nil
	}
	if c.fixed {
		return errors.New("proc: sock_diag socket of another namespace was closed")
	}
	fd, err := openDiagSocket()
	if err != nil {
		return err
	}
	c.fd = fd
	return nil
}

// openDiagSocket opens a NETLINK_SOCK_DIAG socket in the calling thread's
// network namespace.
func openDiagSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("proc: open sock_diag: %w", err)
	}
	// A reply that never comes must not hang a lookup forever.
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("proc: sock_diag timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("proc: bind sock_diag: %w", err)
	}
	return fd, nil
}

func (c *diagConn) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// reset drops the socket after an error so that stale replies cannot
// confuse the next request; it is reopened on next use.
func (c *diagConn) reset() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// exact asks the kernel for the one socket with these addresses (the
// lookup the kernel does for an incoming packet, so a UDP socket bound to a
// wildcard address or not connected matches too). An IPv4 query also finds
// IPv4-mapped AF_INET6 sockets. Both addresses must be valid and of the
// same family.
func (c *diagConn) exact(proto uint8, local, remote netip.AddrPort) (diagSocket, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.open(); err != nil {
		return diagSocket{}, err
	}
	src, dst := local, remote
	if proto == unix.IPPROTO_UDP {
		// udp_dump_one passes the request's src as the packet's source:
		// "src and dst are swapped for historical reasons" (udp_diag.c).
		src, dst = remote, local
	}
	seq := c.request(proto, 0, src, dst)
	var found diagSocket
	var got bool
	err := c.receive(seq, func(s diagSocket) bool {
		found, got = s, true
		return false
	})
	if errors.Is(err, unix.ENOENT) || (err == nil && !got) {
		return diagSocket{}, errNoSocket
	}
	if err != nil {
		return diagSocket{}, err
	}
	return found, nil
}

// dump lists the sockets of one family and protocol whose local port is
// port; the kernel filters by port, fn sees each (return false to stop).
func (c *diagConn) dump(proto uint8, family uint8, port uint16, fn func(diagSocket) bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.open(); err != nil {
		return err
	}
	var zero netip.Addr
	if family == unix.AF_INET6 {
		zero = netip.IPv6Unspecified()
	} else {
		zero = netip.IPv4Unspecified()
	}
	seq := c.request(proto, unix.NLM_F_DUMP, netip.AddrPortFrom(zero, port), netip.AddrPortFrom(zero, 0))
	return c.receive(seq, fn)
}

// request sends one inet_diag_req_v2 and returns its sequence number.
func (c *diagConn) request(proto uint8, flags uint16, src, dst netip.AddrPort) uint32 {
	c.seq++
	b := c.req[:]
	clear(b)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|flags)
	ne.PutUint32(b[8:], c.seq)
	r := b[sizeofNlmsghdr:]
	if src.Addr().Is4() {
		r[0] = unix.AF_INET
	} else {
		r[0] = unix.AF_INET6
	}
	r[1] = proto
	ne.PutUint32(r[4:], allStates)
	binary.BigEndian.PutUint16(r[8:], src.Port())
	binary.BigEndian.PutUint16(r[10:], dst.Port())
	putAddr(r[12:28], src.Addr())
	putAddr(r[28:44], dst.Addr())
	ne.PutUint32(r[48:], noCookie)
	ne.PutUint32(r[52:], noCookie)
	// Bound netlink sockets talk to the kernel by default: write and read
	// need no address (and, unlike sendto and recvfrom, allocate none).
	_, c.sendErr = unix.Write(c.fd, b)
	return c.seq
}

func putAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// receive reads the replies to request seq until NLMSG_DONE, an error, a
// single non-multipart reply, or fn returning false (the rest of a dump is
// then drained so the socket stays clean).
func (c *diagConn) receive(seq uint32, fn func(diagSocket) bool) error {
	if c.sendErr != nil {
		err := c.sendErr
		c.sendErr = nil
		c.reset()
		return fmt.Errorf("proc: sock_diag send: %w", err)
	}
	want := true
	for {
		n, err := unix.Read(c.fd, c.buf)
		if err != nil {
			c.reset()
			return fmt.Errorf("proc: sock_diag receive: %w", err)
		}
		b := c.buf[:n]
		for len(b) >= sizeofNlmsghdr {
			ne := binary.NativeEndian
			l := int(ne.Uint32(b[0:]))
			typ := ne.Uint16(b[4:])
			flags := ne.Uint16(b[6:])
			mseq := ne.Uint32(b[8:])
			if l < sizeofNlmsghdr || l > len(b) {
				c.reset()
				return errors.New("proc: sock_diag: malformed reply")
			}
			body := b[sizeofNlmsghdr:l]
			b = b[min(nlmAlign(l), len(b)):]
			if mseq != seq {
				continue // a stale reply to an abandoned request
			}
			switch typ {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(body) < 4 {
					return errors.New("proc: sock_diag: short error")
				}
				if e := int32(ne.Uint32(body)); e != 0 {
					return unix.Errno(-e)
				}
				return nil
			case sockDiagByFamily:
				if want {
					if s, ok := parseDiagMsg(body); ok {
						want = fn(s)
					}
				}
				if flags&unix.NLM_F_MULTI == 0 {
					return nil
				}
			}
		}
	}
}

func nlmAlign(n int) int { return (n + 3) &^ 3 }

// parseDiagMsg decodes a struct inet_diag_msg.
func parseDiagMsg(b []byte) (diagSocket, bool) {
	if len(b) < sizeofDiagMsg {
		return diagSocket{}, false
	}
	s := diagSocket{family: b[0], state: b[1]}
	sport := binary.BigEndian.Uint16(b[4:])
	dport := binary.BigEndian.Uint16(b[6:])
	var la, ra netip.Addr
	if s.family == unix.AF_INET {
		la = netip.AddrFrom4([4]byte(b[8:12]))
		ra = netip.AddrFrom4([4]byte(b[24:28]))
	} else {
		la = netip.AddrFrom16([16]byte(b[8:24]))
		ra = netip.AddrFrom16([16]byte(b[24:40]))
	}
	s.local = netip.AddrPortFrom(la, sport)
	s.remote = netip.AddrPortFrom(ra, dport)
	s.uid = binary.NativeEndian.Uint32(b[64:])
	s.inode = binary.NativeEndian.Uint32(b[68:])
	return s, true
}
