package filemon

import (
	"bytes"
	"strconv"
)

// procStat is what filemon reads from /proc/PID/stat.
type procStat struct {
	comm    string
	state   byte
	ppid    int
	kthread bool // PF_KTHREAD
}

const pfKthread = 0x00200000

// parseStat parses /proc/PID/stat. The command name is in parentheses and
// may itself contain spaces and parentheses, so the fields are found after
// the last ')'.
func parseStat(b []byte) (procStat, bool) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open || end+2 > len(b) {
		return procStat{}, false
	}
	fields := bytes.Fields(b[end+1:])
	if len(fields) < 7 || len(fields[0]) != 1 {
		return procStat{}, false
	}
	ppid, err := strconv.Atoi(string(fields[1]))
	if err != nil || ppid < 0 {
		return procStat{}, false
	}
	flags, err := strconv.ParseUint(string(fields[6]), 10, 64)
	if err != nil {
		return procStat{}, false
	}
	return procStat{comm: string(b[open+1 : end]), state: fields[0][0], ppid: ppid, kthread: flags&pfKthread != 0}, true
}

// parseStatusUID returns the real uid from /proc/PID/status.
func parseStatusUID(b []byte) (int, bool) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if rest, ok := bytes.CutPrefix(line, []byte("Uid:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 0 {
				return 0, false
			}
			uid, err := strconv.Atoi(string(f[0]))
			return uid, err == nil && uid >= 0
		}
	}
	return 0, false
}

// cmdline turns /proc/PID/cmdline (NUL-separated arguments) into one
// string with single spaces.
func cmdline(b []byte) string {
	b = bytes.TrimRight(b, "\x00")
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}
