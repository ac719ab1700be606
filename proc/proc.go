// Package proc says who is behind a pid or a socket: Info reads what /proc
// says about a process and its parents, and Finder maps a TCP or UDP socket,
// named by its addresses, to the process that holds it (sock_diag netlink for
// the socket's inode, then /proc/PID/fd for the holder).
package proc

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/harden-runner/harden-runner/event"
)

// maxParents caps the parent chain that Info follows.
const maxParents = 32

// Unknown reasons set in event.Process.Unknown.
const (
	unknownExited = "exited"
)

// Info returns what /proc says about pid: its executable (readlink
// /proc/PID/exe), its command line (arguments joined by single spaces), its
// real uid and its parent chain, nearest first, up to but excluding pid 0 and
// at most 32 links. A pid that no longer exists gives PID set and
// Unknown="exited". Info is safe for concurrent use.
func Info(pid int) event.Process {
	p := event.Process{PID: pid}
	if pid <= 0 {
		p.Unknown = "invalid pid"
		return p
	}
	var buf [4096]byte
	st, err := readStatus(pid, buf[:])
	if err != nil {
		p.Unknown = unknownExited
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errNoSuchProcess) {
			p.Unknown = "unreadable: " + err.Error()
		}
		return p
	}
	p.UID = st.uid
	p.Exe = readExe(pid)
	p.Cmdline = readCmdline(pid, buf[:])
	ppid := st.ppid
	for len(p.Parents) < maxParents && ppid > 0 {
		pst, err := readStatus(ppid, buf[:])
		if err != nil {
			// The parent exited between our reads: say who it was.
			p.Parents = append(p.Parents, event.Ancestor{PID: ppid})
			break
		}
		p.Parents = append(p.Parents, event.Ancestor{
			PID:     ppid,
			Exe:     readExe(ppid),
			Cmdline: readCmdline(ppid, buf[:]),
		})
		if pst.ppid == ppid {
			break
		}
		ppid = pst.ppid
	}
	return p
}

// status is what Info needs from /proc/PID/status.
type status struct {
	ppid int
	uid  int
}

var errNoSuchProcess = errors.New("no such process")

// readStatus reads the PPid and real Uid lines of /proc/PID/status.
func readStatus(pid int, buf []byte) (status, error) {
	b, err := readSmall(procPath(pid, "status"), buf)
	if err != nil {
		return status{}, err
	}
	st := status{ppid: -1, uid: -1}
	for len(b) > 0 && (st.ppid < 0 || st.uid < 0) {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("PPid:")):
			st.ppid = firstInt(line[len("PPid:"):])
		case bytes.HasPrefix(line, []byte("Uid:")):
			st.uid = firstInt(line[len("Uid:"):])
		}
	}
	if st.ppid < 0 || st.uid < 0 {
		// A zombie being reaped can leave status nearly empty.
		return status{}, errNoSuchProcess
	}
	return st, nil
}

// firstInt parses the first decimal field of b (skipping blanks); -1 if none.
func firstInt(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	n, digits := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int(b[i]-'0')
		digits++
		if digits > 10 {
			return -1
		}
	}
	if digits == 0 {
		return -1
	}
	return n
}

// readExe returns the target of /proc/PID/exe, or "" (kernel threads, zombies).
func readExe(pid int) string {
	exe, err := os.Readlink(procPath(pid, "exe"))
	if err != nil {
		return ""
	}
	return exe
}

// readCmdline returns /proc/PID/cmdline with its NUL separators turned into
// spaces and the trailing NUL dropped. Arguments longer than buf are cut.
func readCmdline(pid int, buf []byte) string {
	b, err := readSmall(procPath(pid, "cmdline"), buf)
	if err != nil || len(b) == 0 {
		return ""
	}
	b = bytes.TrimRight(b, "\x00")
	for i, c := range b {
		if c == 0 {
			b[i] = ' '
		}
	}
	return string(b)
}

// readSmall reads up to len(buf) bytes of a /proc file into buf.
func readSmall(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := 0
	for n < len(buf) {
		m, err := f.Read(buf[n:])
		n += m
		if err != nil || m == 0 {
			break
		}
	}
	return buf[:n], nil
}

func procPath(pid int, file string) string {
	var sb strings.Builder
	sb.Grow(len("/proc//") + 10 + len(file))
	sb.WriteString("/proc/")
	sb.WriteString(strconv.Itoa(pid))
	sb.WriteByte('/')
	sb.WriteString(file)
	return sb.String()
}
