package gate

import (
	"testing"

	"github.com/harden-runner/harden-runner/event"
)

// The gate's kernel path is tested where it matters, with real traffic:
// egress/firewall's tests (fast reject, audit accept, fail closed without a
// reader) and the end-to-end tests (every blocked flow named).
func TestNewValidates(t *testing.T) {
	emit := func(event.Record) {}
	for _, c := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"no emit", Config{}, false},
		{"block without reject mark", Config{Emit: emit, Block: true}, false},
		{"audit", Config{Emit: emit}, true},
		{"block", Config{Emit: emit, Block: true, RejectMark: 2}, true},
	} {
		g, err := New(c.cfg)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok=%v", c.name, err, c.ok)
		}
		if err == nil && g.Queue() != DefaultQueue {
			t.Errorf("%s: queue %d, want default %d", c.name, g.Queue(), DefaultQueue)
		}
		if err == nil {
			if err := g.Close(); err != nil {
				t.Errorf("%s: Close before Start: %v", c.name, err)
			}
		}
	}
}
