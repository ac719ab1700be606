// Package testnet builds the test topology of DESIGN.md for system tests: a
// "runner" network namespace and an "internet" namespace joined by a veth
// pair, a real DNS server (dnsmasq) and logging TCP/UDP/HTTP(S)/ICMP
// servers in the internet namespace. Nothing here touches the namespace the
// test process runs in: every address and rule lives in namespaces that
// New creates and t.Cleanup removes.
//
// Addresses: runner 198.18.0.1 and 2001:db8::1; the internet side of the
// link 198.18.0.2 and 2001:db8::2 (dnsmasq listens there); every address of
// 198.18.1.0/24 and 2001:db8:1::/64 is local to the internet namespace, so
// test hosts need no setup: a server listening on the wildcard address sees
// which one the client dialled.
package testnet

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Fixed addresses of the topology.
var (
	Runner4 = netip.MustParseAddr("198.18.0.1")
	Runner6 = netip.MustParseAddr("2001:db8::1")
	DNS4    = netip.MustParseAddr("198.18.0.2")
	DNS6    = netip.MustParseAddr("2001:db8::2")
)

// Host4 and Host6 return the address of test host n (1..254) in the internet namespace.
func Host4(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 1, byte(n)}) }

// Host6 is Host4's IPv6 twin: 2001:db8:1::n (hex).
func Host6(n int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%x", n))
}

// Net is one runner/internet pair of namespaces.
type Net struct {
	t        testing.TB
	Runner   string // netns name of the runner side
	Internet string // netns name of the internet side
	Dir      string // scratch directory for logs and configs
	procs    []*exec.Cmd
}

// Skip skips t unless the test can build namespaces (root, ip, nft).
func Skip(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	for _, tool := range append([]string{"ip", "nft"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s in PATH", tool)
		}
	}
}

// New creates the two namespaces and the link between them.
func New(t testing.TB) *Net {
	t.Helper()
	Skip(t)
	id := fmt.Sprintf("%d%03d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	n := &Net{t: t, Runner: "hrrun" + id, Internet: "hrnet" + id, Dir: t.TempDir()}
	t.Cleanup(n.cleanup)
	vr, vi := "hrv"+id+"r", "hrv"+id+"i"
	if len(vr) > 15 {
		vr, vi = vr[len(vr)-15:], vi[len(vi)-15:]
	}
	steps := [][]string{
		{"ip", "netns", "add", n.Runner},
		{"ip", "netns", "add", n.Internet},
		{"ip", "link", "add", vr, "netns", n.Runner, "type", "veth", "peer", "name", vi, "netns", n.Internet},
		{"ip", "-n", n.Runner, "link", "set", "lo", "up"},
		{"ip", "-n", n.Internet, "link", "set", "lo", "up"},
		{"ip", "-n", n.Runner, "link", "set", vr, "name", "eth0"},
		{"ip", "-n", n.Internet, "link", "set", vi, "name", "eth0"},
		{"ip", "-n", n.Runner, "addr", "add", "198.18.0.1/24", "dev", "eth0"},
		{"ip", "-n", n.Internet, "addr", "add", "198.18.0.2/24", "dev", "eth0"},
		{"ip", "-n", n.Runner, "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad"},
		{"ip", "-n", n.Internet, "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad"},
		{"ip", "-n", n.Runner, "link", "set", "eth0", "up"},
		{"ip", "-n", n.Internet, "link", "set", "eth0", "up"},
		{"ip", "-n", n.Runner, "route", "add", "default", "via", "198.18.0.2"},
		{"ip", "-n", n.Runner, "-6", "route", "add", "default", "via", "2001:db8::2"},
		{"ip", "-n", n.Internet, "route", "add", "local", "198.18.1.0/24", "dev", "lo"},
		{"ip", "-n", n.Internet, "-6", "route", "add", "local", "2001:db8:1::/64", "dev", "lo"},
		// Servers may bind any test-host address (the local routes above
		// make IPv4 ones bindable; IPv6 needs this).
		{"ip", "netns", "exec", n.Internet, "sysctl", "-qw", "net.ipv6.ip_nonlocal_bind=1"},
		// Unprivileged ping (ICMP datagram sockets), as on Ubuntu.
		{"ip", "netns", "exec", n.Runner, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"},
	}
	// UDP replies need a real address to come from (a wildcard socket
	// answering for an address that is local only by route sends from the
	// link address instead), so the hosts UDP tests use get one.
	for _, h := range []int{10, 11, 53} {
		steps = append(steps,
			[]string{"ip", "-n", n.Internet, "addr", "add", Host4(h).String() + "/32", "dev", "lo"},
			[]string{"ip", "-n", n.Internet, "addr", "add", Host6(h).String() + "/128", "dev", "lo", "nodad"})
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("testnet: %s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	// `ip netns exec` bind-mounts this over /etc/resolv.conf for the runner.
	etc := filepath.Join("/etc/netns", n.Runner)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver 198.18.0.2\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *Net) cleanup() {
	for _, p := range n.procs {
		if p.Process != nil {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}
	for _, ns := range []string{n.Runner, n.Internet} {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	_ = os.RemoveAll(filepath.Join("/etc/netns", n.Runner))
}

// In returns a command that runs argv in namespace ns (with `ip netns exec`,
// so the runner side sees its own resolv.conf).
func (n *Net) In(ns string, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// Start starts a long-running process in namespace ns, killed at cleanup.
func (n *Net) Start(ns, logName string, argv ...string) *exec.Cmd {
	n.t.Helper()
	c := n.In(ns, argv...)
	f, err := os.Create(filepath.Join(n.Dir, logName))
	if err != nil {
		n.t.Fatal(err)
	}
	c.Stdout, c.Stderr = f, f
	if err := c.Start(); err != nil {
		n.t.Fatalf("testnet: start %v: %v", argv, err)
	}
	n.procs = append(n.procs, c)
	return c
}

// Stop ends a process from Start early.
func Stop(c *exec.Cmd) {
	if c.Process != nil {
		_ = c.Process.Kill()
		_, _ = c.Process.Wait()
	}
}

// StartDNS starts dnsmasq in the internet namespace, authoritative for the
// given names (a name covers its subdomains too, dnsmasq's address=/x/),
// logging every query it receives. Other names get NXDOMAIN.
func (n *Net) StartDNS(records map[string][]netip.Addr, extra ...string) {
	n.t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		n.t.Skip("needs dnsmasq")
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "no-resolv\nno-hosts\nbind-interfaces\nlisten-address=198.18.0.2\nlisten-address=2001:db8::2\n")
	fmt.Fprintf(&conf, "log-queries=extra\nlog-facility=%s\ncache-size=0\nlocal-ttl=30\nuser=root\npid-file=\n", n.DNSLogPath())
	for name, addrs := range records {
		for _, a := range addrs {
			fmt.Fprintf(&conf, "address=/%s/%s\n", name, a)
		}
	}
	for _, e := range extra {
		conf.WriteString(e + "\n")
	}
	// Anything not listed above is answered NXDOMAIN, locally.
	conf.WriteString("address=/#/\n")
	path := filepath.Join(n.Dir, "dnsmasq.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o644); err != nil {
		n.t.Fatal(err)
	}
	n.Start(n.Internet, "dnsmasq.out", "dnsmasq", "--keep-in-foreground", "--conf-file="+path)
	n.waitFor(func() bool {
		out, _ := n.In(n.Internet, "dig", "+short", "+time=1", "+tries=1", "@198.18.0.2", "ready.probe").CombinedOutput()
		return !strings.Contains(string(out), "timed out") && !strings.Contains(string(out), "refused")
	}, "dnsmasq to answer")
}

// DNSLogPath is where dnsmasq logs its queries.
func (n *Net) DNSLogPath() string { return filepath.Join(n.Dir, "dnsmasq.log") }

// DNSQueries returns the names dnsmasq was asked for, lower-cased, in order.
func (n *Net) DNSQueries() []string {
	b, _ := os.ReadFile(n.DNSLogPath())
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		// "... query[A] name.test from 198.18.0.1"
		i := strings.Index(line, " query[")
		if i < 0 {
			continue
		}
		f := strings.Fields(line[i:])
		if len(f) >= 2 {
			out = append(out, strings.ToLower(f[1]))
		}
	}
	return out
}

// DNSAsked reports whether dnsmasq saw a query for name (any case).
func (n *Net) DNSAsked(name string) bool {
	for _, q := range n.DNSQueries() {
		if q == strings.ToLower(strings.TrimSuffix(name, ".")) {
			return true
		}
	}
	return false
}

// StartServers runs the logging servers (see Serve) in the internet namespace.
// self is the path of a binary that calls ServeMain when HR_FAKEINET is set
// (the test binary itself: os.Args[0]).
func (n *Net) StartServers(self string, specs ...string) {
	n.t.Helper()
	n.StartServersIn(n.Internet, self, specs...)
}

// StartServersIn is StartServers in namespace ns (the runner's, for a test
// of what reaches the runner from outside). Every server logs to the same
// hit log; a hit's Local address says which side it was on.
func (n *Net) StartServersIn(ns, self string, specs ...string) {
	n.t.Helper()
	c := n.In(ns, append([]string{"env", "HR_FAKEINET=" + n.HitLogPath(), self}, specs...)...)
	out := filepath.Join(n.Dir, fmt.Sprintf("fakeinet-%d.out", len(n.procs)))
	f, err := os.Create(out)
	if err != nil {
		n.t.Fatal(err)
	}
	c.Stdout, c.Stderr = f, f
	if err := c.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.procs = append(n.procs, c)
	n.waitFor(func() bool {
		b, _ := os.ReadFile(out)
		if c.ProcessState != nil || strings.Contains(string(b), "fakeinet: ") && !strings.Contains(string(b), "ready") {
			n.t.Fatalf("testnet: fake internet servers failed: %s", b)
		}
		return strings.Contains(string(b), "fakeinet: ready")
	}, "fake internet servers")
}

// HitLogPath is where the fake internet's servers log hits, one JSON Hit a line.
func (n *Net) HitLogPath() string { return filepath.Join(n.Dir, "hits.jsonl") }

// Hits returns every hit the servers logged so far.
func (n *Net) Hits() []Hit {
	f, err := os.Open(n.HitLogPath())
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []Hit
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var h Hit
		if json.Unmarshal(sc.Bytes(), &h) == nil {
			out = append(out, h)
		}
	}
	return out
}

// HitsTo returns the hits whose destination is addr:port (port 0: any) and
// proto (tcp, udp, icmp).
func (n *Net) HitsTo(proto string, addr netip.Addr, port uint16) []Hit {
	var out []Hit
	for _, h := range n.Hits() {
		d, err := netip.ParseAddrPort(h.Local)
		if err != nil {
			continue
		}
		if h.Proto == proto && d.Addr().Unmap() == addr && (port == 0 || d.Port() == port) {
			out = append(out, h)
		}
	}
	return out
}

func (n *Net) waitFor(ok func() bool, what string) {
	n.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			n.t.Fatalf("testnet: timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
