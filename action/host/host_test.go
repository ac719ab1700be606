package host_test

import (
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/action/host"
	"github.com/harden-runner/harden-runner/agent"
	"github.com/harden-runner/harden-runner/internal/fakevm"
	"github.com/harden-runner/harden-runner/internal/testnet"
	"github.com/harden-runner/harden-runner/settings"
)

func TestMain(m *testing.M) {
	testnet.MaybeServe()
	os.Exit(m.Run())
}

// hostTestNet is the test network (allowed.test and blocked.test with a TLS
// server each) and the static binary the helper would drop on the VM.
func hostTestNet(t *testing.T) (*testnet.Net, string) {
	t.Helper()
	testnet.Skip(t, "dnsmasq", "curl", "nsenter", "setpriv")
	n := testnet.New(t)
	n.StartDNS(map[string][]netip.Addr{"allowed.test": {testnet.Host4(10)}, "blocked.test": {testnet.Host4(11)}})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	n.StartServers(self, "tls::443")
	return n, fakevm.Build(t)
}

// checkEnforces checks, by the far end's log, that the VM's network lets
// an unprivileged curl reach allowed.test and not blocked.test.
func checkEnforces(t *testing.T, n *testnet.Net) {
	t.Helper()
	curl := func(name string) error {
		return n.In(n.Runner, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
			"curl", "-sk", "-o", "/dev/null", "--max-time", "5", "https://"+name+"/").Run()
	}
	if err := curl("allowed.test"); err != nil {
		t.Errorf("curl allowed.test: %v", err)
	}
	if err := curl("blocked.test"); err == nil {
		t.Error("curl blocked.test succeeded")
	}
	if hits := n.HitsTo("tcp", testnet.Host4(11), 443); len(hits) != 0 {
		t.Errorf("blocked host was reached: %v", hits)
	}
}

// TestInstallInFakeVM installs the agent the way the helper container
// does, into a fake VM (PID 1 = the VM's init, network = the test's runner
// namespace), checks that it enforces for the VM's processes, that a second
// install is a no-op, that an install from the wrong namespace refuses,
// and that host-stop leaves a complete journal and no firewall behind.
func TestInstallInFakeVM(t *testing.T) {
	n, bin := hostTestNet(t)
	vm := fakevm.Start(t, n.Runner)
	dir := filepath.Join(t.TempDir(), "opt-harden-runner")
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "main.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := host.Config{Dir: dir, NoSystemd: true, Daemon: agent.DaemonConfig{
		Settings: settingsForTest(t, "block", "allowed.test:443", true), Workspace: ws,
	}}
	cj, _ := json.Marshal(cfg)
	install := func(c *exec.Cmd) (*host.Result, string, error) {
		out, err := c.Output()
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		var res host.Result
		if err == nil {
			if jerr := json.Unmarshal(out, &res); jerr != nil {
				t.Fatalf("install output %q: %v", out, jerr)
			}
		}
		return &res, stderr, err
	}

	// Wrong host: the machine's PID 1 is not on the runner namespace's network.
	wrongDir := filepath.Join(t.TempDir(), "wrong")
	wcfg := cfg
	wcfg.Dir = wrongDir
	wj, _ := json.Marshal(wcfg)
	_, stderr, err := install(exec.Command("nsenter", "--net=/var/run/netns/"+n.Runner, bin, "install", "--config-json", string(wj)))
	if err == nil || !strings.Contains(stderr, "PID 1 is not on the network this helper was given") {
		t.Fatalf("install from the wrong namespace: err %v, stderr %q", err, stderr)
	}
	if _, err := os.Stat(wrongDir); !os.IsNotExist(err) {
		t.Errorf("the refused install wrote %s (%v)", wrongDir, err)
	}

	res, stderr, err := install(vm.Command(bin, "install", "--config-json", string(cj)))
	if err != nil {
		t.Fatalf("install: %v\n%s", err, stderr)
	}
	if res.Already || res.Pid <= 0 || res.How != "detached" {
		t.Fatalf("install result %+v", res)
	}
	t.Logf("install: %+v (%s)", res, stderr)
	res2, stderr, err := install(vm.Command(bin, "install", "--config-json", string(cj)))
	if err != nil || !res2.Already {
		t.Fatalf("second install: %+v %v %s", res2, err, stderr)
	}

	// The VM's processes are policed: an allowed name connects, a blocked one does not.
	checkEnforces(t, n)
	if len(n.HitsTo("tcp", testnet.Host4(10), 443)) == 0 {
		t.Error("allowed host was not reached")
	}
	// The workspace was populated before the agent started (a self-hosted
	// runner): it is covered from the start, with no wait for it to settle.
	// Tamper with a workspace file, as a build step might.
	if err := os.WriteFile(filepath.Join(ws, "main.go"), []byte("package evil\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	if out, err := vm.Command(bin, "host-stop", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("host-stop: %v\n%s", err, out)
	}
	// res.Pid is a pid of the VM's PID namespace: look at it from inside.
	if out, _ := vm.Command("cat", "/proc/"+itoa(res.Pid)+"/cmdline").Output(); strings.Contains(string(out), "agent") {
		t.Errorf("agent pid %d still alive after host-stop", res.Pid)
	}
	tables, _ := n.In(n.Runner, "nft", "list", "tables").CombinedOutput()
	if strings.Contains(string(tables), "harden_runner") {
		t.Errorf("firewall table left behind: %s", tables)
	}
	j, err := os.ReadFile(filepath.Join(dir, "state", agent.StateJournal))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"stop":`, `"name":"blocked.test"`, `"verdict":"blocked"`, `"path":"main.go"`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("journal lacks %s", want)
		}
	}
	// A second stop (post re-run) is not an error: the agent stopped cleanly.
	if out, err := vm.Command(bin, "host-stop", "--dir", dir).CombinedOutput(); err != nil {
		t.Errorf("second host-stop: %v\n%s", err, out)
	}
}

// TestInstallWithSystemd: where PID 1 is systemd (every GitHub-hosted
// runner), the agent becomes a transient unit of the VM's own systemd, in
// its own cgroup, so no container's end takes it along; it enforces, a
// second install changes nothing, and host-stop stops the unit cleanly.
func TestInstallWithSystemd(t *testing.T) {
	n, bin := hostTestNet(t)
	vm := fakevm.StartSystemd(t, n.Runner)
	dir := filepath.Join(t.TempDir(), "opt-harden-runner")
	cj, _ := json.Marshal(host.Config{Dir: dir, Daemon: agent.DaemonConfig{
		Settings: settingsForTest(t, "block", "allowed.test:443", false)}})
	out, err := vm.Command(bin, "install", "--config-json", string(cj)).Output()
	if err != nil {
		t.Fatalf("install: %v %s", err, out)
	}
	var res host.Result
	if err := json.Unmarshal(out, &res); err != nil || res.How != "systemd" || res.Pid <= 0 || res.Already {
		t.Fatalf("install result %q: %v", out, err)
	}
	systemctl := func(args ...string) string {
		b, _ := vm.Command(append([]string{"systemctl"}, args...)...).Output()
		return strings.TrimSpace(string(b))
	}
	if s := systemctl("is-active", host.Unit); s != "active" {
		t.Errorf("unit %s is %q", host.Unit, s)
	}
	if s := systemctl("show", "-P", "MainPID", host.Unit); s != itoa(res.Pid) {
		t.Errorf("unit's main pid %s, install said %d", s, res.Pid)
	}
	if cg, _ := vm.Command("cat", "/proc/"+itoa(res.Pid)+"/cgroup").Output(); !strings.Contains(string(cg), host.Unit+".service") {
		t.Errorf("agent's cgroups: %s", cg)
	}
	if out, err := vm.Command(bin, "install", "--config-json", string(cj)).Output(); err != nil || !strings.Contains(string(out), `"already":true`) {
		t.Errorf("second install: %v %s", err, out)
	}

	checkEnforces(t, n)

	if out, err := vm.Command(bin, "host-stop", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("host-stop: %v\n%s", err, out)
	}
	// host-stop returns at the agent's final journal flush; the process
	// exits (and systemd notices) just after it.
	for deadline := time.Now().Add(5 * time.Second); systemctl("is-active", host.Unit) == "active"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("unit still active 5 s after host-stop")
			break
		}
	}
	if tables, _ := n.In(n.Runner, "nft", "list", "tables").CombinedOutput(); strings.Contains(string(tables), "harden_runner") {
		t.Errorf("firewall table left behind: %s", tables)
	}
	j, err := os.ReadFile(filepath.Join(dir, "state", agent.StateJournal))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"stop":`, `"name":"blocked.test"`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("journal lacks %s", want)
		}
	}
}

// TestStopAfterKill: an agent killed during the job together with its
// supervisor (so nothing starts it again) makes host-stop fail.
func TestStopAfterKill(t *testing.T) {
	testnet.Skip(t, "dnsmasq", "nsenter")
	n := testnet.New(t)
	n.StartDNS(nil)
	bin := fakevm.Build(t)
	vm := fakevm.Start(t, n.Runner)
	dir := filepath.Join(t.TempDir(), "opt")
	cj, _ := json.Marshal(host.Config{Dir: dir, NoSystemd: true, Daemon: agent.DaemonConfig{
		Settings: settingsForTest(t, "audit", "", false)}})
	out, err := vm.Command(bin, "install", "--config-json", string(cj)).Output()
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	var res host.Result
	if err := json.Unmarshal(out, &res); err != nil || res.Pid == 0 {
		t.Fatalf("install result %q: %v", out, err)
	}
	// res.Pid is a pid of the VM's PID namespace: kill it from inside,
	// its supervisor (its parent) first.
	if out, err := vm.Command("sh", "-c", `kill -KILL $(cut -d' ' -f4 /proc/$1/stat) && kill -KILL $1`, "kill", itoa(res.Pid)).CombinedOutput(); err != nil {
		t.Fatalf("kill: %v %s", err, out)
	}
	for i := 0; i < 200; i++ {
		b, _ := vm.Command("cat", "/proc/"+itoa(res.Pid)+"/cmdline").Output()
		if !strings.Contains(string(b), "agent") {
			break
		}
		sleepMS(10)
	}
	out, err = vm.Command(bin, "host-stop", "--dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not running") {
		t.Errorf("host-stop after kill: %v %s", err, out)
	}
	// Fail closed: the killed agent's table stays until someone removes it.
	_ = n.In(n.Runner, "nft", "delete", "table", "inet", "harden_runner").Run()
}

func itoa(i int) string { return strconv.Itoa(i) }

func sleepMS(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }

// settingsForTest are the Action's settings for mode and endpoints, with
// the test internet's DNS server as the upstream.
func settingsForTest(t *testing.T, mode, endpoints string, fileMonitoring bool) settings.Settings {
	t.Helper()
	in := map[string]string{settings.EgressPolicy: mode, settings.AllowedEndpoints: endpoints}
	s, err := settings.Parse(settings.Inputs, func(k string) string { return in[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Upstreams = []netip.AddrPort{netip.MustParseAddrPort("198.18.0.2:53")}
	s.FileMonitoring = fileMonitoring
	return *s
}
