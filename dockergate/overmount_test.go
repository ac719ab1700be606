package dockergate

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/unixrec"
)

// TestOvermount: a process in its own mount namespace, where dockerd's
// socket was bind-mounted before the gate (as the runner mounts it into a
// container), reaches dockerd through that mount; once the gate's socket
// is mounted over it there, the same path reaches the gate, and nothing
// changes in ours. Judged by which listening socket accepted.
func TestOvermount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"unshare", "nsenter", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip("needs " + tool)
		}
	}
	dir := t.TempDir()
	dockerd := unixrec.Listen(t, filepath.Join(dir, "dockerd.sock"))
	gate := unixrec.Listen(t, filepath.Join(dir, "gate.sock"))
	// The container's path: a file the socket is bind-mounted over in the
	// container's namespace only.
	dest := filepath.Join(dir, "container-docker.sock")
	if err := os.WriteFile(dest, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready")
	ct := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		"mount --bind "+dockerd.Path+" "+dest+" && touch "+ready+" && exec sleep 60")
	if err := ct.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ct.Process.Kill(); _ = ct.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container's namespace never got ready")
		}
	}
	pid := ct.Process.Pid
	send := func(tag string) {
		c := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-m", "--", "socat", "-u", "STDIN", "UNIX-CONNECT:"+dest)
		c.Stdin = strings.NewReader(tag + "\n")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("connect from the container: %v %s", err, out)
		}
	}
	send("before")
	if !dockerd.Reached("before") {
		t.Fatal("before, the container's path does not reach dockerd, so this test could not fail")
	}
	if err := overmount(gate.Path, pid, dest); err != nil {
		t.Fatal(err)
	}
	send("after")
	if !gate.Reached("after") {
		t.Error("after overmount the container's path does not reach the gate")
	}
	if dockerd.Saw("after") {
		t.Error("after overmount the container's path still reaches dockerd")
	}
	// Our namespace is untouched: dest is still the plain file here.
	if st, err := os.Stat(dest); err != nil || st.Mode().Type() == os.ModeSocket {
		t.Errorf("dest in our namespace: %v %v", st, err)
	}
	mi, _ := os.ReadFile("/proc/thread-self/mountinfo")
	if strings.Contains(string(mi), dest) {
		t.Errorf("a mount at %s in our namespace", dest)
	}
}
