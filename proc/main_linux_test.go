package proc

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The system tests run inside two network namespaces that TestMain makes:
// "runner" (198.18.0.1, 2001:db8::1), where the whole test binary is run
// again, and "internet" (198.18.0.2, 2001:db8::2) joined to it by a veth
// pair, where the test servers listen. The machine's own namespace is never
// touched. Without root, everything runs in place and system tests skip.

const (
	envInetNS   = "HRTEST_PROC_INET_NS"
	envRunnerNS = "HRTEST_PROC_RUNNER_NS"
)

func TestMain(m *testing.M) {
	if os.Getenv(envInetNS) != "" || os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		os.Exit(m.Run())
	}
	os.Exit(runInNamespaces("hrp"))
}

// runInNamespaces makes the two namespaces, runs this test binary again in
// the runner one with the same arguments, removes them, and returns the
// child's exit code.
func runInNamespaces(tag string) int {
	id := fmt.Sprintf("hrtest-%s%d", tag, os.Getpid())
	runner, inet := id+"-r", id+"-i"
	cleanup := func() {
		exec.Command("ip", "netns", "del", runner).Run()
		exec.Command("ip", "netns", "del", inet).Run()
	}
	cmds := [][]string{
		{"netns", "add", runner},
		{"netns", "add", inet},
		{"-n", runner, "link", "set", "lo", "up"},
		{"-n", inet, "link", "set", "lo", "up"},
		{"-n", runner, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", inet},
		{"-n", runner, "addr", "add", "198.18.0.1/24", "dev", "veth0"},
		{"-n", runner, "addr", "add", "2001:db8::1/64", "dev", "veth0", "nodad"},
		{"-n", inet, "addr", "add", "198.18.0.2/24", "dev", "veth1"},
		{"-n", inet, "addr", "add", "2001:db8::2/64", "dev", "veth1", "nodad"},
		{"-n", runner, "link", "set", "veth0", "up"},
		{"-n", inet, "link", "set", "veth1", "up"},
	}
	for _, c := range cmds {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "test setup: ip %s: %v: %s\n", strings.Join(c, " "), err, out)
			cleanup()
			return 1
		}
	}
	defer cleanup()
	args := append([]string{"--net=/var/run/netns/" + runner, "--", os.Args[0]}, os.Args[1:]...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInetNS+"="+inet, envRunnerNS+"="+runner)
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "test: run in namespace: %v\n", err)
		return 1
	}
	return 0
}

// inetNSForTest returns the internet namespace's name, or skips the test.
func inetNSForTest(t testing.TB) string {
	t.Helper()
	ns := os.Getenv(envInetNS)
	if ns == "" {
		t.Skip("needs root (and iproute2) to make its own network namespaces")
	}
	return ns
}
