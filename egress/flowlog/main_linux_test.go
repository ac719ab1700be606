package flowlog

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The system tests run inside network namespaces that TestMain makes, never
// in the machine's own: "runner" (198.18.0.1, 2001:db8::1), where the whole
// test binary runs again and the test's nftables rules go; "internet"
// (198.18.0.2, 2001:db8::2) joined to it by veth, where the test servers
// listen; and "container" (198.19.0.2) behind the runner, which routes its
// traffic (forwarded flows). Without root everything runs in place and the
// system tests skip.

const (
	envInetNS      = "HRTEST_FLOWLOG_INET_NS"
	envRunnerNS    = "HRTEST_FLOWLOG_RUNNER_NS"
	envContainerNS = "HRTEST_FLOWLOG_CONTAINER_NS"
	envHelper      = "HRTEST_FLOWLOG_HELPER" // run a helper program instead of tests
)

func TestMain(m *testing.M) {
	if h := os.Getenv(envHelper); h != "" {
		os.Exit(runHelper(h))
	}
	if os.Getenv(envInetNS) != "" || os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		os.Exit(m.Run())
	}
	os.Exit(runInNamespaces())
}

func runInNamespaces() int {
	id := fmt.Sprintf("hrtest-fl%d", os.Getpid())
	runner, inet, ctr := id+"-r", id+"-i", id+"-c"
	cleanup := func() {
		for _, ns := range []string{runner, inet, ctr} {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	cmds := [][]string{
		{"ip", "netns", "add", runner},
		{"ip", "netns", "add", inet},
		{"ip", "netns", "add", ctr},
		{"ip", "-n", runner, "link", "set", "lo", "up"},
		{"ip", "-n", inet, "link", "set", "lo", "up"},
		{"ip", "-n", ctr, "link", "set", "lo", "up"},
		{"ip", "-n", runner, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", inet},
		{"ip", "-n", runner, "addr", "add", "198.18.0.1/24", "dev", "veth0"},
		{"ip", "-n", runner, "addr", "add", "2001:db8::1/64", "dev", "veth0", "nodad"},
		{"ip", "-n", inet, "addr", "add", "198.18.0.2/24", "dev", "veth1"},
		{"ip", "-n", inet, "addr", "add", "2001:db8::2/64", "dev", "veth1", "nodad"},
		{"ip", "-n", runner, "link", "set", "veth0", "up"},
		{"ip", "-n", inet, "link", "set", "veth1", "up"},
		{"ip", "-n", runner, "link", "add", "veth2", "type", "veth", "peer", "name", "veth3", "netns", ctr},
		{"ip", "-n", runner, "addr", "add", "198.19.0.1/24", "dev", "veth2"},
		{"ip", "-n", ctr, "addr", "add", "198.19.0.2/24", "dev", "veth3"},
		{"ip", "-n", runner, "link", "set", "veth2", "up"},
		{"ip", "-n", ctr, "link", "set", "veth3", "up"},
		{"ip", "-n", ctr, "route", "add", "default", "via", "198.19.0.1"},
		{"ip", "-n", inet, "route", "add", "198.19.0.0/24", "via", "198.18.0.1"},
		// Forwarding on in the runner namespace only (a per-namespace sysctl).
		{"nsenter", "--net=/var/run/netns/" + runner, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "test setup: %s: %v: %s\n", strings.Join(c, " "), err, out)
			cleanup()
			return 1
		}
	}
	defer cleanup()
	args := append([]string{"--net=/var/run/netns/" + runner, "--", os.Args[0]}, os.Args[1:]...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInetNS+"="+inet, envRunnerNS+"="+runner, envContainerNS+"="+ctr)
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "test: run in namespace: %v\n", err)
		return 1
	}
	return 0
}

// netnsForTest returns the names of the internet and container namespaces
// after checking that this process really is in the runner namespace (so
// that the test's nftables rules can never land in the machine's own), or
// skips the test.
func netnsForTest(t testing.TB) (inet, ctr string) {
	t.Helper()
	inet, runner := os.Getenv(envInetNS), os.Getenv(envRunnerNS)
	if inet == "" {
		t.Skip("needs root (and iproute2, nsenter) to make its own network namespaces")
	}
	var self, want unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/var/run/netns/"+runner, &want); err != nil {
		t.Fatal(err)
	}
	if self.Ino != want.Ino || self.Dev != want.Dev {
		t.Fatalf("not in the test's runner namespace %s: refusing to go on", runner)
	}
	return inet, os.Getenv(envContainerNS)
}

// nftForTest loads a ruleset, whose one table must be "inet hrtest", into
// the runner namespace (this process's) and deletes the table at cleanup.
func nftForTest(t testing.TB, ruleset string) {
	t.Helper()
	netnsForTest(t)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s\n%s", err, out, ruleset)
	}
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", "hrtest").Run() })
}
