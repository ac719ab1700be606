package filemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/harden-runner/harden-runner/event"
)

// nobody is the unprivileged user the workload runs as, like the runner's.
var nobody = []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify and running the workload as another user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
}

// recorder is an event.Emit that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	recs []event.Record
}

func (r *recorder) emit(rec event.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *recorder) files() []event.File {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.File
	for _, rec := range r.recs {
		if rec.File != nil {
			out = append(out, *rec.File)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Event < out[j].Event
	})
	return out
}

func (r *recorder) coverage() []event.Coverage {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.Coverage
	for _, rec := range r.recs {
		if rec.Coverage != nil {
			out = append(out, *rec.Coverage)
		}
	}
	return out
}

func (r *recorder) stats() []event.Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.Stats
	for _, rec := range r.recs {
		if rec.Stats != nil {
			out = append(out, *rec.Stats)
		}
	}
	return out
}

func (r *recorder) notes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		if rec.Note != nil {
			out = append(out, string(rec.Note.Level)+": "+rec.Note.Message)
		}
	}
	return out
}

// treeForTest makes a workspace in a fresh directory that the unprivileged
// user may change: files maps relative paths to contents. It returns the
// root.
func treeForTest(t testing.TB, files map[string]string) string {
	t.Helper()
	base, err := os.MkdirTemp("", "filemon-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "ws")
	if err := os.Mkdir(root, 0o777); err != nil {
		t.Fatal(err)
	}
	writeTree(t, root, files)
	return root
}

func writeTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	// Make everything writable by the workload's user, as a checkout by
	// the runner user would be.
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return nil
		}
		if err := os.Chown(p, 65534, 65534); err != nil {
			return err
		}
		if fi.IsDir() {
			return os.Chmod(p, 0o777)
		}
		return os.Chmod(p, fi.Mode().Perm()|0o666)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// workload runs a command in dir as the unprivileged user and returns its
// pid. It fails the test if the command fails.
func workload(t testing.TB, dir string, args ...string) int {
	t.Helper()
	cmd := exec.Command(nobody[0], append(nobody[1:], args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return cmd.Process.Pid
}

// startForTest starts a monitor on root and closes it at cleanup.
func startForTest(t testing.TB, cfg Config) (*Monitor, *recorder) {
	t.Helper()
	rec := &recorder{}
	if cfg.Emit == nil {
		cfg.Emit = rec.emit
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, rec
}

// program returns the base name of the process's executable, or "?".
func program(p event.Process) string {
	if p.Exe == "" {
		return "?"
	}
	return filepath.Base(p.Exe)
}

func describe(fs []event.File) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "\n  %s %s by pid %d %s %q unknown=%q", f.Event, f.Path, f.Process.PID, program(f.Process), f.Process.Cmdline, f.Process.Unknown)
	}
	return b.String()
}
