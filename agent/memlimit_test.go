package agent

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestLimitStartMemory(t *testing.T) {
	for _, c := range []struct {
		name      string
		env       string
		prev      int64
		wantDur   int64 // while starting
		wantAfter int64
	}{
		{"no limit before", "", math.MaxInt64, StartMemoryLimit, math.MaxInt64},
		{"a limit before", "", 1 << 30, StartMemoryLimit, 1 << 30},
		{"GOMEMLIMIT stands", "100MiB", 100 << 20, 100 << 20, 100 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", c.env)
			orig := debug.SetMemoryLimit(c.prev)
			defer debug.SetMemoryLimit(orig)
			lift := LimitStartMemory()
			if got := debug.SetMemoryLimit(-1); got != c.wantDur {
				t.Errorf("while starting: limit %d, want %d", got, c.wantDur)
			}
			lift()
			if got := debug.SetMemoryLimit(-1); got != c.wantAfter {
				t.Errorf("after: limit %d, want %d", got, c.wantAfter)
			}
		})
	}
}
