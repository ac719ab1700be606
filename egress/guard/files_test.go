package guard

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/proc"
)

// TestFilesReportsWriters: root appends to hosts, empties resolv.conf and
// adds a rule to a sudoers.d drop-in of a fake /etc, and creates a new
// drop-in (not a change of a file filemon guards: it used to go unseen
// here): each is a tamper error
// naming the file, the change and the program; another file's change is
// not reported.
func TestFilesReportsWriters(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify")
	}
	root := t.TempDir()
	for name, body := range map[string]string{"hosts": "127.0.0.1 localhost\n", "resolv.conf": "nameserver 127.0.0.53\n",
		"sudoers": "root ALL=(ALL) ALL\n", "sudoers.d/90-runner": "runner ALL=(ALL) NOPASSWD:ALL\n", "other.conf": "x\n"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rec := &records{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := WatchFiles(ctx, FilesConfig{Root: root, Emit: rec.emit, Process: proc.Info})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Each writer waits on its stdin until the test has the reports: the
	// watch runs without filemon's open gate (see FilesConfig), so a
	// writer that exits at once may be named by pid only.
	var holds []*exec.Cmd
	for _, c := range []string{
		"echo '198.18.1.11 allowed.test' >> " + filepath.Join(root, "hosts") + "; read _",
		": > " + filepath.Join(root, "resolv.conf") + "; read _",
		"echo 'nobody ALL=(ALL) NOPASSWD:ALL' >> " + filepath.Join(root, "sudoers.d/90-runner") + "; read _",
		"echo 'nobody ALL=(ALL) NOPASSWD:ALL' > " + filepath.Join(root, "sudoers.d/91-new") + "; read _",
		"echo y >> " + filepath.Join(root, "other.conf") + "; read _",
	} {
		cmd := exec.Command("sh", "-c", c)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		holds = append(holds, cmd)
		defer func() { stdin.Close(); _ = cmd.Wait() }()
	}
	_ = holds
	want := map[string]string{"hosts: overwrite": "sh", "resolv.conf: truncate": "sh", "sudoers.d/90-runner: overwrite": "sh",
		"sudoers.d/91-new: created": "sh"}
	deadline := time.Now().Add(5 * time.Second)
	for f.Changes() < len(want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_ = f.Close() // settles and reports anything pending
	notes := rec.notes()
	for what, prog := range want {
		var ok bool
		for _, n := range notes {
			ok = ok || n.Tamper && n.Level == "error" && strings.Contains(n.Message, what) && n.Process != nil &&
				(strings.Contains(n.Process.Exe, "/"+prog) || prog == "sh" && strings.HasSuffix(n.Process.Exe, "/dash"))
		}
		if !ok {
			t.Errorf("no error for %q by %s: %+v", what, prog, notes)
		}
	}
	for _, n := range notes {
		if strings.Contains(n.Message, "other.conf") {
			t.Errorf("a file not watched was reported: %+v", n)
		}
	}
}
