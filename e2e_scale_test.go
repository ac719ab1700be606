package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

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

// tcpFlood (goClient mode "tcpflood ADDR N DIR"): open N TCP connections to
// the DNS server ADDR, send a query on each, write DIR/flood.pid, hold
// them for 20 s without reading, then exit.
func tcpFlood(args []string) int {
	n, err := strconv.Atoi(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var conns []net.Conn
	for i := range n {
		c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tcpflood: connection %d: %v\n", i, err)
			break
		}
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("f%d.allowed.test.", i), dns.TypeA)
		if err := (&dns.Conn{Conn: c}).WriteMsg(m); err != nil {
			fmt.Fprintf(os.Stderr, "tcpflood: query %d: %v\n", i, err)
		}
		conns = append(conns, c)
	}
	fmt.Printf("tcpflood: %d connections\n", len(conns))
	if err := os.WriteFile(filepath.Join(args[2], "flood.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return 1
	}
	time.Sleep(20 * time.Second)
	return 0
}

// TestRunTCPDNSFloodAtExit is the shutdown hang of issue 13: thousands of
// TCP DNS queries in flight when the command ends (held by a process that
// outlives it) made `run` hang for minutes without a report. Now run ends
// within its bound, and the report's agent section counts what the
// resolver dropped, not zero.
func TestRunTCPDNSFloodAtExit(t *testing.T) {
	w := newWorld(t)
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(w.tmp, "flood.pid")); err == nil {
			if pid, err := strconv.Atoi(string(b)); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	wl := workload{{"flood", "HR_GOCLIENT=tcpflood " + w.self + " 198.18.0.2:53 3000 " + w.tmp + " >" + w.tmp + "/flood.out 2>&1 & " +
		"i=0; while [ ! -e " + w.tmp + "/flood.pid ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat " + w.tmp + "/flood.out"}}
	reportDir := filepath.Join(w.tmp, "report-flood")
	script, _ := w.script(wl)
	start := time.Now()
	cmd := w.In(w.Runner, w.bin, "run", "--report-dir", reportDir, "--workspace", w.tmp, "--disable-file-monitoring",
		"--egress-policy", "block", "--allowed-endpoints", "*.allowed.test:443", "--upstream", "198.18.0.2",
		"--leftover-wait", "1s",
		"--", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", script)
	done := make(chan error, 1)
	var out []byte
	go func() {
		var err error
		out, err = cmd.CombinedOutput()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out)
		}
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("run did not end within 90 s of a TCP DNS flood")
	}
	t.Logf("run took %v\n%s", time.Since(start), out)
	if b, _ := os.ReadFile(filepath.Join(w.tmp, "flood.out")); !strings.Contains(string(b), "3000 connections") {
		t.Fatalf("the flood did not get its connections up: %s", b)
	}
	b, err := os.ReadFile(filepath.Join(reportDir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Agent struct {
			Lost struct {
				ByComponent map[string]json.RawMessage `json:"by_component"`
			} `json:"lost"`
			Warnings []struct {
				Message string `json:"message"`
			} `json:"warnings"`
		} `json:"agent"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	// The process holding the queries outlives COMMAND: run kills it after
	// --leftover-wait, before the resolver closes, and says so. (The
	// resolver's own bound with queries still in flight, counted as lost,
	// is TestCloseWithTCPQueriesInFlight.)
	lost, err := strconv.ParseUint(string(rep.Agent.Lost.ByComponent["resolver"]), 10, 64)
	t.Logf("resolver lost: %s; warnings %+v", rep.Agent.Lost.ByComponent["resolver"], rep.Agent.Warnings)
	if err != nil {
		t.Errorf("the report has no lost count for the resolver: %q", rep.Agent.Lost.ByComponent["resolver"])
	}
	killed := false
	for _, w := range rep.Agent.Warnings {
		killed = killed || strings.Contains(w.Message, "goclient") && strings.Contains(w.Message, "killed")
	}
	if !killed && lost == 0 {
		t.Errorf("the report neither names the killed flood holder nor counts queries lost: %+v", rep.Agent.Warnings)
	}
}
