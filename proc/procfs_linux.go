package proc

import (
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Small /proc reads with raw syscalls: open, one read, close. os.Open would
// add a poller registration and os.ReadFile an fstat and a second read,
// and on a VM every syscall counts.

// procFile builds "/proc/PID/NAME\x00" in buf.
func procFile(buf []byte, pid int, name string) []byte {
	b := append(buf[:0], "/proc/"...)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, '/')
	b = append(b, name...)
	return append(b, 0)
}

// readProc reads up to len(buf) bytes of /proc/PID/NAME in one read: the
// files it is used for are produced whole by the first read.
func readProc(pid int, name string, buf []byte) ([]byte, error) {
	var pb [48]byte
	path := procFile(pb[:], pid, name)
	atFDCWD := unix.AT_FDCWD
	fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFDCWD), uintptr(unsafe.Pointer(&path[0])),
		uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
	if e != 0 {
		return nil, e
	}
	defer unix.Close(int(fd))
	n, err := unix.Read(int(fd), buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// readExe returns the target of /proc/PID/exe, or "" (kernel threads, zombies).
func readExe(pid int) string {
	var pb [48]byte
	var lb [unix.PathMax]byte
	path := procFile(pb[:], pid, "exe")
	atFDCWD := unix.AT_FDCWD
	n, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(atFDCWD), uintptr(unsafe.Pointer(&path[0])),
		uintptr(unsafe.Pointer(&lb[0])), uintptr(len(lb)), 0, 0)
	if e != 0 {
		return ""
	}
	return string(lb[:n])
}

// exeIs reports whether /proc/PID/exe is exe, without allocating.
func exeIs(pid int, exe string) bool {
	var pb [48]byte
	var lb [unix.PathMax]byte
	path := procFile(pb[:], pid, "exe")
	atFDCWD := unix.AT_FDCWD
	n, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(atFDCWD), uintptr(unsafe.Pointer(&path[0])),
		uintptr(unsafe.Pointer(&lb[0])), uintptr(len(lb)), 0, 0)
	return e == 0 && exe != "" && string(lb[:n]) == exe
}
