package proctree

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestGroupHoldsLeftovers: a command that leaves a daemon behind (a
// plain `&`, and setsid, which leaves a process group) exits; the group
// still holds the daemon, Wait says so until it is killed, then returns.
func TestGroupHoldsLeftovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a cgroup of its own)")
	}
	for _, tc := range []struct {
		name     string
		cgroup   bool
		script   string
		confined bool // the leftover stays in the group
	}{
		{"cgroup/background", true, "sleep 30 &", true},
		{"cgroup/setsid", true, "setsid sleep 30 &", true},
		{"pgroup/background", false, "sleep 30 &", true},
		{"pgroup/setsid", false, "setsid sleep 30 &", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g *Group
			if tc.cgroup {
				var err error
				if g, err = New("hr-proctree-test-" + strconv.Itoa(os.Getpid()) + "-" + tc.name[strings.IndexByte(tc.name, '/')+1:]); err != nil || !g.Confined() {
					t.Skipf("no cgroup v2 here: %v", err)
				}
			} else {
				g = &Group{fd: -1}
			}
			t.Cleanup(func() { _ = g.Kill(); _ = g.Close() }) // after a failure; the test closes it itself
			pidFile := t.TempDir() + "/leftover"
			cmd := exec.Command("sh", "-c", tc.script+"\necho $! > "+pidFile)
			cmd.SysProcAttr = &syscall.SysProcAttr{}
			g.Prepare(cmd.SysProcAttr)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			g.Started(cmd.Process.Pid)
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(pidFile)
			leftover, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("leftover pid %q", b)
			}
			t.Cleanup(func() { _ = unix.Kill(leftover, unix.SIGKILL) })
			// The leftover runs (in its own session, for setsid) before we look.
			want := tc.name[strings.IndexByte(tc.name, '/')+1:]
			for deadline := time.Now().Add(5 * time.Second); sessionLeader(leftover) != want; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("leftover %d is not %s", leftover, want)
				}
			}
			pids, _ := g.Pids()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			werr := g.Wait(ctx)
			if tc.confined {
				if len(pids) != 1 || werr == nil {
					t.Fatalf("leftover not held: pids %v, wait %v", pids, werr)
				}
				if err := g.Kill(); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := g.Wait(ctx); err != nil {
					t.Fatalf("after Kill: %v", err)
				}
			} else if werr != nil {
				t.Fatalf("a process group was expected to lose the setsid daemon: %v", werr)
			}
			if err := g.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

// sessionLeader returns "setsid" when pid leads its own session, else
// "background" (the test cases' name endings).
func sessionLeader(pid int) string {
	if sid, err := unix.Getsid(pid); err == nil && sid == pid {
		return "setsid"
	}
	return "background"
}
