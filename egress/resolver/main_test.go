package resolver

import (
	"os"
	"testing"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// TestMain runs the package's tests inside a network namespace of their
// own when root (the load tests open thousands of loopback sockets there,
// not on the machine's own loopback).
func TestMain(m *testing.M) {
	if code, done := testnet.Reexec("resolver", false); done {
		os.Exit(code)
	}
	os.Exit(m.Run())
}
