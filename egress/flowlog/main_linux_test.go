package flowlog

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// The system tests run inside network namespaces that TestMain makes
// (testnet.Reexec), never in the machine's own: "runner" (198.18.0.1,
// 2001:db8::1), where the whole test binary runs again and the test's
// nftables rules go; "internet" (198.18.0.2, 2001:db8::2) joined to it by
// veth, where the test servers listen; and "container" (198.19.0.2) behind
// the runner, which routes its traffic (forwarded flows). Without root
// everything runs in place and the system tests skip.

const envHelper = "HRTEST_FLOWLOG_HELPER" // run a helper program instead of tests

func TestMain(m *testing.M) {
	if h := os.Getenv(envHelper); h != "" {
		os.Exit(runHelper(h))
	}
	if code, done := testnet.Reexec("fl", true); done {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// netnsForTest returns the names of the internet and container namespaces
// after checking that this process really is in the runner namespace (so
// that the test's nftables rules can never land in the machine's own), or
// skips the test.
func netnsForTest(t testing.TB) (inet, ctr string) {
	t.Helper()
	top := testnet.Current(t)
	return top.Internet, top.Container
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
