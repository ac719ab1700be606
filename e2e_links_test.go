package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// TestRunLinksAreNotTheirNames: traffic that stays on the machine (lo,
// docker's bridges) is exempt from the policy, but not by the link's name:
// root (a step with sudo) renames the uplink like a docker bridge, swaps
// it with lo, or builds a bridge called br-x around it, and then probes a
// host the policy does not allow. The probe never reaches the far side.
// Each case gets its own world: the attack leaves the runner's links
// rearranged.
func TestRunLinksAreNotTheirNames(t *testing.T) {
	const reroute = "ip route replace default via 198.18.0.2 && "
	const probe = "sleep 0.2 && { curl -sk --max-time 3 https://198.18.1.11/ && exit 9; exit 0; }"
	for _, tc := range []struct {
		name, attack, note string
	}{
		{"uplink renamed br-x", "ip link set eth0 down && ip link set eth0 name br-x && ip link set br-x up && " + reroute + probe,
			`interface "br-x" is named like one of docker's bridges but is of kind veth`},
		{"uplink renamed docker0", "ip link set eth0 down && ip link set eth0 name docker0 && ip link set docker0 up && " + reroute + probe,
			`interface "docker0" is named like one of docker's bridges but is of kind veth`},
		{"uplink renamed lo", "ip link set lo down && ip link set lo name lox && ip link set lox up && ip link set eth0 down && " +
			"ip link set eth0 name lo && ip link set lo up && " + reroute + probe, ""},
		{"bridge br-x around the uplink", "ip link add br-x type bridge && ip addr flush dev eth0 && ip link set eth0 master br-x && " +
			"ip addr add 198.18.0.1/24 dev br-x && ip link set br-x up && " + reroute + probe,
			""}, // the uplink here is a veth, as docker's ports are: the subnet check stops it
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			dir := filepath.Join(w.tmp, "report")
			out, err := w.In(w.Runner, w.bin, "run", "--egress-policy", "block", "--upstream", "198.18.0.2", "--on-tamper", "report",
				"--report-dir", dir, "--disable-file-monitoring", "--", "sh", "-c", tc.attack).CombinedOutput()
			if err != nil {
				t.Errorf("run: %v (exit 9: the probe got an answer; other: the attack did not run)\n%s", err, out)
			}
			if hits := w.HitsTo("tcp", testnet.Host4(11), 443); len(hits) != 0 {
				t.Errorf("the blocked probe reached the far side: %+v", hits)
			}
			if tc.note == "" {
				return
			}
			rep := readAgentNotes(t, dir)
			var noted bool
			for _, m := range rep.Agent.Warnings {
				noted = noted || strings.Contains(m.Message, tc.note)
			}
			if !noted {
				t.Errorf("no warning %q in the report: %+v", tc.note, rep.Agent.Warnings)
			}
		})
	}
}
