package proc

import (
	"slices"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// scanner finds the process that has a socket inode open by reading
// /proc/PID/fd links. It makes no allocations once warm: paths are built in
// fixed buffers and passed to the syscalls as NUL-terminated bytes.
// A scanner is used by one goroutine at a time (Finder pools them).
type scanner struct {
	dents [16 << 10]byte
	link  [32]byte
	path  [48]byte
	pids  []int32
	// seen lists the sockets that the last scan saw, for the inode cache.
	seen []fdSocket
}

// fdSocket is a socket inode that a process holds at fd.
type fdSocket struct {
	inode uint32
	pid   int32
	fd    int32
}

func newScanner() *scanner {
	return &scanner{pids: make([]int32, 0, 1024), seen: make([]fdSocket, 0, 256)}
}

// scan reads every fd link of pid, appends the sockets it holds to s.seen,
// and reports the fd at which it holds inode (-1 if it does not, -2 if pid
// no longer exists). The whole
// table is read even after a match: the sockets that the process opened
// since are the next lookups' (see Finder's inode cache).
func (s *scanner) scan(pid int32, inode uint32) int32 {
	p := append(s.path[:0], "/proc/"...)
	p = strconv.AppendInt(p, int64(pid), 10)
	p = append(p, "/fd\x00"...)
	dfd, err := openDir(p)
	if err == unix.ENOENT {
		return -2
	}
	if err != nil {
		return -1 // a kernel thread's fd dir we may not read
	}
	defer unix.Close(dfd)
	found := int32(-1)
	for {
		n, err := unix.Getdents(dfd, s.dents[:])
		if err != nil || n <= 0 {
			return found
		}
		for off := 0; off+19 < n; {
			reclen := int(*(*uint16)(unsafe.Pointer(&s.dents[off+16])))
			if reclen <= 19 || off+reclen > n {
				return found
			}
			name := off + 19
			off += reclen
			fd, ok := parseUint(s.dents[name:off])
			if !ok {
				continue // "." and ".."
			}
			l, err := readlinkAt(dfd, &s.dents[name], s.link[:])
			if err != nil {
				continue
			}
			ino, ok := parseSocketLink(s.link[:l])
			if !ok {
				continue
			}
			s.seen = append(s.seen, fdSocket{inode: ino, pid: pid, fd: int32(fd)})
			if ino == inode {
				found = int32(fd)
			}
		}
	}
}

// holdsAt reports whether pid still holds inode at fd: one readlink.
func (s *scanner) holdsAt(pid, fd int32, inode uint32) bool {
	p := append(s.path[:0], "/proc/"...)
	p = strconv.AppendInt(p, int64(pid), 10)
	p = append(p, "/fd/"...)
	p = strconv.AppendInt(p, int64(fd), 10)
	p = append(p, 0)
	atFDCWD := unix.AT_FDCWD
	l, err := readlinkAt(atFDCWD, &p[0], s.link[:])
	if err != nil {
		return false
	}
	ino, ok := parseSocketLink(s.link[:l])
	return ok && ino == inode
}

// parseSocketLink parses "socket:[INODE]".
func parseSocketLink(b []byte) (uint32, bool) {
	const head = "socket:["
	if len(b) < len(head)+2 || string(b[:len(head)]) != head || b[len(b)-1] != ']' {
		return 0, false
	}
	n, ok := parseUint(b[len(head) : len(b)-1])
	return uint32(n), ok && n <= 1<<32-1
}

// parseUint parses a decimal number that ends at the end of b or at a NUL.
func parseUint(b []byte) (uint64, bool) {
	var n uint64
	i := 0
	for ; i < len(b) && b[i] != 0; i++ {
		c := b[i]
		if c < '0' || c > '9' || i >= 19 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, i > 0
}

// listPids fills s.pids with every pid in /proc, highest first: a client
// that just connected is most likely a recent process.
func (s *scanner) listPids() error {
	dfd, err := openDir(append(s.path[:0], "/proc\x00"...))
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	s.pids = s.pids[:0]
	for {
		n, err := unix.Getdents(dfd, s.dents[:])
		if err != nil {
			return err
		}
		if n <= 0 {
			break
		}
		for off := 0; off+19 < n; {
			reclen := int(*(*uint16)(unsafe.Pointer(&s.dents[off+16])))
			if reclen <= 19 || off+reclen > n {
				break
			}
			pid, ok := parsePid(s.dents[off+19 : off+reclen])
			off += reclen
			if ok {
				s.pids = append(s.pids, pid)
			}
		}
	}
	slices.Sort(s.pids)
	slices.Reverse(s.pids)
	return nil
}

// parsePid parses a NUL-terminated decimal directory name.
func parsePid(b []byte) (int32, bool) {
	n, ok := parseUint(b)
	return int32(n), ok && n < 1<<31
}

func openDir(path []byte) (int, error) {
	atFDCWD := unix.AT_FDCWD
	fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFDCWD),
		uintptr(unsafe.Pointer(&path[0])),
		uintptr(unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC), 0, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

// readlinkAt is readlinkat(2) on a NUL-terminated name, without allocating.
func readlinkAt(dfd int, name *byte, buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, unix.EINVAL
	}
	n, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dfd),
		uintptr(unsafe.Pointer(name)), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
