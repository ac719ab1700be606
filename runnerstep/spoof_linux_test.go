package runnerstep_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/fakerunner"
	"github.com/harden-runner/harden-runner/proc"
	"github.com/harden-runner/harden-runner/runnerid"
	"github.com/harden-runner/harden-runner/runnerstep"
)

// TestSpoofsDoNotSteerSteps: real processes under a stand-in runner. A
// step that starts a copy of bash named Runner.Worker, or `exec -a`s a
// command line that looks like actions/checkout, still has its events
// blamed on itself: the root found is the pinned runner's child.
func TestSpoofsDoNotSteerSteps(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: reads other users' /proc entries")
	}
	dir := fakerunner.TempDir(t)
	r := fakerunner.Start(t, filepath.Join(dir, "runner"), fakerunner.Nobody)
	wpid, err := r.Pid()
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := runnerid.FromAncestry(wpid)
	if err != nil {
		t.Fatal(err)
	}
	fakeWorker := filepath.Join(dir, "x/bin/Runner.Worker")
	if err := os.MkdirAll(filepath.Dir(fakeWorker), 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile("/bin/bash"); err != nil || os.WriteFile(fakeWorker, b, 0o755) != nil {
		t.Fatal("copy bash", err)
	}
	checkout := "node /home/runner/work/_actions/actions/checkout/v4/dist/index.js"
	for _, tc := range []struct{ name, script string }{
		{"a copy of bash named Runner.Worker", fakeWorker + " -c 'sleep 30 & echo $!; wait' & wait"},
		{"exec -a a checkout command line", "bash -c 'exec -a \"" + checkout + "\" sleep 30' & echo $!; wait"},
		{"both", fakeWorker + " -c 'bash -c \"exec -a \\\"" + checkout + "\\\" sleep 30\" & echo $!; wait' & wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The step: sh SCRIPT, the runner's child.
			// The script is a file, as the runner's are, so the step's
			// command line does not hold the spoof's text.
			script := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".sh")
			if err := os.WriteFile(script, []byte(tc.script+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			out := make(chan string, 1)
			go func() { o, _ := r.Exec("sh", script); out <- o }()
			var stepPid, pid int
			for deadline := time.Now().Add(20 * time.Second); pid == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				stepPid, pid, _ = tree(pinned.PID)
			}
			if pid == 0 {
				t.Fatal("the step's spoofing process never appeared")
			}
			p := proc.Info(pid)
			root, ok := runnerstep.RootOf(p, pinned.PID)
			if !ok || root.PID != stepPid {
				t.Errorf("root of %d (%s, parents %+v) = %+v, %v; want the step %d", pid, p.Cmdline, p.Parents, root, ok, stepPid)
			}
			var recs []event.Record
			emit := runnerstep.NewTracker(runnerstep.HostFS{}, pinned.PID).Wrap(func(r event.Record) { recs = append(recs, r) })
			emit(event.Record{Flow: &event.Flow{Process: p}})
			if len(recs) != 2 || recs[0].StepRoot == nil {
				t.Fatalf("records %+v", recs)
			}
			if sr := recs[0].StepRoot; sr.PID != stepPid || sr.Cmdline != "sh "+script || strings.Contains(sr.Name, "checkout") {
				t.Errorf("step root %+v, want pid %d, sh %s", sr, stepPid, script)
			}
			_, _, under := tree(pinned.PID)
			for _, k := range under {
				_ = syscall.Kill(k, syscall.SIGKILL)
			}
			<-out
		})
	}
}

// tree returns the runner's child (the step), its descendant running
// sleep once there is one, and every process under the runner but the
// Worker's own (to end the step by pid).
func tree(runner int) (step, sleeper int, under []int) {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, err := runnerid.Stat(pid); err == nil {
			parent[pid] = ppid
		}
	}
	for pid := range parent {
		for p, n := pid, 0; p > 1 && n < 10; p, n = parent[p], n+1 {
			if parent[p] == runner {
				under = append(under, pid)
				if exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); filepath.Base(exe) == "sleep" {
					step, sleeper = p, pid
				}
				break
			}
		}
	}
	return step, sleeper, under
}
