package proc

import (
	"os"
	"testing"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// The system tests run inside network namespaces that TestMain makes
// (testnet.Reexec): "runner", where the whole test binary runs again, and
// "internet" joined to it, where the test servers listen. The machine's
// own namespace is never touched. Without root, everything runs in place
// and system tests skip.
func TestMain(m *testing.M) {
	if code, done := testnet.Reexec("proc", false); done {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// inetNSForTest returns the internet namespace's name, or skips the test.
func inetNSForTest(t testing.TB) string {
	t.Helper()
	return testnet.Current(t).Internet
}
