package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/fakevm"
	"github.com/harden-runner/harden-runner/internal/testnet"
)

// TestActionImageEndToEnd packages the Action (dist/build.sh, then
// `docker build` of dist/Dockerfile, offline) and runs its container the
// way the runner does — its env, its mounts, the docker socket — against a
// dockerd inside a fake VM (DESIGN.md "Docker in tests"). The main step
// must leave the agent enforcing inside the VM's network after its helper
// container is gone; the post step must stop it and write the summary.
// Neither the machine's dockerd nor its network is touched.
func TestActionImageEndToEnd(t *testing.T) {
	testnet.Skip(t, "dnsmasq", "curl", "nsenter", "dockerd", "docker", "setpriv")
	n := testnet.New(t)
	n.StartDNS(map[string][]netip.Addr{"allowed.test": {testnet.Host4(10)}, "blocked.test": {testnet.Host4(11)}})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	n.StartServers(self, "tls::443")

	// The image content, built as a release is.
	out := filepath.Join(t.TempDir(), "image")
	build := exec.Command("./dist/build.sh")
	build.Env = append(os.Environ(), "OUT="+out)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("dist/build.sh: %v\n%s", err, b)
	}

	vm := fakevm.Start(t, n.Runner)
	// The VM's resolv.conf names the test DNS server (in the VM's own mount
	// namespace only), so the agent's upstream is inside the test network.
	if b, err := vm.Command("mount", "--bind", filepath.Join("/etc/netns", n.Runner, "resolv.conf"), "/etc/resolv.conf").CombinedOutput(); err != nil {
		t.Fatalf("bind resolv.conf in the VM: %v %s", err, b)
	}
	d := vm.StartDockerd(t)
	docker := func(args ...string) *exec.Cmd {
		c := exec.Command("docker", append([]string{"-H", "unix://" + d.Socket}, args...)...)
		c.Env = append(os.Environ(), "DOCKER_BUILDKIT=0", "DOCKER_API_VERSION=1.41", "DOCKER_CONFIG="+d.Dir)
		return c
	}
	if b, err := docker("build", "-q", "-t", "harden-runner:e2e", out).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, b)
	}

	// The runner's directories on the VM.
	tmp := t.TempDir()
	dirs := map[string]string{}
	for _, d := range []string{"home", "workflow", "file_commands", "workspace", "opt"} {
		dirs[d] = filepath.Join(tmp, d)
		if err := os.MkdirAll(dirs[d], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dirs["workspace"], "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fc := dirs["file_commands"]
	for _, f := range []string{"set_output_1", "save_state_1", "step_summary_1", "set_output_2", "step_summary_2"} {
		if err := os.WriteFile(filepath.Join(fc, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runAction := func(entrypoint string, env ...string) (string, error) {
		args := []string{"run", "--rm", "--network", "none", "--workdir", "/github/workspace",
			"-v", d.Socket + ":/var/run/docker.sock",
			"-v", dirs["home"] + ":/github/home", "-v", dirs["workflow"] + ":/github/workflow",
			"-v", fc + ":/github/file_commands", "-v", dirs["workspace"] + ":/github/workspace",
			"-e", "HOME=/github/home", "-e", "GITHUB_WORKSPACE=/github/workspace", "-e", "GITHUB_ACTIONS=true",
			"-e", "GITHUB_REPOSITORY=octo/repo", "-e", "GITHUB_EVENT_NAME=push",
			"-e", "INPUT_EGRESS-POLICY=block", "-e", "INPUT_ALLOWED-ENDPOINTS=allowed.test:443",
			"-e", "INPUT_DISABLE-SUDO=false", "-e", "INPUT_DISABLE-FILE-MONITORING=false", "-e", "INPUT_TOKEN=",
			"-e", "HARDEN_RUNNER_DIR=" + dirs["opt"], "--entrypoint", entrypoint}
		for _, e := range env {
			args = append(args, "-e", e)
		}
		b, err := docker(append(args, "harden-runner:e2e")...).CombinedOutput()
		return string(b), err
	}

	t0 := time.Now()
	outMain, err := runAction("/main", "GITHUB_OUTPUT=/github/file_commands/set_output_1",
		"GITHUB_STATE=/github/file_commands/save_state_1", "GITHUB_STEP_SUMMARY=/github/file_commands/step_summary_1")
	t.Logf("main step (%v):\n%s", time.Since(t0), outMain)
	if err != nil {
		t.Fatalf("main step: %v", err)
	}
	state, _ := os.ReadFile(filepath.Join(fc, "save_state_1"))
	if !strings.Contains(string(state), "harden_runner_started") {
		t.Errorf("state file: %q", state)
	}
	// The step returns once the agent enforces; docker removes the helper
	// (AutoRemove) right after it exits.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ps, _ := docker("ps", "-aq").Output()
		if len(strings.TrimSpace(string(ps))) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("containers left 10 s after the main step: %s", ps)
			break
		}
	}

	curl := func(name string) error {
		return n.In(n.Runner, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
			"curl", "-sk", "-o", "/dev/null", "--max-time", "5", "https://"+name+"/").Run()
	}
	if err := curl("allowed.test"); err != nil {
		t.Errorf("curl allowed.test in the VM's network: %v", err)
	}
	if err := curl("blocked.test"); err == nil {
		t.Error("curl blocked.test succeeded in the VM's network")
	}
	if len(n.HitsTo("tcp", testnet.Host4(11), 443)) != 0 {
		t.Error("the blocked host was reached")
	}

	// A second main step in the same job (e.g. `uses:` twice) is a no-op.
	outAgain, err := runAction("/main", "GITHUB_OUTPUT=/github/file_commands/set_output_1",
		"GITHUB_STATE=/github/file_commands/save_state_1", "GITHUB_STEP_SUMMARY=/github/file_commands/step_summary_1")
	if err != nil || !strings.Contains(outAgain, "already enforcing") {
		t.Errorf("second main step: %v\n%s", err, outAgain)
	}

	outPost, err := runAction("/post", "STATE_harden_runner_started=true",
		"GITHUB_OUTPUT=/github/file_commands/set_output_2", "GITHUB_STEP_SUMMARY=/github/file_commands/step_summary_2")
	t.Logf("post step:\n%s", outPost)
	if err != nil {
		t.Fatalf("post step: %v", err)
	}
	summary, _ := os.ReadFile(filepath.Join(fc, "step_summary_2"))
	if !strings.Contains(string(summary), "blocked") || !strings.Contains(string(summary), "blocked\\.test") {
		t.Errorf("summary lacks the blocked name:\n%s", summary)
	}
	var rep struct {
		Mode   string `json:"mode"`
		Counts struct {
			DNSBlockedNames int `json:"dns_blocked_names"`
		} `json:"counts"`
		Agent struct {
			StoppedCleanly bool `json:"stopped_cleanly"`
		} `json:"agent"`
	}
	b, err := os.ReadFile(filepath.Join(dirs["home"], "harden-runner-report", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil || rep.Mode != "block" || rep.Counts.DNSBlockedNames < 1 || !rep.Agent.StoppedCleanly {
		t.Errorf("report: %+v %v", rep, err)
	}
	outputs, _ := os.ReadFile(filepath.Join(fc, "set_output_2"))
	if !strings.Contains(string(outputs), "blocked-count<<") || !strings.Contains(string(outputs), "report-path<<") {
		t.Errorf("outputs: %q", outputs)
	}
	if tables, _ := n.In(n.Runner, "nft", "list", "tables").CombinedOutput(); strings.Contains(string(tables), "harden_runner") {
		t.Errorf("firewall left after the post step: %s", tables)
	}
}
