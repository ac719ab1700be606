package lineage

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// tracefsDirs are where tracefs is mounted when it is.
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// tracepointIDs returns the ids of the tracepoints group/names, from
// tracefs. The agent often runs where none is mounted (a container's or
// `ip netns exec`'s fresh /sys): then they are read from a private mount,
// on one locked thread of its own mount namespace, as cgroup2Private does
// for cgroup2.
func tracepointIDs(group string, names []string) ([]uint64, error) {
	read := func(dir string) ([]uint64, error) {
		ids := make([]uint64, len(names))
		for i, n := range names {
			id, err := readID(filepath.Join(dir, "events", group, n, "id"))
			if err != nil {
				return nil, err
			}
			ids[i] = id
		}
		return ids, nil
	}
	for _, d := range tracefsDirs {
		if ids, err := read(d); err == nil {
			return ids, nil
		}
	}
	var ids []uint64
	err := onPrivateMount("tracefs", tracefsDirs[0], func() (err error) {
		ids, err = read(tracefsDirs[0])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tracepoint ids of %s/%v: %w", group, names, err)
	}
	return ids, nil
}

func readID(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// tracepointLink is a tracepoint program attached through a perf event;
// closing the event detaches it.
type tracepointLink struct{ fd int }

func (l *tracepointLink) Close() error {
	if l.fd < 0 {
		return nil
	}
	err := unix.Close(l.fd)
	l.fd = -1
	return err
}

// attachTracepoint runs prog at every hit of the tracepoint with this id,
// on any CPU (a tracepoint event's BPF program is the event's, not the
// CPU's).
func attachTracepoint(prog *ebpf.Program, id uint64) (*tracepointLink, error) {
	attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Config: id, Sample_type: unix.PERF_SAMPLE_RAW, Sample: 1, Wakeup: 1}
	attr.Size = uint32(unsafe.Sizeof(attr))
	fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("perf_event_open: %w", err)
	}
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, prog.FD()); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach the program: %w", err)
	}
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("enable the event: %w", err)
	}
	return &tracepointLink{fd: fd}, nil
}

// attachSyscallTracepoints attaches progs to syscalls/names, all or none.
func attachSyscallTracepoints(names []string, progs []*ebpf.Program) ([]*tracepointLink, error) {
	ids, err := tracepointIDs("syscalls", names)
	if err != nil {
		return nil, err
	}
	var links []*tracepointLink
	undo := func() {
		for _, l := range links {
			l.Close()
		}
	}
	for i, n := range names {
		l, err := attachTracepoint(progs[i], ids[i])
		if err != nil {
			undo()
			return nil, fmt.Errorf("tracepoint syscalls/%s: %w", n, err)
		}
		links = append(links, l)
	}
	return links, nil
}
