package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/fakevm"
	"github.com/harden-runner/harden-runner/internal/testnet"
)

// actionVM is a fake VM with a dockerd, the Action's image built into it,
// and the runner's directories: what the runner gives a container action.
type actionVM struct {
	vm     *fakevm.VM
	n      *testnet.Net
	d      *fakevm.Dockerd
	dirs   map[string]string
	docker func(args ...string) *exec.Cmd
	// runAction runs the action's container the way the runner does.
	runAction func(entrypoint string, env ...string) (string, error)
}

func startActionVM(t *testing.T) *actionVM {
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
	v := &actionVM{vm: vm, n: n, d: d, dirs: dirs, docker: docker}
	v.runAction = func(entrypoint string, env ...string) (string, error) {
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

	return v
}

// post runs the post step (as the job's last step) and returns the summary it wrote.
func (v *actionVM) post(t *testing.T) []byte {
	t.Helper()
	out, err := v.runAction("/post", "STATE_harden_runner_started=true",
		"GITHUB_OUTPUT=/github/file_commands/set_output_2", "GITHUB_STEP_SUMMARY=/github/file_commands/step_summary_2")
	t.Logf("post step:\n%s", out)
	if err != nil {
		t.Fatalf("post step: %v", err)
	}
	summary, _ := os.ReadFile(filepath.Join(v.dirs["file_commands"], "step_summary_2"))
	// Every component accounted for its events, the file monitor too.
	if strings.Contains(string(summary), "Events lost: unknown") {
		t.Errorf("a component's counts are unknown:\n%s", summary)
	}
	return summary
}

// TestActionImageEndToEnd packages the Action (dist/build.sh, then
// `docker build` of dist/Dockerfile, offline) and runs its container the
// way the runner does — its env, its mounts, the docker socket — against a
// dockerd inside a fake VM (DESIGN.md "Docker in tests"). The main step
// must leave the agent enforcing inside the VM's network after its helper
// container is gone; the post step must stop it and write the summary.
// Neither the machine's dockerd nor its network is touched.
func TestActionImageEndToEnd(t *testing.T) {
	v := startActionVM(t)
	n, dirs, docker, runAction := v.n, v.dirs, v.docker, v.runAction
	fc := dirs["file_commands"]
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

	summary := v.post(t)
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

// TestActionDisablesContainers: with disable-sudo-and-containers, a step
// (nobody, which could use the socket before) is refused by docker, the
// runner's own docker commands (a stand-in Runner.Worker running the
// docker CLI) and root still get through, the post step — whose own
// docker socket is the gate it stops — still writes the report listing
// the refusal, and afterwards dockerd's socket is back.
// escapeMD escapes what the summary escapes in a path.
func escapeMD(s string) string {
	return strings.NewReplacer("-", `\-`, ".", `\.`, "_", `\_`).Replace(s)
}

var versionRe = regexp.MustCompile(`^[0-9]+\.[0-9.]+\S*\n$`)

func TestActionDisablesContainers(t *testing.T) {
	v := startActionVM(t)
	dirs, runAction := v.dirs, v.runAction
	dockerCLI, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no docker CLI")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	// Steps run as nobody; as if nobody were in the docker group.
	if err := os.Chmod(v.d.Socket, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(v.d.Socket), 0o711); err != nil {
		t.Fatal(err)
	}
	scratch, err := os.MkdirTemp("", "hr-e2e-docker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(scratch) })
	if err := os.Chmod(scratch, 0o777); err != nil {
		t.Fatal(err)
	}
	worker := filepath.Join(scratch, "bin/Runner.Worker")
	if err := os.MkdirAll(filepath.Dir(worker), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", bash, worker).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	version := dockerCLI + " -H unix://" + v.d.Socket + " version --format '{{.Server.Version}}'"
	// Steps run inside the VM (its PID namespace is the agent's).
	nobody := func(script string) (string, error) {
		c := v.vm.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", script)
		c.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + scratch, "DOCKER_CONFIG=" + scratch, "DOCKER_API_VERSION=1.41"}
		b, err := c.CombinedOutput()
		return string(b), err
	}
	if out, err := nobody(version); err != nil {
		t.Fatalf("before the action, nobody cannot use docker, so this test could not fail: %v %s", err, out)
	}

	// The workspace's owner is the runner's user, whose sudo rules go
	// too: nobody has none on this machine, so nothing is moved here.
	if err := os.Chown(dirs["workspace"], 65534, 65534); err != nil {
		t.Fatal(err)
	}
	outMain, err := runAction("/main", "INPUT_DISABLE-SUDO-AND-CONTAINERS=true", "GITHUB_OUTPUT=/github/file_commands/set_output_1",
		"GITHUB_STATE=/github/file_commands/save_state_1", "GITHUB_STEP_SUMMARY=/github/file_commands/step_summary_1")
	t.Logf("main step:\n%s", outMain)
	if err != nil {
		t.Fatalf("main step: %v", err)
	}
	if out, err := nobody(version); err == nil || !strings.Contains(out, "disable-sudo-and-containers") {
		t.Errorf("a step used docker: %v %s", err, out)
	}
	if out, err := nobody(worker + " -c \"" + version + "; true\""); err != nil || !versionRe.MatchString(out) {
		t.Errorf("the runner's docker command was refused: %v %s", err, out)
	}
	if out, err := v.docker("ps", "-q").CombinedOutput(); err != nil {
		t.Errorf("root was refused: %v %s", err, out)
	}

	summary := v.post(t)
	if n := strings.Count(string(summary), `docker\.sock — blocked: GET /v1\.41/version | `+escapeMD(dockerCLI)+` \(pid`); n != 1 {
		t.Errorf("summary has %d refused docker requests by %s, want 1 (the step's):\n%s", n, dockerCLI, summary)
	}
	if out, err := nobody(version); err != nil {
		t.Errorf("dockerd's socket is not back after the post step: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(v.d.Socket), ".harden-runner-docker")); !os.IsNotExist(err) {
		t.Errorf("the gate's hidden directory is left: %v", err)
	}
}
