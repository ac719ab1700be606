package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Reexec is for packages whose system tests must run whole inside the
// runner namespace, because the code under test opens netlink sockets in
// whatever namespace its thread is in (proc's sock_diag, flowlog's NFLOG).
// Call it first in TestMain:
//
//	if code, done := testnet.Reexec("proc", false); done {
//		os.Exit(code)
//	}
//	os.Exit(m.Run())
//
// As root, the first time, it makes a "runner" namespace (198.18.0.1,
// 2001:db8::1) joined by veth to an "internet" one (198.18.0.2,
// 2001:db8::2) and, with container, a "container" one (198.19.0.2) routed
// through the runner (forwarding on, in the runner namespace only); runs
// this test binary again inside the runner namespace; removes them all;
// and returns the child's exit code with done set. In that child, or
// without root or iproute2, it returns done false: run the tests (system
// tests then find the topology with Current, or skip).
func Reexec(tag string, container bool) (code int, done bool) {
	if os.Getenv(envReexecRunner) != "" || os.Geteuid() != 0 {
		return 0, false
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return 0, false
	}
	id := fmt.Sprintf("hrtest-%s%d", tag, os.Getpid())
	top := Topology{Runner: id + "-r", Internet: id + "-i"}
	if container {
		top.Container = id + "-c"
	}
	cleanup := func() {
		for _, ns := range []string{top.Runner, top.Internet, top.Container} {
			if ns != "" {
				_ = exec.Command("ip", "netns", "del", ns).Run()
			}
		}
	}
	r, i, c := top.Runner, top.Internet, top.Container
	cmds := [][]string{
		{"ip", "netns", "add", r},
		{"ip", "netns", "add", i},
		{"ip", "-n", r, "link", "set", "lo", "up"},
		{"ip", "-n", i, "link", "set", "lo", "up"},
		{"ip", "-n", r, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", i},
		{"ip", "-n", r, "addr", "add", "198.18.0.1/24", "dev", "veth0"},
		{"ip", "-n", r, "addr", "add", "2001:db8::1/64", "dev", "veth0", "nodad"},
		{"ip", "-n", i, "addr", "add", "198.18.0.2/24", "dev", "veth1"},
		{"ip", "-n", i, "addr", "add", "2001:db8::2/64", "dev", "veth1", "nodad"},
		{"ip", "-n", r, "link", "set", "veth0", "up"},
		{"ip", "-n", i, "link", "set", "veth1", "up"},
	}
	if container {
		cmds = append(cmds, [][]string{
			{"ip", "netns", "add", c},
			{"ip", "-n", c, "link", "set", "lo", "up"},
			{"ip", "-n", r, "link", "add", "veth2", "type", "veth", "peer", "name", "veth3", "netns", c},
			{"ip", "-n", r, "addr", "add", "198.19.0.1/24", "dev", "veth2"},
			{"ip", "-n", c, "addr", "add", "198.19.0.2/24", "dev", "veth3"},
			{"ip", "-n", r, "link", "set", "veth2", "up"},
			{"ip", "-n", c, "link", "set", "veth3", "up"},
			{"ip", "-n", c, "route", "add", "default", "via", "198.19.0.1"},
			{"ip", "-n", i, "route", "add", "198.19.0.0/24", "via", "198.18.0.1"},
			// Forwarding on in the runner namespace only (a per-namespace sysctl).
			{"nsenter", "--net=/var/run/netns/" + r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
		}...)
	}
	for _, cmd := range cmds {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "test setup: %s: %v: %s\n", strings.Join(cmd, " "), err, out)
			cleanup()
			return 1, true
		}
	}
	defer cleanup()
	args := append([]string{"--net=/var/run/netns/" + r, "--", os.Args[0]}, os.Args[1:]...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envReexecRunner+"="+r, envReexecInternet+"="+i, envReexecContainer+"="+c)
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), true
		}
		fmt.Fprintf(os.Stderr, "test: run in namespace: %v\n", err)
		return 1, true
	}
	return 0, true
}

// Environment of the re-executed test binary.
const (
	envReexecRunner    = "HRTEST_REEXEC_RUNNER_NS"
	envReexecInternet  = "HRTEST_REEXEC_INET_NS"
	envReexecContainer = "HRTEST_REEXEC_CONTAINER_NS"
)

// Topology names the namespaces Reexec made; Container is "" unless asked for.
type Topology struct {
	Runner, Internet, Container string
}

// Current returns the topology this re-executed test binary runs in,
// after checking that the process really is in its runner namespace (so a
// test's nftables rules can never land in the machine's own); without one
// (not root) it skips the test.
func Current(t testing.TB) Topology {
	t.Helper()
	top := Topology{Runner: os.Getenv(envReexecRunner), Internet: os.Getenv(envReexecInternet),
		Container: os.Getenv(envReexecContainer)}
	if top.Runner == "" {
		t.Skip("needs root (and iproute2, nsenter) to make its own network namespaces")
	}
	var self, want unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/var/run/netns/"+top.Runner, &want); err != nil {
		t.Fatal(err)
	}
	if self.Ino != want.Ino || self.Dev != want.Dev {
		t.Fatalf("not in the test's runner namespace %s: refusing to go on", top.Runner)
	}
	return top
}
