//go:build !linux

package proc

import (
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// Finder maps sockets to the processes that own them; only Linux has one.
type Finder struct{ lookups atomic.Uint64 }

// NewFinder returns a Finder that finds nothing on this system.
func NewFinder(log *slog.Logger) *Finder { return &Finder{} }

// Close does nothing here.
func (f *Finder) Close() error { return nil }

// Stats returns how many lookups were made; all of them failed.
func (f *Finder) Stats() (lookups, failed uint64) {
	n := f.lookups.Load()
	return n, n
}

// Owner always reports that socket owners are unknown on this system.
func (f *Finder) Owner(proto string, local, remote netip.AddrPort) event.Process {
	f.lookups.Add(1)
	return event.Process{Unknown: "unsupported on this system"}
}

// ForwardedOwner is Owner for a container's flow; only Linux finds it.
func (f *Finder) ForwardedOwner(proto string, local, remote netip.AddrPort) event.Process {
	return f.Owner(proto, local, remote)
}

// SysctlWriter always reports that the writer is unknown on this system.
func (f *Finder) SysctlWriter(netns uint32, name string) event.Process {
	return event.Process{Unknown: "unsupported on this system"}
}
