// Package proctree holds a command and every process it starts, so that
// `harden-runner run` tears enforcement down only once the command's
// whole process tree is gone: a daemon COMMAND left behind (`cmd &`,
// setsid, double fork) would otherwise get out the moment the table goes.
//
// The tree is a cgroup v2 of its own, a child of ours, that the command
// is cloned straight into (CLONE_INTO_CGROUP): no fork escapes it, and
// cgroup.kill ends all of it at once. Without a cgroup v2 hierarchy we
// can write to, it falls back to a process group, which a process that
// calls setsid leaves (Group.Confined says which one it is).
package proctree

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pollEvery is how often Wait looks whether the tree is empty.
const pollEvery = 10 * time.Millisecond

// Group is one command's process tree.
type Group struct {
	dir  string // the cgroup's directory; "" for a process group
	fd   int    // the cgroup directory, for CLONE_INTO_CGROUP
	pgid int    // the process group (the leader's pid), once started
	// none: no group at all (a process group would take the terminal
	// from an interactive command).
	none bool
}

// New makes the group: a cgroup named name under our own cgroup, or, if
// none can be made, a process group. The error says why there is no
// cgroup; the Group is usable either way.
func New(name string) (*Group, error) {
	dir, err := ownCgroup()
	if err == nil {
		dir = filepath.Join(dir, name)
		err = os.Mkdir(dir, 0o755)
	}
	if err != nil {
		return &Group{fd: -1}, fmt.Errorf("proctree: no cgroup for the command, using a process group (a process that calls setsid leaves it): %w", err)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = os.Remove(dir)
		return &Group{fd: -1}, fmt.Errorf("proctree: open %s, using a process group: %w", dir, err)
	}
	return &Group{dir: dir, fd: fd}, nil
}

// Confined reports whether the group is a cgroup (nothing leaves it).
// A process group (no cgroup v2) holds what does not call setsid; with a
// terminal on stdin there is not even that, and Pids is always empty.
func (g *Group) Confined() bool { return g.dir != "" }

// Describe names the group for messages.
func (g *Group) Describe() string {
	if g.dir != "" {
		return "cgroup " + g.dir
	}
	return "process group " + strconv.Itoa(g.pgid)
}

// Prepare sets attr so the command starts in the group.
func (g *Group) Prepare(attr *syscall.SysProcAttr) {
	if g.dir != "" {
		attr.UseCgroupFD, attr.CgroupFD = true, g.fd
		return
	}
	if _, err := unix.IoctlGetTermios(0, unix.TCGETS); err == nil {
		g.none = true // stdin is a terminal: leave the command in our process group
		return
	}
	attr.Setpgid = true
}

// Started records the command's pid (the process group's id).
func (g *Group) Started(pid int) {
	if !g.none {
		g.pgid = pid
	}
}

// Pids returns the processes in the group now.
func (g *Group) Pids() ([]int, error) {
	if g.dir == "" {
		return groupPids(g.pgid)
	}
	b, err := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("proctree: %w", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Wait returns nil once no process is left in the group, or ctx's error.
func (g *Group) Wait(ctx context.Context) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		pids, err := g.Pids()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("proctree: %d process(es) left in %s: %w", len(pids), g.Describe(), ctx.Err())
		case <-t.C:
		}
	}
}

// Kill sends SIGKILL to every process in the group.
func (g *Group) Kill() error {
	if g.dir == "" {
		if g.pgid == 0 {
			return nil
		}
		if err := unix.Kill(-g.pgid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("proctree: kill %s: %w", g.Describe(), err)
		}
		return nil
	}
	if err := os.WriteFile(filepath.Join(g.dir, "cgroup.kill"), []byte("1"), 0); err == nil {
		return nil
	}
	// Kernels before 5.14 have no cgroup.kill: one by one, until empty
	// (a fork in between is caught on the next round).
	var errs []error
	for range 100 {
		pids, err := g.Pids()
		if err != nil || len(pids) == 0 {
			return err
		}
		for _, pid := range pids {
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, err)
			}
		}
		time.Sleep(pollEvery)
	}
	return fmt.Errorf("proctree: kill %s: processes keep appearing: %w", g.Describe(), errors.Join(errs...))
}

// Close removes the cgroup (it must be empty).
func (g *Group) Close() error {
	if g.dir == "" {
		return nil
	}
	unix.Close(g.fd)
	if err := os.Remove(g.dir); err != nil {
		return fmt.Errorf("proctree: remove %s: %w", g.dir, err)
	}
	return nil
}

// ownCgroup returns the directory of our cgroup in the cgroup v2 hierarchy.
func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	var rel string
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			rel, found = p, true
		}
	}
	if !found {
		return "", errors.New("not in a cgroup v2 hierarchy")
	}
	mnt, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	return filepath.Join(mnt, filepath.Clean("/"+rel)), nil
}

// cgroup2Mount finds where the cgroup2 file system is mounted (the
// unified hierarchy: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid
// machines).
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(fs) > 0 && fs[0] == "cgroup2" && fields[3] == "/" {
			return unescapeMount(fields[4]), nil
		}
	}
	return "", errors.New("no cgroup2 file system mounted")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// groupPids lists the processes whose process group is pgid.
func groupPids(pgid int) ([]int, error) {
	if pgid == 0 {
		return nil, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("proctree: %w", err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := unix.Getpgid(pid); err == nil && g == pgid {
			if !zombie(pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

// zombie reports whether pid has exited and waits for its parent to reap it.
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}
