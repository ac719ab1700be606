package killwatch

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// fsForTest mounts a bpf filesystem of the test's own (not the machine's).
func fsForTest(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("no kernel BTF")
	}
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Skipf("cannot mount a bpf filesystem: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	got, err := EnsureFS(dir)
	if err != nil || got != dir {
		t.Fatalf("EnsureFS(%s) = %q, %v", dir, got, err)
	}
	return dir
}

// TestKillerOutlivesTheWatcher: the process holding the watch goes away
// (Close, as a killed agent's descriptors do), a shell stops and kills
// the watched process, and a new Open of the pins names that shell, its
// parent and both signals.
func TestKillerOutlivesTheWatcher(t *testing.T) {
	pins := filepath.Join(fsForTest(t), "harden-runner", "test")
	w, err := Open(pins)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	victim := exec.Command("sleep", "30")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	if err := w.Add(victim.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Its own signals are not recorded; another process's are.
	killer := exec.Command("sh", "-c", `kill -STOP "$1"; kill -KILL "$1"; echo $$`, "sh", strconv.Itoa(victim.Process.Pid))
	out, err := killer.Output()
	if err != nil {
		t.Fatal(err)
	}
	shPid, _ := strconv.Atoi(string(out[:len(out)-1]))
	// A SIGKILL to the dead (not yet reaped) agent does not replace who
	// killed it.
	if out, err := exec.Command("sh", "-c", `kill -KILL "$1" || true`, "sh", strconv.Itoa(victim.Process.Pid)).CombinedOutput(); err != nil {
		t.Fatalf("second kill: %v %s", err, out)
	}
	_ = victim.Wait()

	w2, err := Open(pins)
	if err != nil {
		t.Fatalf("Open the pins again: %v", err)
	}
	kills, err := w2.Take(victim.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	got := map[syscall.Signal]Kill{}
	for _, k := range kills {
		got[k.Signal] = k
	}
	for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGKILL} {
		k, ok := got[sig]
		if !ok {
			t.Errorf("no record of %v; got %+v", sig, kills)
			continue
		}
		if k.Sender != shPid || k.Comm != "sh" || k.PPID != os.Getpid() || k.UID != 0 || k.Count != 1 {
			t.Errorf("%v: %+v, want sent once by sh (pid %d, uid 0), child of the test (pid %d)", sig, k, shPid, os.Getpid())
		}
	}
	if again, _ := w2.Take(victim.Process.Pid); len(again) != 0 {
		t.Errorf("Take kept records: %+v", again)
	}
	if err := w2.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(pins); !os.IsNotExist(err) {
		t.Errorf("pins left after Remove: %v", err)
	}
}

// TestTakeSignal: one signal's record is taken and the process stays
// watched, so the next is recorded too.
func TestTakeSignal(t *testing.T) {
	w, err := Open(filepath.Join(fsForTest(t), "harden-runner", "take"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer w.Remove()
	victim := exec.Command("sleep", "30")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	if err := w.Add(victim.Process.Pid); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if out, err := exec.Command("kill", "-CONT", strconv.Itoa(victim.Process.Pid)).CombinedOutput(); err != nil {
			t.Fatalf("kill -CONT: %v %s", err, out)
		}
		k, ok, err := w.TakeSignal(victim.Process.Pid, syscall.SIGCONT)
		if err != nil || !ok || k.Comm != "kill" || k.Kernel || !k.Ignored {
			t.Fatalf("round %d: TakeSignal = %+v, %v, %v; want kill(1)'s SIGCONT, ignored (its default)", i, k, ok, err)
		}
		if _, ok, _ := w.TakeSignal(victim.Process.Pid, syscall.SIGCONT); ok {
			t.Fatalf("round %d: the record was not forgotten", i)
		}
	}
}
