package agent

import (
	"testing"

	"github.com/harden-runner/harden-runner/event"
)

func TestIsCheckout(t *testing.T) {
	worker := event.Ancestor{PID: 10, Exe: "/home/runner/actions-runner/bin/Runner.Worker"}
	node := "/home/runner/actions-runner/externals/node20/bin/node"
	entry := node + " /home/runner/work/_actions/actions/checkout/v4/dist/index.js"
	git := func(root event.Ancestor) event.Process {
		return event.Process{PID: 30, Exe: "/usr/bin/git", Cmdline: "git checkout --force -B main", Parents: []event.Ancestor{root, worker}}
	}
	for _, tc := range []struct {
		name string
		p    event.Process
		want bool
	}{
		{"git under checkout", git(event.Ancestor{PID: 20, Exe: node, Cmdline: entry}), true},
		{"the step root itself", event.Process{PID: 20, Exe: node, Cmdline: entry, Parents: []event.Ancestor{worker}}, true},
		{"another action", git(event.Ancestor{PID: 20, Exe: node, Cmdline: node + " /home/runner/work/_actions/actions/setup-go/v5/dist/setup/index.js"}), false},
		{"a fork of checkout", git(event.Ancestor{PID: 20, Exe: node, Cmdline: node + " /home/runner/work/_actions/evil/checkout/v4/dist/index.js"}), false},
		{"a run: step naming checkout", git(event.Ancestor{PID: 20, Exe: "/usr/bin/bash", Cmdline: "/usr/bin/bash -e /home/runner/work/_temp/x.sh /_actions/actions/checkout/v4/dist/index.js"}), false},
		{"node with a preload", git(event.Ancestor{PID: 20, Exe: node, Cmdline: node + " -r /tmp/evil.js /home/runner/work/_actions/actions/checkout/v4/dist/index.js"}), false},
		{"not under the runner", event.Process{PID: 30, Exe: "/usr/bin/git", Cmdline: "git checkout", Parents: []event.Ancestor{{PID: 20, Exe: node, Cmdline: entry}, {PID: 1, Exe: "/sbin/init"}}}, false},
		{"unknown", event.Process{Unknown: "gone"}, false},
		{"under a Runner.Worker that is not the pinned one", git(event.Ancestor{PID: 20, Exe: node, Cmdline: entry}), false},
	} {
		runner := worker.PID
		if tc.name == "under a Runner.Worker that is not the pinned one" {
			runner = 11
		}
		if got := isCheckout(tc.p, runner); got != tc.want {
			t.Errorf("%s: isCheckout = %v, want %v", tc.name, got, tc.want)
		}
	}
}
