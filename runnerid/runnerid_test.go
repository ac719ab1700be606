package runnerid_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/fakerunner"
	"github.com/harden-runner/harden-runner/runnerid"
)

// TestPinned: the stand-in runner started first is pinned; the copies a
// step makes later — bash named Runner.Worker, forked or exec'd, beside a
// Runner.Listener copy or not, or a command line spoofed with exec -a —
// are not it.
func TestPinned(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: reads other users' /proc/PID/exe")
	}
	nobody := fakerunner.Nobody
	r := fakerunner.Start(t, fakerunner.TempDir(t), nobody)
	pid, err := r.Pid()
	if err != nil {
		t.Fatal(err)
	}
	cands, err := runnerid.Candidates()
	if err != nil || !slices.Contains(cands, pid) {
		t.Fatalf("candidates %v (%v) lack the stand-in runner %d", cands, err, pid)
	}
	id, err := runnerid.FromAncestry(pid)
	if err != nil || id.PID != pid || !id.Is(pid) {
		t.Fatalf("FromAncestry(%d) = %+v, %v", pid, id, err)
	}
	if id.Exe != r.Worker {
		t.Errorf("exe %q, want %q", id.Exe, r.Worker)
	}
	// A step's process finds the runner up its ancestry.
	out, err := r.Run("echo $$")
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(out))
	if id.Is(child) {
		t.Errorf("the runner's child %d is taken for the runner", child)
	}

	// A step's copies, started after the pin.
	fake := fakerunner.Start(t, fakerunner.TempDir(t), func(argv ...string) *exec.Cmd {
		// The step's Listener copy is a child of the real runner.
		return nobody(argv...)
	})
	fpid, err := fake.Pid()
	if err != nil {
		t.Fatal(err)
	}
	if id.Is(fpid) {
		t.Error("a later stand-in runner passes for the pinned one")
	}
	// exec -a: a command line that says Runner.Worker.
	spoof, err := r.Run("bash -c 'exec -a " + r.Worker + " sleep 30' >/dev/null & echo $!")
	spid, perr := strconv.Atoi(strings.TrimSpace(spoof))
	if err != nil || perr != nil || spid <= 1 {
		t.Fatalf("spoof: %q %v %v", spoof, err, perr)
	}
	t.Cleanup(func() { _ = exec.Command("kill", strconv.Itoa(spid)).Run() })
	if id.Is(spid) {
		t.Error("exec -a Runner.Worker passes")
	}
	// bash copied as Runner.Worker alone (no Listener beside it): not even a candidate.
	dir := fakerunner.TempDir(t)
	lone := filepath.Join(dir, "Runner.Worker")
	if b, err := exec.Command("cp", "/bin/bash", lone).CombinedOutput(); err != nil {
		t.Fatalf("cp %v %s", err, b)
	}
	c := nobody(lone, "-c", "sleep 30")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	cands, _ = runnerid.Candidates()
	if slices.Contains(cands, c.Process.Pid) {
		t.Error("a lone Runner.Worker copy is a candidate")
	}
	// Two qualify now (ours and the step's): Find refuses to choose,
	// unless other tests on this machine run their own stand-ins too.
	if _, err := runnerid.Find(); err == nil {
		t.Error("Find chose among several runners")
	}
}

func TestZeroMatchesNothing(t *testing.T) {
	var id runnerid.Identity
	if id.Is(os.Getpid()) || id.Is(0) || !id.IsZero() {
		t.Error("the zero Identity matches")
	}
	self, err := runnerid.Of(os.Getpid())
	if err != nil || !self.Is(os.Getpid()) {
		t.Fatalf("Of(self) = %+v, %v", self, err)
	}
	moved := self
	moved.Start++
	if moved.Is(os.Getpid()) {
		t.Error("another start time matches")
	}
	moved = self
	moved.Ino++
	if moved.Is(os.Getpid()) {
		t.Error("another executable matches")
	}
}

func TestParseStat(t *testing.T) {
	rest := " S 4242 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100"
	for _, tc := range []struct {
		in    string
		start uint64
		ppid  int
		ok    bool
	}{
		{"123 (docker)" + rest, 987654, 4242, true},
		// A command name that fakes the fields after it.
		{"123 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 0 0 1 0 5 5 5)" + rest, 987654, 4242, true},
		{"123 (a b)" + rest, 987654, 4242, true},
		{"123 docker" + rest, 0, 0, false},
		{"123 (x) S 1", 0, 0, false},
	} {
		start, ppid, err := runnerid.ParseStat([]byte(tc.in))
		if (err == nil) != tc.ok || start != tc.start || ppid != tc.ppid {
			t.Errorf("ParseStat(%q) = %d, %d, %v", tc.in, start, ppid, err)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("123 (docker) S 4242 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100"))
	f.Add([]byte("1 ()) ) ("))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, ppid, err := runnerid.ParseStat(b); err == nil && strings.Count(string(b), ")") == 0 {
			t.Errorf("parsed without a command name: ppid %d", ppid)
		}
	})
}

// TestCandidatesOwnPIDNamespace: a stand-in runner in another PID
// namespace (a container's, a nested VM's) is not a candidate: the
// runner shares the agent's namespace, and a lookalike elsewhere would
// only make Find ambiguous.
func TestCandidatesOwnPIDNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: reads other users' /proc/PID/exe, unshare")
	}
	r := fakerunner.Start(t, fakerunner.TempDir(t), func(argv ...string) *exec.Cmd {
		return exec.Command("unshare", append([]string{"--pid", "--fork", "--kill-child", "--"}, argv...)...)
	})
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	// The Worker runs (r answered), so it is in /proc: find it by its file.
	var there []int
	for _, e := range ents {
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == r.Worker {
			pid, _ := strconv.Atoi(e.Name())
			there = append(there, pid)
		}
	}
	if len(there) != 1 {
		t.Fatalf("the stand-in Worker in its own PID namespace: pids %v, want one", there)
	}
	cands, err := runnerid.Candidates()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(cands, there[0]) {
		t.Errorf("candidates %v hold %d, a Worker in another PID namespace", cands, there[0])
	}
}

// TestFromDockerRun: the runner is the parent of the docker CLI that runs
// the named container; a docker CLI a step's shell started, a process
// that is not a docker CLI with the same command line, and another name
// pin nothing.
func TestFromDockerRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: reads other users' /proc/PID/exe")
	}
	r := fakerunner.Start(t, fakerunner.TempDir(t), fakerunner.Nobody)
	pid, err := r.Pid()
	if err != nil {
		t.Fatal(err)
	}
	dir := fakerunner.TempDir(t)
	// A docker CLI stand-in: bash (not exec'ing sleep: `; true`) whose
	// command line reads as `docker ... run --name NAME image`.
	cli, other := filepath.Join(dir, "docker"), filepath.Join(dir, "notdocker")
	for _, dst := range []string{cli, other} {
		if b, err := exec.Command("cp", "/bin/bash", dst).CombinedOutput(); err != nil {
			t.Fatalf("cp %v %s", err, b)
		}
	}
	run := func(exe, name string) []string {
		return []string{exe, "-c", "sleep 30; true", "run", "--name", name, "img"}
	}
	stop := func(pid int) {
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	}
	// The step's shell runs it: its parent is the shell.
	out, err := r.Run(strings.Join(run(cli, "by-step"), " ") + " > /dev/null 2>&1 & echo $!")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := strconv.Atoi(strings.TrimSpace(out)); err == nil {
		stop(p)
	}
	for _, c := range [][]string{run(other, "not-cli"), run(cli, "ours")} {
		p, err := r.ExecBackground(c...)
		if err != nil {
			t.Fatal(err)
		}
		stop(p)
	}
	// Wait until the runner's CLI runs (it is forked at once, exec'd soon).
	var id runnerid.Identity
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if id, err = runnerid.FromDockerRun("ours", []string{cli}); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || id.PID != pid {
		t.Fatalf("FromDockerRun(ours) = %+v, %v; want the runner %d", id, err, pid)
	}
	for _, name := range []string{"by-step", "not-cli", "nope"} {
		if id, err := runnerid.FromDockerRun(name, []string{cli}); err == nil {
			t.Errorf("FromDockerRun(%s) = %+v, want none", name, id)
		}
	}
}

func TestRunsNamed(t *testing.T) {
	for _, c := range []struct {
		cmdline string
		want    bool
	}{
		{"docker\x00run\x00--name\x00x\x00img\x00", true},
		{"docker\x00container\x00run\x00--rm\x00--name=x\x00img\x00", true},
		{"docker\x00create\x00--name\x00x\x00img", true},
		{"docker\x00run\x00--name\x00xy\x00img\x00", false},
		{"docker\x00--name\x00x\x00run\x00img\x00", false},
		{"docker\x00ps\x00--name\x00x\x00", false},
		{"docker\x00run\x00--name\x00", false},
	} {
		if got := runnerid.RunsNamed([]byte(c.cmdline), "x"); got != c.want {
			t.Errorf("RunsNamed(%q) = %v, want %v", c.cmdline, got, c.want)
		}
	}
}

func FuzzRunsNamed(f *testing.F) {
	f.Add([]byte("docker\x00run\x00--name\x00x\x00img\x00"), "x")
	f.Fuzz(func(t *testing.T, cmdline []byte, name string) {
		if runnerid.RunsNamed(cmdline, name) && !strings.Contains(string(cmdline), name) {
			t.Errorf("RunsNamed(%q, %q) without the name in it", cmdline, name)
		}
	})
}
