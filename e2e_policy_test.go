package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// TestRunLargePolicyFile: a policy file of 100,000 entries (a pasted list
// of cloud ranges, too long for one argument) through `run --policy`, with
// --allowed-endpoints beside it (the union applies). Judged by the far
// end's logs: what the lists allow gets through, the rest does not.
func TestRunLargePolicyFile(t *testing.T) {
	w := newWorld(t)
	var b strings.Builder
	b.WriteString("# 100,000 entries\negress-policy: block\nallowed-endpoints:\n  - allowed.test:443\n  - 198.18.1.100:443\n  - \"[2001:db8:1::64]:443\"\n")
	for i := range 100_000 - 3 {
		if i%2 == 0 {
			fmt.Fprintf(&b, "  - 198.19.%d.%d:443\n", i/2/128%256, i/2%128*2)
		} else {
			fmt.Fprintf(&b, "  - \"[2001:db8:2::%x:%x]:443\"\n", i/0x10000, i%0x10000)
		}
	}
	file := filepath.Join(w.tmp, "policy.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("policy file: %d bytes", b.Len())
	wl := workload{
		{"name-allowed", "curl -sk -4 --max-time 5 https://allowed.test/"},
		{"list-v4", "curl -sk --max-time 5 https://198.18.1.100/"},
		{"list-v6", "curl -sk --max-time 5 'https://[2001:db8:1::64]/'"},
		{"flag-entry", "curl -sk --max-time 5 https://198.18.1.102/"},
		{"not-listed-v4", "curl -sk --max-time 5 https://198.18.1.101/"},
		{"not-listed-v6", "curl -sk --max-time 5 'https://[2001:db8:1::65]/'"},
		{"not-listed-name", "curl -sk --max-time 5 https://blocked.test/"},
	}
	start := time.Now()
	status, _ := w.run(t, []string{"--policy", file, "--allowed-endpoints", "198.18.1.102:443", "--upstream", "198.18.0.2"}, wl)
	t.Logf("run with %d entries took %v (whole workload included)", 100_000+1, time.Since(start))
	h4, h6 := testnet.Host4, testnet.Host6
	for _, c := range []struct {
		name string
		hits int
		want bool
	}{
		{"name-allowed", len(w.HitsTo("tcp", h4(10), 443)), true},
		{"list-v4", len(w.HitsTo("tcp", h4(100), 443)), true},
		{"list-v6", len(w.HitsTo("tcp", h6(100), 443)), true},
		{"flag-entry", len(w.HitsTo("tcp", h4(102), 443)), true},
		{"not-listed-v4", len(w.HitsTo("tcp", h4(101), 443)), false},
		{"not-listed-v6", len(w.HitsTo("tcp", h6(101), 443)), false},
		{"not-listed-name", len(w.HitsTo("tcp", h4(11), 443)), false},
	} {
		if (status[c.name] == 0) != c.want || (c.hits > 0) != c.want {
			t.Errorf("%s: exit status %d, server hits %d; want through=%v", c.name, status[c.name], c.hits, c.want)
		}
	}
	if w.DNSAsked("blocked.test") {
		t.Error("blocked.test reached the upstream DNS server")
	}
}

// TestRunRejectsBadPolicyFile: a bad entry deep in a policy file stops
// `run` before anything is installed, naming the file, line and value;
// so does a mode that disagrees with --egress-policy.
func TestRunRejectsBadPolicyFile(t *testing.T) {
	w := newWorld(t)
	file := filepath.Join(w.tmp, "bad.yml")
	content := "egress-policy: block\nallowed-endpoints:\n  - a.test:443\n  - git*hub.com:443\n"
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(w.tmp, "good.yml")
	if err := os.WriteFile(good, []byte("egress-policy: block\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--policy", file}, file + `:4: allowed-endpoints: entry "git*hub.com:443"`},
		{[]string{"--policy", good, "--egress-policy", "audit"}, "disagree"},
		{[]string{"--policy", filepath.Join(w.tmp, "missing.yml")}, "missing.yml"},
	} {
		args := append([]string{w.bin, "run", "--report-dir", filepath.Join(w.tmp, "bad")}, c.flags...)
		out, err := w.In(w.Runner, append(args, "--", "true")...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit status 2", c.flags, err)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%v: error %q does not contain %q", c.flags, out, c.want)
		}
		if tableExists(w) {
			t.Fatalf("%v: table left behind after bad input", c.flags)
		}
	}
}
