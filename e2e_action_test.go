package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/dockergate/lsm"
	"github.com/harden-runner/harden-runner/internal/fakerunner"
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
	image  string // the image content directory
	docker func(args ...string) *exec.Cmd
	// runner, when set, runs the runner's docker commands (runAction):
	// a stand-in Runner.Worker inside the VM; dockerEnv is their environment.
	runner    *fakerunner.Runner
	dockerEnv []string
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
	build.Env = append(os.Environ(), "OUT="+out, "ARCHS="+runtime.GOARCH)
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
	if b, err := docker("build", "-q", "--build-arg", "TARGETARCH="+runtime.GOARCH, "-t", "harden-runner:e2e", out).CombinedOutput(); err != nil {
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
	v := &actionVM{vm: vm, n: n, d: d, dirs: dirs, image: out, docker: docker}
	runs := 0
	v.runAction = func(entrypoint string, env ...string) (string, error) {
		// Named as the runner names a container action's container.
		runs++
		name := fmt.Sprintf("%032x_hardenrunnere2e_%s%d", runs, strings.Trim(entrypoint, "/"), runs)
		args := []string{"run", "--rm", "--name", name, "--network", "none", "--workdir", "/github/workspace",
			"-v", d.Socket + ":/var/run/docker.sock",
			"-v", dirs["home"] + ":/github/home", "-v", dirs["workflow"] + ":/github/workflow",
			"-v", fc + ":/github/file_commands", "-v", dirs["workspace"] + ":/github/workspace",
			"-e", "HOME=/github/home", "-e", "GITHUB_WORKSPACE=/github/workspace", "-e", "GITHUB_ACTIONS=true",
			"-e", "GITHUB_REPOSITORY=octo/repo", "-e", "GITHUB_EVENT_NAME=push",
			"-e", "INPUT_EGRESS-POLICY=block", "-e", "INPUT_ALLOWED-ENDPOINTS=allowed.test:443",
			"-e", "INPUT_DISABLE-SUDO=false", "-e", "INPUT_DISABLE-FILE-MONITORING=false", "-e", "INPUT_TOKEN=",
			"-e", "HARDEN_RUNNER_DIR=" + dirs["opt"], "--entrypoint", entrypoint}
		if entrypoint == "/post" && !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "STATE_harden_runner_dir=") }) {
			// The main step's state, as the runner passes it, and the
			// attack: a step's GITHUB_ENV pointing the post step elsewhere.
			// A test that passes its own STATE_harden_runner_dir is one
			// where the runner had none to pass (the main step saved none)
			// and the job's environment (GITHUB_ENV) supplied it.
			args = append(args, "-e", "STATE_harden_runner_dir="+dirs["opt"], "-e", "HARDEN_RUNNER_DIR=/tmp/forged-by-a-step")
		}
		for _, e := range env {
			args = append(args, "-e", e)
		}
		if v.runner != nil {
			return v.runner.ExecEnv(v.dockerEnv, append([]string{"docker", "-H", "unix://" + d.Socket}, append(args, "harden-runner:e2e")...)...)
		}
		b, err := docker(append(args, "harden-runner:e2e")...).CombinedOutput()
		return string(b), err
	}

	return v
}

// mainStep runs the main step (as the job's first step) with extra env,
// the file commands at their first names, and returns its output.
func (v *actionVM) mainStep(t *testing.T, env ...string) string {
	t.Helper()
	out, err := v.runAction("/main", append(env, "GITHUB_OUTPUT=/github/file_commands/set_output_1",
		"GITHUB_STATE=/github/file_commands/save_state_1", "GITHUB_STEP_SUMMARY=/github/file_commands/step_summary_1")...)
	t.Logf("main step:\n%s", out)
	if err != nil {
		t.Fatalf("main step: %v", err)
	}
	return out
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
	if !strings.Contains(string(state), "harden_runner_started") || !strings.Contains(string(state), dirs["opt"]) {
		t.Errorf("state file (the agent's directory is kept for the post step): %q", state)
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

// escapeMD escapes what the summary escapes in a path.
func escapeMD(s string) string {
	return strings.NewReplacer("-", `\-`, ".", `\.`, "_", `\_`).Replace(s)
}

var versionRe = regexp.MustCompile(`^[0-9]+\.[0-9.]+\S*\n$`)

// TestActionDisablesContainers: with disable-sudo-and-containers, a
// stand-in runner (Runner.Listener → Runner.Worker, inside the VM, started
// before the action and so pinned) keeps docker for its own docker
// commands — the action's main and post steps run through it — and
// everything else is refused: a step (nobody, which could use the socket
// before), a copy of bash named Runner.Worker started later, a credential
// helper planted in the runner's docker config, a third party's container
// action running as root with the socket mounted, root on the host; a
// step in a `container:` job container that had the socket mounted
// before the action started (running, or created and started later). A
// CAP_SYS_ADMIN one, which can unmount what covers its socket, is an
// error the main step shows at once. The runner's pull, create, start,
// exec and rm, and a services: container, still work. Judged by the
// containers dockerd has at the end. Afterwards dockerd's socket is back.
func TestActionDisablesContainers(t *testing.T) {
	v := startActionVM(t)
	dirs := v.dirs
	dockerCLI, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no docker CLI")
	}
	// Steps run as nobody; as if nobody were in the docker group.
	if err := os.Chmod(v.d.Socket, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(v.d.Socket), 0o711); err != nil {
		t.Fatal(err)
	}
	scratch := fakerunner.TempDir(t)
	if err := os.Chmod(scratch, 0o777); err != nil {
		t.Fatal(err)
	}
	sockArg := "unix://" + v.d.Socket
	version := dockerCLI + " -H " + sockArg + " version --format '{{.Server.Version}}'"
	// Steps run inside the VM (its PID namespace is the agent's).
	inVM := func(argv ...string) *exec.Cmd {
		c := v.vm.Command(append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"}, argv...)...)
		c.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + scratch, "DOCKER_CONFIG=" + scratch, "DOCKER_API_VERSION=1.41"}
		return c
	}
	nobody := func(script string) (string, error) {
		b, err := inVM("sh", "-c", script).CombinedOutput()
		return string(b), err
	}
	if out, err := nobody(version); err != nil {
		t.Fatalf("before the action, nobody cannot use docker, so this test could not fail: %v %s", err, out)
	}
	// A third party's image (another ID than the action's).
	if b, err := v.docker("build", "-q", "--label", "third=party", "-t", "third:party", v.image).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, b)
	}
	// The runner, there before the job's steps, and a second one on the
	// same machine (a self-hosted machine with two runners; or a
	// lookalike): the scan of /proc cannot choose, the docker CLI that
	// runs this action's container can.
	v.runner = fakerunner.Start(t, filepath.Join(scratch, "runner"), inVM)
	fakerunner.Start(t, filepath.Join(scratch, "second"), inVM)
	v.dockerEnv = []string{"DOCKER_API_VERSION=1.41", "DOCKER_BUILDKIT=0", "DOCKER_CONFIG=" + scratch}
	runnerDocker := func(env []string, args ...string) (string, error) {
		return v.runner.ExecEnv(append(v.dockerEnv, env...), append([]string{"docker", "-H", sockArg}, args...)...)
	}
	// A job container, set up with the socket before any step.
	if out, err := runnerDocker(nil, "create", "--name", "job-container", "-v", v.d.Socket+":/var/run/docker.sock", "third:party"); err != nil {
		t.Fatalf("job container: %v %s", err, out)
	}
	// A `container:` job's container, running since job set-up with the
	// socket mounted, as the runner starts it (an image with a shell and
	// docker: the host's /usr, read-only).
	tools := []string{"--network", "none", "-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro",
		"-e", "PATH=/usr/bin", "-e", "DOCKER_API_VERSION=1.41", "-e", "DOCKER_CONFIG=/nonexistent"}
	sleeper := func(name string, extra ...string) []string {
		return append(append(append([]string{"run", "-d", "--name", name}, tools...), extra...), "--entrypoint", "/usr/bin/sleep", "third:party", "infinity")
	}
	if out, err := runnerDocker(nil, sleeper("job-running", "-v", v.d.Socket+":/var/run/docker.sock")...); err != nil {
		t.Fatalf("running job container: %v %s", err, out)
	}
	// One created before, started after the agent; one with CAP_SYS_ADMIN,
	// which could unmount whatever covers its socket.
	created := sleeper("job-created", "-v", v.d.Socket+":/var/run/docker.sock")
	created[0] = "create"
	created = slices.DeleteFunc(created, func(a string) bool { return a == "-d" })
	if out, err := runnerDocker(nil, created...); err != nil {
		t.Fatalf("created job container: %v %s", err, out)
	}
	if out, err := runnerDocker(nil, sleeper("job-sysadmin", "-v", v.d.Socket+":/var/run/docker.sock", "--cap-add", "SYS_ADMIN")...); err != nil {
		t.Fatalf("CAP_SYS_ADMIN job container: %v %s", err, out)
	}
	// Whether this kernel can close the socket the job container holds.
	closable := lsmWorksForTest(t)
	t.Logf("BPF LSM guard loads on this kernel: %v", closable)

	// The workspace's owner is the runner's user, whose sudo rules go
	// too: nobody has none on this machine, so nothing is moved here.
	if err := os.Chown(dirs["workspace"], 65534, 65534); err != nil {
		t.Fatal(err)
	}
	outMain := v.mainStep(t, "INPUT_DISABLE-SUDO-AND-CONTAINERS=true")
	// disable-sudo asked the VM's sudo from the image (which has no chroot).
	if _, err := exec.LookPath("sudo"); err == nil && strings.Contains(outMain, "could not ask sudo") {
		t.Errorf("disable-sudo could not ask the VM's sudo:\n%s", outMain)
	}
	if out, err := nobody(version); err == nil || !strings.Contains(out, "disable-sudo-and-containers") {
		t.Errorf("a step used docker: %v %s", err, out)
	}
	if out, err := runnerDocker(nil, "version", "--format", "{{.Server.Version}}"); err != nil || !versionRe.MatchString(out) {
		t.Errorf("the runner's docker command was refused: %v %s", err, out)
	}
	if out, err := v.docker("ps", "-q").CombinedOutput(); err == nil || !strings.Contains(string(out), "disable-sudo-and-containers") {
		t.Errorf("root on the host used docker: %v %s", err, out)
	}
	// A copy of bash named Runner.Worker, beside a Runner.Listener copy.
	fake := fakerunner.Start(t, filepath.Join(scratch, "fake"), inVM)
	if out, err := fake.ExecEnv(v.dockerEnv, "docker", "-H", sockArg, "ps"); err == nil || !strings.Contains(out, "disable-sudo-and-containers") {
		t.Errorf("a copy of Runner.Worker used docker: %v %s", err, out)
	}
	// A command line that says Runner.Worker (exec -a), run by a step.
	if b, err := inVM("bash", "-c", "exec -a "+v.runner.Worker+" "+dockerCLI+" -H "+sockArg+" ps").CombinedOutput(); err == nil ||
		!strings.Contains(string(b), "disable-sudo-and-containers") {
		t.Errorf("an exec -a Runner.Worker command line used docker: %v %s", err, b)
	}
	// A credential helper planted in the runner's docker config runs when
	// the runner pulls; it is the runner's docker's child.
	evilConf, evilBin, evilOut := filepath.Join(scratch, "evilconf"), filepath.Join(scratch, "evilbin"), filepath.Join(scratch, "evil.out")
	for _, d := range []string{evilConf, evilBin} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(evilConf, "config.json"), []byte(`{"credsStore":"evil"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	helper := "#!/bin/sh\n" + dockerCLI + " -H " + sockArg + " ps > " + evilOut + " 2>&1\necho '{\"ServerURL\":\"\",\"Username\":\"x\",\"Secret\":\"y\"}'\n"
	if err := os.WriteFile(filepath.Join(evilBin, "docker-credential-evil"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	out, _ := runnerDocker([]string{"DOCKER_CONFIG=" + evilConf, "PATH=" + evilBin + ":/usr/bin:/bin"}, "pull", "198.18.0.99:5000/x:1")
	if b, err := os.ReadFile(evilOut); err != nil {
		t.Errorf("the planted credential helper never ran, so this case was not tried: %v (pull: %s)", err, out)
	} else if !strings.Contains(string(b), "disable-sudo-and-containers") {
		t.Errorf("a credential helper of the runner's docker used docker: %s", b)
	}
	// A third party's container action, as root, with the socket the runner mounts.
	out, err = runnerDocker(nil, "run", "--rm", "--network", "none", "-v", v.d.Socket+":/var/run/docker.sock", "-e", "GITHUB_ACTIONS=true",
		"--entrypoint", "/main", "third:party")
	if err == nil || !strings.Contains(out, "disable-sudo-and-containers") {
		t.Errorf("a third party's container action used docker: %v %s", err, out)
	}

	// The same with a docker CLI of its own; dockerd's view decides (below).
	if out, err := runnerDocker(nil, append(append([]string{"run", "--rm", "-v", v.d.Socket + ":/var/run/docker.sock"}, tools...),
		"--entrypoint", "/usr/bin/docker", "third:party", "create", "--name", "from-action", "third:party")...); err == nil || !strings.Contains(out, "disable-sudo-and-containers") {
		t.Errorf("a third party's container action's docker CLI was not refused: %v %s", err, out)
	}

	// The runner's own docker commands for a container step and a
	// `services:` container: pull, create, start, exec, rm.
	if out, _ := runnerDocker(nil, "pull", "198.18.0.99:5000/x:1"); strings.Contains(out, "disable-sudo-and-containers") {
		t.Errorf("the runner's docker pull was refused: %s", out)
	}
	if out, err := runnerDocker(nil, sleeper("service")...); err != nil {
		t.Errorf("the runner could not start a services: container: %v %s", err, out)
	} else if out, err := runnerDocker(nil, "inspect", "-f", "{{.State.Running}}", "service"); err != nil || strings.TrimSpace(out) != "true" {
		t.Errorf("the services: container is not running: %v %s", err, out)
	}
	for _, args := range [][]string{
		append(append([]string{"create", "--name", "step-container"}, tools...), "--entrypoint", "/usr/bin/sleep", "third:party", "infinity"),
		{"start", "step-container"},
		{"exec", "step-container", "true"},
		{"rm", "-f", "step-container", "service"},
	} {
		if out, err := runnerDocker(nil, args...); err != nil {
			t.Errorf("the runner's docker %s was refused: %v %s", args[0], err, out)
		}
	}
	// A step of the container job: the runner execs it in the job
	// container, where the socket mounted before the agent started is.
	if out, err := runnerDocker(nil, "exec", "job-running", "true"); err != nil {
		t.Errorf("the runner's docker exec into the job container was refused: %v %s", err, out)
	}
	stepIn := func(container, name string) string {
		out, _ := runnerDocker(nil, "exec", container, "docker", "-H", "unix:///var/run/docker.sock", "create", "--name", name, "third:party")
		t.Logf("a step in %s: docker create through the socket mounted before the agent: %s", container, out)
		return out
	}
	if out := stepIn("job-running", "from-job-step"); !strings.Contains(out, "disable-sudo-and-containers") {
		t.Errorf("a step in the running job container was not refused by the gate: %s", out)
	}
	if out, err := runnerDocker(nil, "start", "job-created"); err != nil {
		t.Errorf("the runner's docker start was refused: %v %s", err, out)
	}
	if out := stepIn("job-created", "from-created-job-step"); !strings.Contains(out, "disable-sudo-and-containers") {
		t.Errorf("a step in the job container created before the agent was not refused by the gate: %s", out)
	}
	// CAP_SYS_ADMIN: the step unmounts what covers the socket first.
	sysadminStep, _ := runnerDocker(nil, "exec", "job-sysadmin", "sh", "-c",
		"umount /var/run/docker.sock; docker -H unix:///var/run/docker.sock create --name from-sysadmin-job-step third:party")
	t.Logf("a step in job-sysadmin: umount, docker create: %s", sysadminStep)

	// The runner's own clean-up still works.
	if out, err := runnerDocker(nil, "rm", "-f", "job-container", "job-running", "job-created", "job-sysadmin"); err != nil {
		t.Errorf("the runner's docker rm was refused: %v %s", err, out)
	}

	summary := v.post(t)
	// dockerd's own view (its socket is back): what reached it.
	exists := func(name string) bool { return v.docker("inspect", "--type", "container", name).Run() == nil }
	for _, name := range []string{"from-action", "from-job-step", "from-created-job-step"} {
		if exists(name) {
			t.Errorf("container %s was created: a step reached dockerd", name)
		}
	}
	// CAP_SYS_ADMIN: closed only where BPF LSM loads; elsewhere the main
	// step says so at once, as an error, and the summary lists it.
	switch {
	case closable && exists("from-sysadmin-job-step"):
		t.Error("a step in a CAP_SYS_ADMIN job container reached dockerd on a kernel where BPF LSM closes it")
	case !closable:
		if !exists("from-sysadmin-job-step") {
			t.Errorf("the step in the CAP_SYS_ADMIN job container did not reach dockerd, so this test did not try the open path: %s", sysadminStep)
		}
		if !strings.Contains(outMain, "::error title=harden-runner%3A not enforced::dockergate: container ") ||
			!strings.Contains(outMain, "(job-sysadmin, image third:party, running) had docker's socket mounted before harden-runner started: the gate's socket is mounted over it, but it has CAP_SYS_ADMIN and could unmount it") {
			t.Errorf("the main step does not say at once that the CAP_SYS_ADMIN container keeps docker:\n%s", outMain)
		}
		if i := strings.Index(string(summary), "#### Errors"); i < 0 || !strings.Contains(string(summary)[i:], escapeMD("job-sysadmin")+", image") {
			t.Errorf("the summary does not list the CAP_SYS_ADMIN container among its errors:\n%s", summary)
		}
	}
	for _, name := range []string{"job-running", "job-container", "job-created"} {
		if strings.Contains(outMain, "("+name+", image") {
			t.Errorf("the main step reports %s, which is behind the gate, as an error:\n%s", name, outMain)
		}
	}
	var rep struct {
		Privileged []struct {
			Verdict string `json:"verdict"`
			Detail  string `json:"detail"`
		} `json:"privileged"`
		Agent struct {
			Info []struct {
				Message string `json:"message"`
			} `json:"info"`
		} `json:"agent"`
	}
	b, err := os.ReadFile(filepath.Join(dirs["home"], "harden-runner-report", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	// The pin is the parent of the docker CLI that ran this action's
	// container: the runner, not the second one.
	workerPID, err := v.runner.Pid()
	if err != nil {
		t.Fatal(err)
	}
	pinned := fmt.Sprintf("pinned the runner %s (pid %d) as the parent of the docker CLI that runs this action's container",
		v.runner.Worker, workerPID)
	if !slices.ContainsFunc(rep.Agent.Info, func(m struct {
		Message string `json:"message"`
	}) bool {
		return strings.HasPrefix(m.Message, pinned)
	}) {
		t.Errorf("report's info lacks %q: %+v", pinned, rep.Agent.Info)
	}
	var allowed []string
	for _, p := range rep.Privileged {
		if p.Verdict == "allowed" {
			allowed = append(allowed, p.Detail)
		}
	}
	for _, want := range []string{"POST /v1.41/containers/create", "DELETE /v1.41/containers/{id}"} {
		if !slices.ContainsFunc(allowed, func(d string) bool { return strings.HasPrefix(d, want) }) {
			t.Errorf("the runner's admitted %s is not in the report: %q", want, allowed)
		}
	}
	t.Logf("admitted docker requests in the report:\n%s", strings.Join(allowed, "\n"))
	if out, err := nobody(version); err != nil {
		t.Errorf("dockerd's socket is not back after the post step: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(v.d.Socket), ".harden-runner-docker")); !os.IsNotExist(err) {
		t.Errorf("the gate's hidden directory is left: %v", err)
	}
}

// TestActionReportForgery is issue 9's forged report: a process a step
// left running, as the runner's user, plants a stop result and an empty
// journal in the post step's report directory (the runner user's home) in
// a loop. The summary and the blocked-count output must still say what the
// agent saw: the journal reaches the post step only over its own helper
// container's output stream.
func TestActionReportForgery(t *testing.T) {
	v := startActionVM(t)
	n, dirs := v.n, v.dirs
	// The runner's home belongs to the runner's user (nobody here).
	if err := os.Chown(dirs["home"], 65534, 65534); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(dirs["home"]); d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil { // t.TempDir's are 0700
			t.Fatal(err)
		}
	}
	v.mainStep(t)
	if err := n.In(n.Runner, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		"curl", "-sk", "-o", "/dev/null", "--max-time", "5", "https://blocked.test/").Run(); err == nil {
		t.Fatal("curl blocked.test succeeded")
	}
	rd := filepath.Join(dirs["home"], "harden-runner-report")
	forger := v.vm.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c",
		`R=$1; mkdir -p "$R"; while :; do printf '{}' > "$R/.f"; mv -f "$R/.f" "$R/.harden-runner-stop.json"; : > "$R/.j"; mv -f "$R/.j" "$R/journal.jsonl"; done`,
		"forger", rd)
	if err := forger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = forger.Process.Kill(); _ = forger.Wait() })
	// The forger is at work before the post step starts.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(rd, "journal.jsonl")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the forger planted nothing: this test could not fail")
		}
	}
	summary := v.post(t)
	if !strings.Contains(string(summary), "blocked\\.test") {
		t.Errorf("the forged journal won: summary lacks the blocked name:\n%s", summary)
	}
	outputs, _ := os.ReadFile(filepath.Join(dirs["file_commands"], "set_output_2"))
	if m := regexp.MustCompile(`blocked-count<<(\S+)\n(\d+)\n`).FindStringSubmatch(string(outputs)); m == nil || m[2] == "0" {
		t.Errorf("blocked-count after forgery: %q", outputs)
	}
	var rep struct {
		Agent struct {
			Journal struct {
				Verified bool `json:"verified"`
			} `json:"journal"`
		} `json:"agent"`
	}
	b, _ := os.ReadFile(filepath.Join(rd, "report.json"))
	if err := json.Unmarshal(b, &rep); err != nil || !rep.Agent.Journal.Verified {
		t.Errorf("report.json does not say the journal was verified: %v %s", err, b)
	}
}

// TestActionLeftoverAfterPost is issue 9's "enforcement ends before the
// job does": a process a step left running (as the runner's user) keeps
// connecting to a blocked address while the post step runs and for 3 s
// after it. On a GitHub-hosted runner the post step reports a snapshot
// and leaves the agent enforcing: the far end sees nothing, and the
// table is still there. A self-hosted machine is torn down as before,
// and the same loop gets out once the table is gone: the trade-off the
// README's threat model states (and proof that this test can fail).
func TestActionLeftoverAfterPost(t *testing.T) {
	for _, tc := range []struct {
		runnerEnv string
		keep      bool
	}{{"github-hosted", true}, {"self-hosted", false}} {
		t.Run(tc.runnerEnv, func(t *testing.T) {
			v := startActionVM(t)
			n, dirs := v.n, v.dirs
			v.mainStep(t)
			scratch, err := os.MkdirTemp("", "hr-leftover")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(scratch) })
			if err := os.Chmod(scratch, 0o777); err != nil {
				t.Fatal(err)
			}
			attempts := filepath.Join(scratch, "attempts")
			target := "https://" + testnet.Host4(11).String() + "/"
			loop := v.vm.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c",
				`while :; do date +%s.%N >> "$1"; curl -sk -o /dev/null --connect-timeout 0.3 --max-time 0.5 "$2"; done`,
				"leftover", attempts, target)
			if err := loop.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = loop.Process.Kill(); _ = loop.Wait() })
			attemptsSince := func(t0 time.Time) int {
				b, _ := os.ReadFile(attempts)
				k := 0
				for _, l := range strings.Fields(string(b)) {
					if f, err := strconv.ParseFloat(l, 64); err == nil && f >= float64(t0.UnixNano())/1e9 {
						k++
					}
				}
				return k
			}
			for deadline := time.Now().Add(10 * time.Second); attemptsSince(time.Time{}) == 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the leftover loop never ran")
				}
			}
			out, err := v.runAction("/post", "STATE_harden_runner_started=true", "RUNNER_ENVIRONMENT="+tc.runnerEnv,
				"GITHUB_OUTPUT=/github/file_commands/set_output_2", "GITHUB_STEP_SUMMARY=/github/file_commands/step_summary_2")
			t.Logf("post step:\n%s", out)
			if err != nil {
				t.Fatalf("post step: %v", err)
			}
			postEnd := time.Now()
			// The attack: 3 s of tries after the post step.
			for attemptsSince(postEnd.Add(3*time.Second)) == 0 {
				if time.Since(postEnd) > 20*time.Second {
					t.Fatalf("the leftover loop made no attempt 3 s after the post step (%d after it)", attemptsSince(postEnd))
				}
				time.Sleep(20 * time.Millisecond)
			}
			after := attemptsSince(postEnd)
			hits := n.HitsTo("tcp", testnet.Host4(11), 443)
			tables, _ := n.In(n.Runner, "nft", "list", "tables").CombinedOutput()
			summary, _ := os.ReadFile(filepath.Join(dirs["file_commands"], "step_summary_2"))
			t.Logf("%s: %d attempts in the 3 s after the post step, %d reached the far end; tables: %q",
				tc.runnerEnv, after, len(hits), strings.TrimSpace(string(tables)))
			if tc.keep {
				if len(hits) != 0 {
					t.Errorf("the leftover reached the far end %d times: %+v", len(hits), hits[0])
				}
				if !strings.Contains(string(tables), "harden_runner") {
					t.Error("the table is gone after the post step on a GitHub-hosted runner")
				}
				if !strings.Contains(string(summary), "events after the snapshot are not in it") {
					t.Errorf("the summary does not say it is a snapshot:\n%s", summary)
				}
				if !strings.Contains(out, "keeps enforcing") {
					t.Errorf("the post step does not say the agent keeps enforcing:\n%s", out)
				}
			} else {
				if len(hits) == 0 {
					t.Error("after a clean teardown the leftover never got out: the loop does not test what it should")
				}
				if strings.Contains(string(tables), "harden_runner") {
					t.Errorf("table left after a self-hosted teardown: %s", tables)
				}
			}
		})
	}
}

// lsmWorksForTest reports whether this kernel loads and attaches the BPF
// LSM guard, tried on a listening socket of the test's own (the only one
// it could refuse connections to), detached at once.
func lsmWorksForTest(t *testing.T) bool {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "probe.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	inodes, err := lsm.ListeningInodes(filepath.Join(dir, "probe.sock"))
	if err != nil || len(inodes) != 1 {
		t.Fatalf("probe socket inodes %v: %v", inodes, err)
	}
	g, err := lsm.Start(inodes, []int{os.Getpid()}, func(lsm.Denial) {})
	if err != nil {
		t.Logf("BPF LSM guard: %v (%s)", err, lsm.Diagnose(err))
		return false
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	return true
}
