// Package fakerunner starts a stand-in for the GitHub runner in tests: a
// copy of bash as DIR/bin/Runner.Listener that starts a copy of bash as
// DIR/bin/Runner.Worker, which runs the scripts a test hands it as its own
// direct children, as the real Runner.Worker runs steps and its docker
// commands. It is what runnerid pins.
package fakerunner

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Runner is a running stand-in runner.
type Runner struct {
	Dir      string // the installation: Dir/bin/Runner.{Listener,Worker}
	Worker   string // the Runner.Worker copy
	Listener string
	fifo     *os.File
	mu       sync.Mutex
	n        int
	cmd      *exec.Cmd
}

// Start copies bash into dir/bin and starts Listener → Worker through
// command (e.g. exec.Command, or a fake VM's Command, maybe with setpriv
// in front). It stops them in t.Cleanup. dir must be readable by the
// user the runner runs as.
func Start(t testing.TB, dir string, command func(argv ...string) *exec.Cmd) *Runner {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("needs bash")
	}
	r := &Runner{Dir: dir, Worker: filepath.Join(dir, "bin/Runner.Worker"), Listener: filepath.Join(dir, "bin/Runner.Listener")}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "io"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "io"), 0o777); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{r.Worker, r.Listener} {
		if out, err := exec.Command("cp", bash, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	fifo := filepath.Join(dir, "io/commands")
	if out, err := exec.Command("mkfifo", "-m", "0666", fifo).CombinedOutput(); err != nil {
		t.Fatalf("mkfifo: %v %s", err, out)
	}
	// Read-write: opening never blocks, and the Worker never sees EOF.
	if r.fifo, err = os.OpenFile(fifo, os.O_RDWR, 0); err != nil {
		t.Fatal(err)
	}
	// "; wait" keeps bash from exec'ing the Worker in its own place.
	loop := `while IFS= read -r line; do eval "$line"; done < ` + fifo
	r.cmd = command(r.Listener, "-c", r.Worker+" -c '"+loop+"'; wait")
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.fifo.Close()
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	})
	// Ready once the Worker answers.
	if out, err := r.Run("echo ready"); err != nil || out != "ready\n" {
		t.Fatalf("stand-in runner: %v %q", err, out)
	}
	return r
}

// Run has the Worker run script in a direct child (sh -c script, like a
// step; a lone command in script runs as sh's exec) and returns its
// combined output; err is non-nil when it exited non-zero.
func (r *Runner) Run(script string) (string, error) {
	return r.run("sh -c " + quote(script))
}

// Go has the Worker start script (sh -c script) in a direct child in the
// background, as it starts a step, and returns once it is started. The
// child's parent stays the Worker until it exits; script's own commands
// keep the shell as their parent while it waits for them (unlike
// Run("cmd &"), whose shell exits at once and leaves cmd re-parented).
// script's output goes nowhere: it redirects its own.
func (r *Runner) Go(script string) error {
	_, err := r.run("sh -c " + quote(script) + " < /dev/null > /dev/null 2>&1 &")
	return err
}

// Exec has the Worker itself fork and exec argv (as it runs its docker
// commands): the child's parent is the Worker, and until the exec it runs
// the Worker's image.
func (r *Runner) Exec(argv ...string) (string, error) {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = quote(a)
	}
	return r.run(strings.Join(q, " "))
}

// ExecBackground is Exec for a command that keeps running (as the
// runner's `docker run` of a container action, attached until it ends):
// the Worker forks and execs argv in the background and returns at once.
// Its output goes nowhere. It returns the child's pid (in the Worker's
// PID namespace).
func (r *Runner) ExecBackground(argv ...string) (int, error) {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = quote(a)
	}
	out, err := r.run(strings.Join(q, " ") + " < /dev/null > /dev/null 2>&1 & echo $!")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(out))
}

// ExecEnv is Exec with env ("NAME=value") added to the child's environment.
func (r *Runner) ExecEnv(env []string, argv ...string) (string, error) {
	var q []string
	for _, kv := range env {
		name, val, _ := strings.Cut(kv, "=")
		q = append(q, name+"="+quote(val))
	}
	for _, a := range argv {
		q = append(q, quote(a))
	}
	return r.run(strings.Join(q, " "))
}

func (r *Runner) run(line string) (string, error) {
	r.mu.Lock()
	r.n++
	n := r.n
	r.mu.Unlock()
	out := filepath.Join(r.Dir, "io", "out."+strconv.Itoa(n))
	rc := filepath.Join(r.Dir, "io", "rc."+strconv.Itoa(n))
	if _, err := fmt.Fprintf(r.fifo, "%s > %s 2>&1 < /dev/null; echo $? > %s.tmp; mv %s.tmp %s\n", line, out, rc, rc, rc); err != nil {
		return "", err
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(rc)
		if err == nil {
			o, _ := os.ReadFile(out)
			if code := strings.TrimSpace(string(b)); code != "0" {
				return string(o), fmt.Errorf("exit status %s", code)
			}
			return string(o), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("stand-in runner: no answer to %q in 60 s", line)
		}
	}
}

// Pid returns the Worker's pid (as seen by the caller's /proc: only
// meaningful when command ran it in the caller's PID namespace).
func (r *Runner) Pid() (int, error) {
	out, err := r.run("echo $$")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(out))
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TempDir is a temporary directory (removed in t.Cleanup) that the
// runner's unprivileged user can enter: t.TempDir's parent is closed to it.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hr-fakerunner")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Nobody is argv run as the unprivileged runner user of the tests (nobody).
func Nobody(argv ...string) *exec.Cmd {
	return exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, argv...)...)
}
