package agent

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/lineage"
	"github.com/harden-runner/harden-runner/lineage/lineagetest"
	"github.com/harden-runner/harden-runner/proc"
	"github.com/harden-runner/harden-runner/runnerstep"
	"golang.org/x/sys/unix"
)

// fakeCheckout makes a "node" (a copy of sh) and checkout's entry point
// under an _actions/actions/checkout/v4/dist directory: `node entry` is a
// command line the runner would start for the checkout. The "checkout"
// waits for its stdin to close: it stays the process it was started as (a
// builtin, no exec).
func fakeCheckout(t *testing.T) (node, entry string) {
	t.Helper()
	dir := t.TempDir()
	node = filepath.Join(dir, "node")
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(node, sh, 0o755); err != nil {
		t.Fatal(err)
	}
	entry = filepath.Join(dir, "_actions/actions/checkout/v4/dist/index.js")
	if err := os.MkdirAll(filepath.Dir(entry), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(entry, []byte("read x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return node, entry
}

// TestCheckoutNotForgeable runs the attacks on isCheckout with real
// processes and the kernel's process table. The test process stands in for
// the pinned Runner.Worker; "node" is a copy of sh and checkout's entry
// point a script under an _actions/actions/checkout/v4/dist directory, so
// every command line below is one that the old rule (the step root's
// executable and command line as /proc shows them) took for the checkout.
func TestCheckoutNotForgeable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the kernel's process table")
	}
	if _, err := exec.LookPath("perl"); err != nil {
		t.Skip("needs perl for a raw clone(2)")
	}
	tr := lineagetest.Start(t)
	finder := proc.NewFinder(nil).WithLineage(tr)
	t.Cleanup(func() { finder.Close() })
	procfs := proc.NewFinder(nil)
	t.Cleanup(func() { procfs.Close() })

	node, entry := fakeCheckout(t)
	runner := os.Getpid()

	// start runs a step root and returns the pid to ask about: the root,
	// or what it printed (the sibling a clone made).
	start := func(t *testing.T, printsPID bool, args ...string) int {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out io.ReadCloser
		if printsPID {
			if out, err = cmd.StdoutPipe(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stdin.Close(); cmd.Wait() })
		if !printsPID {
			return cmd.Process.Pid
		}
		var pid int
		if _, err := fmt.Fscan(out, &pid); err != nil || pid <= 0 {
			t.Fatalf("%v printed no pid: %v", args, err)
		}
		// The sibling is this process's child: end and reap it.
		t.Cleanup(func() {
			unix.Kill(pid, unix.SIGKILL)
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, 0, nil)
		})
		return pid
	}
	clone := `my $p = syscall(56, 0x8000|17, 0, 0, 0, 0); if ($p == 0) { exec @ARGV; exit 1 } print "$p\n"; close STDOUT; <STDIN>;`
	for _, tc := range []struct {
		name      string
		printsPID bool
		args      []string
		want      bool
	}{
		{"the runner starts node on checkout", false, []string{node, entry}, true},
		{"a step root execs node on checkout", false, []string{"/bin/sh", "-c", "exec " + node + " " + entry}, false},
		{"a step root execs it under another argv[0]", false, []string{"bash", "-c", "exec -a " + node + " " + node + " " + entry}, false},
		{"a step makes a sibling of itself (CLONE_PARENT) to run it", true, []string{"perl", "-e", clone, node, entry}, false},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			pid := start(t, tc.printsPID, tc.args...)
			// Wait until it runs the entry point (an exec may be to come).
			var fromProc event.Process
			deadline := time.Now().Add(10 * time.Second)
			for {
				fromProc = procfs.Info(pid)
				if path.Base(fromProc.Exe) == "node" && strings.HasSuffix(fromProc.Cmdline, "/node "+entry) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("pid %d is %q, not running the entry point", pid, fromProc.Cmdline)
				}
				time.Sleep(5 * time.Millisecond)
			}
			// The old rule, on what /proc says, takes every one for the
			// checkout: the attack works against it.
			if root, ok := runnerstep.RootOf(fromProc, runner); !ok || path.Base(root.Exe) != "node" || !checkoutEntry.MatchString(root.Cmdline) {
				t.Fatalf("the old rule does not take %s %q (root %+v) for the checkout: the attack proves nothing", fromProc.Exe, fromProc.Cmdline, root)
			}
			for _, p := range []event.Process{fromProc, finder.Info(pid)} {
				if got := isCheckout(p, runner, tr, nil); got != tc.want {
					t.Errorf("isCheckout(pid %d %s %q, parent %d) = %v, want %v", p.PID, p.Exe, p.Cmdline, p.Parents[0].PID, got, tc.want)
				}
			}
		})
	}
}

// TestCheckoutPostStepIsNot: the runner starts checkout's post step
// exactly as its main step, and a build step may have planted the git it
// runs: the post step (STATE_isPost=true in the environment the runner
// gives it) is not the checkout, except for its change to .git/config.
// The old rule took it for the checkout (isCheckout with no postSteps).
func TestCheckoutPostStepIsNot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the kernel's process table")
	}
	runner := os.Getpid()
	post := newPostSteps(runner)
	tr := lineagetest.StartConfig(t, lineage.Config{OnExec: post.exec})
	finder := proc.NewFinder(nil).WithLineage(tr)
	t.Cleanup(func() { finder.Close() })

	node, entry := fakeCheckout(t)
	for _, tc := range []struct {
		name     string
		env      []string
		checkout bool // isCheckout
		isPost   bool // isCheckoutPost
	}{
		{"main step", []string{"PATH=/usr/bin:/bin", "STATE_other=1"}, true, false},
		{"post step", []string{"PATH=/usr/bin:/bin", "STATE_isPost=true"}, false, true},
		{"a value that only contains the marker", []string{"X=STATE_isPost=true"}, true, false},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			cmd := exec.Command(node, entry)
			cmd.Env = tc.env
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { stdin.Close(); cmd.Wait() })
			pid := cmd.Process.Pid
			var p event.Process
			deadline := time.Now().Add(10 * time.Second)
			for {
				p = finder.Info(pid)
				if _, ok := checkoutRoot(p, runner, tr); ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("pid %d (%q) never looked like the checkout", pid, p.Cmdline)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if !isCheckout(p, runner, tr, nil) {
				t.Fatal("the old rule does not take it for the checkout: the test proves nothing")
			}
			if got := isCheckout(p, runner, tr, post); got != tc.checkout {
				t.Errorf("isCheckout = %v, want %v", got, tc.checkout)
			}
			if got := isCheckoutPost(p, runner, tr, post); got != tc.isPost {
				t.Errorf("isCheckoutPost = %v, want %v", got, tc.isPost)
			}
			// Fail closed: a root whose environment was never read (gone
			// before its exec was handled) is neither.
			if isCheckout(p, runner, tr, newPostSteps(runner)) || isCheckoutPost(p, runner, tr, newPostSteps(runner)) {
				t.Error("a root with no record is taken for a checkout step")
			}
		})
	}
}
