package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// TestRunRestoresTamperedTable: a command with root (as a step with sudo)
// deletes our table and, once it is back, probes a host the policy does
// not allow. The probe is refused and never reaches the far side; report.json's
// agent errors name the deletion and nft; `run` fails with --on-tamper fail
// (the default) and keeps the command's status with --on-tamper report.
func TestRunRestoresTamperedTable(t *testing.T) {
	w := newWorld(t)
	// The probe goes once the table is back (how fast that is, within
	// 100 ms, bench/tamper.sh measures; a fixed wait here would flake on
	// a loaded machine); nft gives up after 2 s.
	attack := "nft delete table inet harden_runner && for i in $(seq 200); do nft list table inet harden_runner >/dev/null 2>&1 && break; sleep 0.01; done; " +
		"curl -sk --max-time 3 https://198.18.1.11/ && exit 9; exit 0"
	for _, mode := range []string{"fail", "report"} {
		t.Run(mode, func(t *testing.T) {
			dir := filepath.Join(w.tmp, "tamper-"+mode)
			out, err := w.In(w.Runner, w.bin, "run", "--egress-policy", "block", "--upstream", "198.18.0.2",
				"--on-tamper", mode, "--report-dir", dir, "--disable-file-monitoring", "--", "sh", "-c", attack).CombinedOutput()
			if mode == "fail" && (err == nil || !strings.Contains(string(out), "tampered with")) {
				t.Errorf("run did not fail on tampering: %v\n%s", err, out)
			}
			if mode == "report" && err != nil {
				t.Errorf("run failed with --on-tamper report (or the probe got out: exit 9): %v\n%s", err, out)
			}
			if hits := w.HitsTo("tcp", testnet.Host4(11), 443); len(hits) != 0 {
				t.Errorf("the blocked probe reached the far side: %+v", hits)
			}
			rep := readAgentNotes(t, dir)
			var named bool
			for _, e := range rep.Agent.Errors {
				named = named || e.Component == "guard" && strings.Contains(e.Message, "delete table inet harden_runner") &&
					strings.Contains(e.Message, "nft")
			}
			if !named {
				t.Errorf("report's agent errors do not name the deletion and nft: %+v", rep.Agent.Errors)
			}
		})
	}
}

// TestRunReportsRewritesAfterOurRules: root adds a chain that runs after
// ours and rewrites an allowed flow's destination to a blocked host. The
// packet has passed our rules by then, so it gets there; the rewrite is
// a tamper error naming the rule and nft, and run fails.
func TestRunReportsRewritesAfterOurRules(t *testing.T) {
	w := newWorld(t)
	attack := "nft add table ip evil && nft add chain ip evil o '{ type filter hook output priority 10; }' && " +
		"nft add rule ip evil o ip daddr 198.18.1.10 udp dport 9999 ip daddr set 198.18.1.11 && " +
		"echo x | socat -u - UDP:198.18.1.10:9999"
	dir := filepath.Join(w.tmp, "rewrite")
	out, err := w.In(w.Runner, w.bin, "run", "--egress-policy", "block", "--upstream", "198.18.0.2",
		"--allowed-endpoints", "198.18.1.10:9999", "--report-dir", dir, "--disable-file-monitoring", "--", "sh", "-c", attack).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "tampered with") {
		t.Errorf("run did not fail on the rewrite: %v\n%s", err, out)
	}
	rep := readAgentNotes(t, dir)
	var named bool
	for _, e := range rep.Agent.Errors {
		named = named || e.Component == "guard" && strings.Contains(e.Message, "add rule ip evil o (payload set)") && strings.Contains(e.Message, "nft")
	}
	if !named {
		t.Errorf("report's agent errors do not name the rewriting rule and nft: %+v", rep.Agent.Errors)
	}
}

// agentNotes is what readAgentNotes reads of report.json: the agent's
// errors and warnings.
type agentNotes struct {
	Agent struct {
		Errors   []struct{ Component, Message string } `json:"errors"`
		Warnings []struct{ Component, Message string } `json:"warnings"`
	} `json:"agent"`
}

// readAgentNotes reads the agent's errors and warnings from report.json in dir.
func readAgentNotes(t *testing.T, dir string) agentNotes {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep agentNotes
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}
