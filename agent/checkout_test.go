package agent

import (
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/lineage"
)

// fakeTable is a process table for the pure-logic test.
type fakeTable map[int]lineage.Proc

func (f fakeTable) Process(pid int, _ uint64, _ time.Duration) (lineage.Proc, bool) {
	p, ok := f[pid]
	return p, ok
}

func TestIsCheckout(t *testing.T) {
	worker := event.Ancestor{PID: 10, Exe: "/home/runner/actions-runner/bin/Runner.Worker"}
	node := "/home/runner/actions-runner/externals/node20/bin/node"
	entry := node + " /home/runner/work/_actions/actions/checkout/v4/dist/index.js"
	git := func(root event.Ancestor) event.Process {
		return event.Process{PID: 30, Exe: "/usr/bin/git", Cmdline: "git checkout --force -B main", Parents: []event.Ancestor{root, worker}}
	}
	// made: the table's record of a root the runner made that ran one
	// program, with this command line.
	made := func(cmdline string) lineage.Proc {
		return lineage.Proc{PID: 20, PPID: worker.PID, Exe: node, Cmdline: cmdline, Forked: true, Execs: 1}
	}
	real := git(event.Ancestor{PID: 20, Exe: node, Cmdline: entry})
	for _, tc := range []struct {
		name  string
		p     event.Process
		table procTable
		want  bool
	}{
		{"git under checkout", real, fakeTable{20: made(entry)}, true},
		{"the step root itself", event.Process{PID: 20, Exe: node, Cmdline: entry, Parents: []event.Ancestor{worker}}, fakeTable{20: made(entry)}, true},
		{"another action", real, fakeTable{20: made(node + " /home/runner/work/_actions/actions/setup-go/v5/dist/setup/index.js")}, false},
		{"a fork of checkout", real, fakeTable{20: made(node + " /home/runner/work/_actions/evil/checkout/v4/dist/index.js")}, false},
		{"node with a preload", real, fakeTable{20: made(node + " -r /tmp/evil.js /home/runner/work/_actions/actions/checkout/v4/dist/index.js")}, false},
		// /proc shows checkout, the table what the runner started.
		{"a run: step that rewrote its command line", real, fakeTable{20: made("/usr/bin/bash -e /home/runner/work/_temp/x.sh")}, false},
		{"a run: step that exec'd node on checkout", real, fakeTable{20: func() lineage.Proc { p := made(entry); p.Execs = 2; return p }()}, false},
		{"a sibling a step made with CLONE_PARENT", real, fakeTable{20: func() lineage.Proc { p := made(entry); p.PPID = 19; return p }()}, false},
		{"a root whose fork the table missed", real, fakeTable{20: func() lineage.Proc { p := made(entry); p.Forked, p.Seeded = false, true; return p }()}, false},
		{"a root the table does not know", real, fakeTable{}, false},
		{"no process table (no eBPF)", real, nil, false},
		{"not under the runner", event.Process{PID: 30, Exe: "/usr/bin/git", Cmdline: "git checkout", Parents: []event.Ancestor{{PID: 20, Exe: node, Cmdline: entry}, {PID: 1, Exe: "/sbin/init"}}}, fakeTable{20: made(entry)}, false},
		{"unknown", event.Process{Unknown: "gone"}, fakeTable{20: made(entry)}, false},
		{"under a Runner.Worker that is not the pinned one", real, fakeTable{20: made(entry)}, false},
	} {
		runner := worker.PID
		if tc.name == "under a Runner.Worker that is not the pinned one" {
			runner = 11
		}
		if got := isCheckout(tc.p, runner, tc.table, nil); got != tc.want {
			t.Errorf("%s: isCheckout = %v, want %v", tc.name, got, tc.want)
		}
	}
}
