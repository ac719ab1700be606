// Package fakevm gives system tests a "fake VM" (DESIGN.md, "Docker in
// tests"): inside a network namespace the test made, a new PID and mount
// namespace whose PID 1 is a small init. Processes entered into it see that
// init as PID 1 and that namespace's network, never the machine's. It can
// also run a dockerd of its own there.
package fakevm

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// VM is one fake VM. Its init and everything entered into it end at cleanup.
type VM struct {
	t       testing.TB
	NetNS   string // the network namespace it lives in
	Init    int    // PID 1 of the VM, as the machine sees it
	unshare *exec.Cmd
}

// Start makes a VM in netns (a name under /var/run/netns).
func Start(t testing.TB, netns string) *VM {
	t.Helper()
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("needs nsenter (util-linux)")
	}
	// The init: a shell that reaps orphans (as PID 1 does) until killed.
	c := exec.Command("nsenter", "--net=/var/run/netns/"+netns,
		"unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private",
		"/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done")
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatalf("fakevm: start init: %v", err)
	}
	vm := &VM{t: t, NetNS: netns, unshare: c}
	t.Cleanup(vm.stop)
	deadline := time.Now().Add(10 * time.Second)
	for vm.Init == 0 {
		if time.Now().After(deadline) {
			t.Fatal("fakevm: no init process")
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", c.Process.Pid, c.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			vm.Init, _ = strconv.Atoi(f[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	return vm
}

// Command returns argv run inside the VM: its PID, mount and network namespaces.
func (vm *VM) Command(argv ...string) *exec.Cmd {
	args := append([]string{"-t", strconv.Itoa(vm.Init), "--pid", "--mount", "--net", "--"}, argv...)
	return exec.Command("nsenter", args...)
}

func (vm *VM) stop() {
	// Killing the PID namespace's init kills everything in it.
	if vm.Init != 0 {
		_ = syscall.Kill(vm.Init, syscall.SIGKILL)
	}
	_ = syscall.Kill(-vm.unshare.Process.Pid, syscall.SIGKILL)
	_ = vm.unshare.Wait()
}

// Build builds the static harden-runner binary (CGO_ENABLED=0) from the
// module root and returns its path.
func Build(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), "harden-runner")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Dockerd is a docker daemon running inside a VM with its own data root,
// exec root, pid file and socket.
type Dockerd struct {
	Socket string
	Dir    string
}

// StartDockerd starts dockerd (and its containerd) inside the VM. Nothing is
// shared with a docker the machine may run: every path is under a temp dir.
func (vm *VM) StartDockerd(t testing.TB) *Dockerd {
	t.Helper()
	if _, err := exec.LookPath("dockerd"); err != nil {
		t.Skip("needs dockerd (Debian docker.io)")
	}
	dir, err := os.MkdirTemp("", "hr-dockerd")
	if err != nil {
		t.Fatal(err)
	}
	d := &Dockerd{Socket: filepath.Join(dir, "docker.sock"), Dir: dir}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	c := vm.Command("dockerd",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", "unix://"+d.Socket,
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
		"--containerd-namespace", "hrtest", "--containerd-plugins-namespace", "hrtestp",
		"--storage-driver", "vfs")
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		t.Fatalf("fakevm: dockerd: %v", err)
	}
	t.Cleanup(func() {
		// dockerd runs in the VM: its PID file names it in the VM's PID namespace,
		// so signal it through the nsenter process we started instead.
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = c.Process.Kill()
		}
		_ = exec.Command("umount", "-R", filepath.Join(dir, "exec")).Run()
		_ = exec.Command("umount", "-R", filepath.Join(dir, "data")).Run()
		os.RemoveAll(dir)
	})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", d.Socket)
	}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get("http://docker/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d
			}
		}
		if time.Now().After(deadline) || c.ProcessState != nil {
			b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Skipf("fakevm: dockerd did not come up in the fake VM (%v); log:\n%s", err, tail(string(b), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
