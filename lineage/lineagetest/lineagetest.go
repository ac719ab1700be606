//go:build linux

// Package lineagetest starts the kernel's process table (package lineage,
// observe-only programs) for a test, or skips the test where the kernel
// cannot run it.
package lineagetest

import (
	"context"
	"errors"
	"testing"

	"github.com/harden-runner/harden-runner/lineage"
)

// Start starts a Tracker that t's cleanup closes. It skips t when the
// kernel has no support for the programs.
func Start(t testing.TB) *lineage.Tracker {
	t.Helper()
	return StartConfig(t, lineage.Config{})
}

// StartConfig is Start with cfg.
func StartConfig(t testing.TB, cfg lineage.Config) *lineage.Tracker {
	t.Helper()
	tr, err := lineage.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(context.Background()); err != nil {
		if errors.Is(err, lineage.ErrUnsupported) {
			t.Skipf("kernel-side process table unavailable: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}
