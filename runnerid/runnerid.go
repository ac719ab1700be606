// Package runnerid pins the runner's job process (Runner.Worker) once, at
// the start of the job, and afterwards tells it apart from every other
// process by what a workflow step cannot forge: its pid, its start time
// (which tells a reused pid apart) and the device and inode of its
// executable. A name, a command line (`exec -a`) or a copy of a binary
// called Runner.Worker is never enough.
//
// The real Runner.Worker is the one the runner's Runner.Listener started:
// a process whose executable is bin/Runner.Worker beside bin/Runner.Listener,
// and whose parent runs that Runner.Listener. At the start of the job (the
// harden-runner step is the first one) no step has run, so there is
// exactly one; a copy a step starts later is not the pinned process.
package runnerid

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// WorkerName is the executable name of the runner's job process.
const WorkerName = "Runner.Worker"

// ListenerName is the executable name of the runner's service process,
// which starts Runner.Worker for each job.
const ListenerName = "Runner.Listener"

// Identity is one process, pinned. The zero Identity matches nothing.
type Identity struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // clock ticks since boot (/proc/PID/stat field 22)
	Dev   uint64 `json:"dev"`   // of the executable
	Ino   uint64 `json:"ino"`
	Exe   string `json:"exe"`
}

// ErrNotFound means no process qualifies as the runner.
var ErrNotFound = errors.New("runnerid: no Runner.Worker started by a Runner.Listener beside it")

// ErrAmbiguous means more than one process qualifies: something that
// looks like the runner ran before the pin was taken.
var ErrAmbiguous = errors.New("runnerid: more than one Runner.Worker started by a Runner.Listener")

// Of pins process pid as it is now.
func Of(pid int) (Identity, error) {
	start, _, err := Stat(pid)
	if err != nil {
		return Identity{}, err
	}
	dev, ino, err := exeInode(pid)
	if err != nil {
		return Identity{}, fmt.Errorf("runnerid: pid %d: %w", pid, err)
	}
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	// The process may have exited and its pid been reused between reads.
	if again, _, err := Stat(pid); err != nil || again != start {
		return Identity{}, fmt.Errorf("runnerid: pid %d changed while it was read", pid)
	}
	return Identity{PID: pid, Start: start, Dev: dev, Ino: ino, Exe: exe}, nil
}

// IsZero reports whether id pins nothing.
func (id Identity) IsZero() bool { return id.PID == 0 }

// Is reports whether pid is the pinned process: same pid, same start time,
// and still running the same executable file. Safe for concurrent use.
func (id Identity) Is(pid int) bool {
	if id.PID == 0 || pid != id.PID {
		return false
	}
	return id.IsStarted(pid, 0)
}

// IsStarted is Is for a caller that has read pid's start time already
// (start 0: read it here).
func (id Identity) IsStarted(pid int, start uint64) bool {
	if id.PID == 0 || pid != id.PID {
		return false
	}
	if start == 0 {
		var err error
		if start, _, err = Stat(pid); err != nil {
			return false
		}
	}
	if start != id.Start {
		return false
	}
	dev, ino, err := exeInode(pid)
	return err == nil && dev == id.Dev && ino == id.Ino
}

// SameExe reports whether pid runs the executable file with this device
// and inode now.
func SameExe(pid int, dev, ino uint64) bool {
	d, i, err := exeInode(pid)
	return err == nil && d == dev && i == ino
}

func exeInode(pid int) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/exe", &st); err != nil {
		return 0, 0, err
	}
	return uint64(st.Dev), st.Ino, nil
}

// Find scans /proc for the runner's Runner.Worker: the one process that
// runs bin/Runner.Worker beside a bin/Runner.Listener and whose parent
// runs that Runner.Listener. Call it once, before any workflow step runs.
func Find() (Identity, error) {
	cands, err := Candidates()
	if err != nil {
		return Identity{}, err
	}
	switch len(cands) {
	case 0:
		return Identity{}, ErrNotFound
	case 1:
		return Of(cands[0])
	}
	return Identity{}, fmt.Errorf("%w: pids %v", ErrAmbiguous, cands)
}

// Candidates returns the pids Find chooses from: those in the caller's
// own PID namespace (the runner's steps and this Action's agent share
// the VM's; a container's or a nested namespace's lookalike is not the
// runner, and would only make Find ambiguous).
func Candidates() ([]int, error) {
	pids, err := ownPIDs()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, pid := range pids {
		if isWorker(pid) {
			out = append(out, pid)
		}
	}
	return out, nil
}

// ownPIDs lists the processes in /proc that are in our own PID namespace.
func ownPIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("runnerid: %w", err)
	}
	own, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return nil, fmt.Errorf("runnerid: own PID namespace: %w", err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && ns == own {
			out = append(out, pid)
		}
	}
	return out, nil
}

// FromAncestry pins the nearest of pid's ancestors (pid included) that
// qualifies as the runner's Runner.Worker: for `harden-runner run` in a
// step, whose ancestry at its start leads to the real one.
func FromAncestry(pid int) (Identity, error) {
	for i := 0; i < 64 && pid > 1; i++ {
		if isWorker(pid) {
			return Of(pid)
		}
		_, ppid, err := Stat(pid)
		if err != nil {
			return Identity{}, err
		}
		pid = ppid
	}
	return Identity{}, ErrNotFound
}

// FromDockerRun pins the runner as the parent of the docker CLI that runs
// the container named name (`docker run --name NAME`, as the runner starts
// a container action, attached until it ends): for the Action, whose own
// container that is. The CLI must run one of the files clis, and its
// parent must qualify as the runner's Runner.Worker. Only processes in our
// own PID namespace count.
func FromDockerRun(name string, clis []string) (Identity, error) {
	if name == "" {
		return Identity{}, errors.New("runnerid: no container name")
	}
	type file struct{ dev, ino uint64 }
	var files []file
	for _, c := range clis {
		var st unix.Stat_t
		if err := unix.Stat(c, &st); err == nil {
			files = append(files, file{uint64(st.Dev), st.Ino})
		}
	}
	if len(files) == 0 {
		return Identity{}, fmt.Errorf("runnerid: none of the docker CLIs %v exists", clis)
	}
	pids, err := ownPIDs()
	if err != nil {
		return Identity{}, err
	}
	var parents []int
	for _, pid := range pids {
		dev, ino, err := exeInode(pid)
		if err != nil || !slices.Contains(files, file{dev, ino}) {
			continue
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || !RunsNamed(b, name) {
			continue
		}
		if _, ppid, err := Stat(pid); err == nil && isWorker(ppid) && !slices.Contains(parents, ppid) {
			parents = append(parents, ppid)
		}
	}
	switch len(parents) {
	case 0:
		return Identity{}, fmt.Errorf("%w: no docker CLI running container %q has one as its parent", ErrNotFound, name)
	case 1:
		return Of(parents[0])
	}
	return Identity{}, fmt.Errorf("%w: the docker CLIs running container %q have parents %v", ErrAmbiguous, name, parents)
}

// RunsNamed reports whether cmdline (/proc/PID/cmdline: NUL-separated) is
// a docker `run` or `create` of a container named name.
func RunsNamed(cmdline []byte, name string) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	sub := false
	for i, a := range args {
		switch {
		case a == "run" || a == "create":
			sub = true
		case a == "--name" && i+1 < len(args):
			if sub && args[i+1] == name {
				return true
			}
		case a == "--name="+name:
			if sub {
				return true
			}
		}
	}
	return false
}

// isWorker: pid runs DIR/Runner.Worker, DIR/Runner.Listener exists, and
// pid's parent runs DIR/Runner.Listener.
func isWorker(pid int) bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil || filepath.Base(exe) != WorkerName {
		return false
	}
	listener := filepath.Join(filepath.Dir(exe), ListenerName)
	if st, err := os.Stat(listener); err != nil || !st.Mode().IsRegular() {
		return false
	}
	_, ppid, err := Stat(pid)
	if err != nil || ppid <= 1 {
		return false
	}
	pexe, err := os.Readlink("/proc/" + strconv.Itoa(ppid) + "/exe")
	return err == nil && pexe == listener
}

// Stat returns a process's start time (clock ticks since boot) and its
// parent's pid, from /proc/PID/stat.
func Stat(pid int) (start uint64, ppid int, err error) {
	// Raw open/read/close: the docker gate reads this per connection, and
	// os.ReadFile's poller registration and fstat cost as much again.
	var buf [1024]byte
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("runnerid: /proc/%d/stat: %w", pid, err)
	}
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	if err != nil {
		return 0, 0, fmt.Errorf("runnerid: /proc/%d/stat: %w", pid, err)
	}
	b := buf[:n]
	start, ppid, err = ParseStat(b)
	if err != nil {
		return 0, 0, fmt.Errorf("runnerid: /proc/%d/stat: %w", pid, err)
	}
	return start, ppid, nil
}

// ParseStat reads the parent pid and start time out of /proc/PID/stat.
// The command name (field 2) is the process's to choose and may hold
// spaces and parentheses: the fields that follow start after the last ')'.
func ParseStat(b []byte) (start uint64, ppid int, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, starttime field 22.
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("%d fields", len(f))
	}
	if ppid, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, err
	}
	if start, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return 0, 0, err
	}
	return start, ppid, nil
}
