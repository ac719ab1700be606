package lineage

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkSyscallUnderTracker is what the tracker adds to a syscall
// (getppid): nothing, as long as no program sits on a syscall tracepoint.
// One would put every thread of the machine on the syscall slow path: the
// truncate(2) record on syscalls/sys_{enter,exit}_truncate took getppid
// from 171 to 270 ns here (2026-12-04), on raw sys_enter/sys_exit 345 ns.
func BenchmarkSyscallUnderTracker(b *testing.B) {
	getppid := func(b *testing.B) {
		for b.Loop() {
			unix.Getppid()
		}
	}
	b.Run("off", getppid)
	b.Run("on", func(b *testing.B) {
		tr := startForTest(b)
		getppid(b)
		b.StopTimer()
		tr.Close()
	})
}

// TestStopIsQuick: detaching the tracker must not wait for a grace period
// of the kernel's (a syscall tracepoint's perf event waits ~75 ms for RCU
// tasks-trace when closed), since the agent's stop is on every job's path.
func TestStopIsQuick(t *testing.T) {
	var worst time.Duration
	for range 3 {
		tr := startForTest(t)
		at := time.Now()
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(at))
	}
	t.Logf("slowest Close of 3: %v", worst)
	if worst > 40*time.Millisecond {
		t.Errorf("Close took %v; want < 40 ms", worst)
	}
}
