package lsm

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/internal/unixrec"
)

// TestGuard: a hard link made before the guard (as a bind mount made
// before the gate: both hold the socket's inode) reaches the listening
// socket; with the guard only the allowed process does, a refusal is
// recorded, and after Close the link works again. Judged by the accepts
// the listening socket saw. The guarded inode is this test's own socket.
func TestGuard(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("socat"); err != nil {
		t.Skip("needs socat")
	}
	dir, err := os.MkdirTemp("", "hr-lsm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "dockerd.sock")
	rec := unixrec.Listen(t, sock)
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	reached := rec.Reached
	premounted := filepath.Join(dir, "premounted.sock")
	if err := os.Link(sock, premounted); err != nil {
		t.Fatal(err)
	}
	send := func(tag string) error {
		c := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
			"socat", "-u", "STDIN", "UNIX-CONNECT:"+premounted)
		c.Stdin = strings.NewReader(tag + "\n")
		out, err := c.CombinedOutput()
		if err != nil {
			return &exec.ExitError{ProcessState: c.ProcessState, Stderr: out}
		}
		return nil
	}
	if err := send("before"); err != nil || !reached("before") {
		t.Fatalf("before the guard the link does not reach the socket, so this test could not fail: %v", err)
	}

	inodes, err := ListeningInodes(sock)
	if err != nil || len(inodes) != 1 {
		t.Fatalf("ListeningInodes(%s) = %v, %v", sock, inodes, err)
	}
	var dmu sync.Mutex
	var denials []Denial
	g, err := Start(inodes, []int{os.Getpid()}, func(d Denial) { dmu.Lock(); denials = append(denials, d); dmu.Unlock() })
	if err != nil {
		t.Skipf("BPF LSM not available: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	if err := send("guarded"); err == nil {
		t.Error("a connect through the link passed the guard")
	} else if ee, ok := err.(*exec.ExitError); ok && !strings.Contains(string(ee.Stderr), "ermission") {
		t.Errorf("refused, but not with EPERM: %s", ee.Stderr)
	}
	// The allowed process (this one) still connects.
	c, err := net.Dial("unix", premounted)
	if err != nil {
		t.Fatalf("the allowed process was refused: %v", err)
	}
	c.Write([]byte("allowed\n"))
	c.Close()
	if !reached("allowed") {
		t.Error("the allowed connect did not arrive")
	}
	// Another socket is not guarded.
	other := filepath.Join(dir, "other.sock")
	oln, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	oln.Close()

	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		dmu.Lock()
		n := len(denials)
		dmu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
	}
	dmu.Lock()
	if len(denials) != 1 || denials[0].Comm != "socat" || denials[0].UID != 65534 || denials[0].Inode != inodes[0] || denials[0].NSPID == 0 {
		t.Errorf("denials %+v", denials)
	}
	dmu.Unlock()
	if g.Lost() != 0 {
		t.Errorf("lost %d", g.Lost())
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := send("after"); err != nil || !reached("after") {
		t.Errorf("after Close the link is still refused: %v", err)
	}
	if rec.Saw("guarded") {
		t.Error("the refused connect reached the socket")
	}
}

func TestParseNetUnix(t *testing.T) {
	in := `Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 12345 /run/docker.sock
0000000000000000: 00000003 00000000 00000000 0001 03 12346 /run/docker.sock
0000000000000000: 00000002 00000000 00010000 0001 01 12347 /run/other.sock
0000000000000000: 00000002 00000000 00010000 0001 01 12348 /run/with space.sock
0000000000000000: 00000002 00000000 00010000 0001 01 12349
`
	for path, want := range map[string][]uint64{"/run/docker.sock": {12345}, "/run/with space.sock": {12348}, "/nope": nil} {
		got, err := parseNetUnix(strings.NewReader(in), path)
		if err != nil || len(got) != len(want) || (len(want) > 0 && got[0] != want[0]) {
			t.Errorf("%s: %v %v, want %v", path, got, err, want)
		}
	}
}

func FuzzParseNetUnix(f *testing.F) {
	f.Add("h\n0: 2 0 00010000 0001 01 5 /a\n", "/a")
	f.Fuzz(func(t *testing.T, in, path string) {
		got, _ := parseNetUnix(strings.NewReader(in), path)
		if len(got) > strings.Count(in, "\n")+1 {
			t.Errorf("more inodes than lines")
		}
	})
}

// TestDiagnose: the reason names the kernel's active LSMs, read even
// where securityfs is not mounted, and mounting it for that leaves no
// mount behind in our namespace.
func TestDiagnose(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	// This thread's view: the thread that mounted it is another, gone or
	// parked by the runtime (the main thread cannot exit).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, _ := os.ReadFile("/proc/thread-self/mountinfo")
	why := Diagnose(fmt.Errorf("load: %w", unix.EPERM))
	if !strings.Contains(why, "active LSMs: ") && !strings.Contains(why, "BPF LSM is active (") {
		t.Errorf("Diagnose = %q, want the active LSMs named", why)
	}
	after, _ := os.ReadFile("/proc/thread-self/mountinfo")
	if strings.Count(string(after), "securityfs") != strings.Count(string(before), "securityfs") {
		t.Errorf("a securityfs mount was left behind:\n%s", after)
	}
	t.Log(why)
}
