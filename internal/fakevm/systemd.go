package fakevm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SystemdUnits are the units the VM's systemd knows: empty targets and
// slices, enough for transient services with default dependencies. The
// machine's own units are not visible (SYSTEMD_UNIT_PATH), so booting
// starts none of its services.
var SystemdUnits = []string{"sysinit.target", "basic.target", "shutdown.target", "sockets.target",
	"paths.target", "timers.target", "slices.target", "local-fs.target", "network.target",
	"-.slice", "system.slice"}

// StartSystemd makes a VM whose PID 1 is systemd, as on a GitHub runner:
// in netns, with its own PID, mount, UTS and cgroup namespaces, a tmpfs
// /run, and a cgroup subtree of its own (removed at cleanup). It skips the
// test when systemd is not installed or does not come up.
func StartSystemd(t testing.TB, netns string) *VM {
	t.Helper()
	for _, p := range []string{"/lib/systemd/systemd", "/usr/bin/systemd-run", "/usr/bin/systemctl"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("needs systemd (%s)", p)
		}
	}
	units := t.TempDir()
	for _, u := range SystemdUnits {
		if err := os.WriteFile(filepath.Join(units, u), []byte("[Unit]\nDescription=fakevm "+u+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(units, "fakevm.target"), []byte("[Unit]\nDescription=fakevm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The VM's cgroups: a subtree of the machine's, which becomes the root
	// of the VM's cgroup namespace.
	name := fmt.Sprintf("hr-fakevm-%d", os.Getpid())
	var cgroups, mounts []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // unified (cgroup v2 only)
		cgroups = []string{"/sys/fs/cgroup/" + name}
		mounts = []string{"mount -t cgroup2 cgroup2 /sys/fs/cgroup"}
	} else { // hybrid: systemd's named v1 hierarchy, and v2 beside it
		cgroups = []string{"/sys/fs/cgroup/systemd/" + name}
		mounts = []string{"mount -t tmpfs cgroup /sys/fs/cgroup", "mkdir /sys/fs/cgroup/systemd",
			"mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd"}
		if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.procs"); err == nil {
			cgroups = append(cgroups, "/sys/fs/cgroup/unified/"+name)
			mounts = append(mounts, "mkdir /sys/fs/cgroup/unified", "mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified")
		}
	}
	for _, cg := range cgroups {
		if err := os.MkdirAll(cg, 0o755); err != nil {
			t.Skipf("fakevm: cgroup for systemd: %v", err)
		}
	}
	// Join the cgroups, then enter the namespaces: the new cgroup namespace
	// is rooted where the shell is.
	var join strings.Builder
	for _, cg := range cgroups {
		fmt.Fprintf(&join, "echo $$ > %s/cgroup.procs && ", cg)
	}
	boot := "set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/lock; " + strings.Join(mounts, "; ") +
		"; exec env -i container=fakevm SYSTEMD_UNIT_PATH=" + units +
		" PATH=/usr/sbin:/usr/bin:/sbin:/bin /lib/systemd/systemd --unit=fakevm.target --log-target=console"
	logPath := filepath.Join(t.TempDir(), "systemd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c := exec.Command("sh", "-c", join.String()+"exec nsenter --net=/var/run/netns/"+netns+
		" unshare --pid --fork --mount --mount-proc --uts --cgroup --propagation private sh -c '"+boot+"'")
	c.Stdout, c.Stderr = logf, logf
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatalf("fakevm: start systemd: %v", err)
	}
	vm := &VM{t: t, NetNS: netns, unshare: c}
	t.Cleanup(func() {
		vm.stop()
		// systemd's own subtree, deepest first, once its processes are gone.
		for _, cg := range cgroups {
			for i := 0; i < 100 && removeCgroup(cg) != nil; i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if vm.Init == 0 {
			// The init is the unshare's child: systemd after its exec.
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", c.Process.Pid, c.Process.Pid))
			if f := strings.Fields(string(b)); len(f) > 0 {
				vm.Init, _ = strconv.Atoi(f[0])
			}
		}
		if vm.Init != 0 {
			out, _ := vm.Command("systemctl", "is-system-running").Output()
			if s := strings.TrimSpace(string(out)); s == "running" || s == "degraded" {
				return vm
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Skipf("fakevm: systemd did not come up in the fake VM; log:\n%s", tail(string(b), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeCgroup removes a cgroup directory and the ones below it, deepest
// first (cgroup directories go with rmdir only).
func removeCgroup(dir string) error {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			_ = removeCgroup(filepath.Join(dir, e.Name()))
		}
	}
	if err := syscall.Rmdir(dir); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
