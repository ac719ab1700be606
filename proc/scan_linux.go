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
	path  [40]byte
	want  [32]byte // "socket:[INODE]"
	nwant int
	pids  []int32
}

func newScanner() *scanner { return &scanner{pids: make([]int32, 0, 1024)} }

// setInode prepares the link text to look for.
func (s *scanner) setInode(ino uint32) {
	b := append(s.want[:0], "socket:["...)
	b = strconv.AppendUint(b, uint64(ino), 10)
	b = append(b, ']')
	s.nwant = len(b)
}

// holds reports whether pid has the socket open.
func (s *scanner) holds(pid int32) bool {
	p := append(s.path[:0], "/proc/"...)
	p = strconv.AppendInt(p, int64(pid), 10)
	p = append(p, "/fd\x00"...)
	dfd, err := openDir(p)
	if err != nil {
		return false // gone, or a kernel thread's fd dir we may not read
	}
	defer unix.Close(dfd)
	want := s.want[:s.nwant]
	for {
		n, err := unix.Getdents(dfd, s.dents[:])
		if err != nil || n <= 0 {
			return false
		}
		for off := 0; off+19 < n; {
			reclen := int(*(*uint16)(unsafe.Pointer(&s.dents[off+16])))
			if reclen <= 19 || off+reclen > n {
				return false
			}
			name := off + 19
			off += reclen
			if s.dents[name] == '.' {
				continue
			}
			// The link of a socket is exactly len(want) bytes; anything
			// longer is cut at len(want)+1 and cannot match.
			l, err := readlinkAt(dfd, &s.dents[name], s.link[:s.nwant+1])
			if err != nil || l != s.nwant {
				continue
			}
			if string(s.link[:l]) == string(want) {
				return true
			}
		}
	}
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
	var n int64
	i := 0
	for ; i < len(b) && b[i] != 0; i++ {
		c := b[i]
		if c < '0' || c > '9' || i >= 9 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return int32(n), i > 0
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
	n, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dfd),
		uintptr(unsafe.Pointer(name)), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
