package host_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/action/host"
	"github.com/harden-runner/harden-runner/agent"
)

// TestExportJournal: the journal and the stop's result land in the post
// step's directory of the VM (a temp dir stands for PID 1's root), and a
// symbolic link anywhere on that path, which a step could plant in the
// runner's home, is refused rather than followed.
func TestExportJournal(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "opt/hr/state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, agent.StateJournal), []byte(`{"stop":{}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(root, "home/runner/work/_temp/_github_home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	out := "/home/runner/work/_temp/_github_home/harden-runner-report"
	if err := host.ExportJournal(root, "/opt/hr", out, errors.New("agent: daemon stopped with: x")); err != nil {
		t.Fatal(err)
	}
	j, _ := os.ReadFile(filepath.Join(root, out, host.ExportJournalFile))
	b, _ := os.ReadFile(filepath.Join(root, out, host.ExportResultFile))
	var res host.StopResult
	if string(j) != `{"stop":{}}`+"\n" || json.Unmarshal(b, &res) != nil || !strings.Contains(res.Error, "stopped with: x") {
		t.Errorf("journal %q, result %q", j, b)
	}

	// A step replaced the report dir's parent with a link to /etc.
	etc := filepath.Join(root, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(home); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", home); err != nil {
		t.Fatal(err)
	}
	if err := host.ExportJournal(root, "/opt/hr", out, nil); err == nil {
		t.Error("export through a symlinked directory succeeded")
	}
	// The report dir itself a link.
	if err := os.Remove(home); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(root, out)); err != nil {
		t.Fatal(err)
	}
	if err := host.ExportJournal(root, "/opt/hr", out, nil); err == nil {
		t.Error("export into a symlinked report dir succeeded")
	}
	if ents, _ := os.ReadDir(etc); len(ents) != 0 {
		t.Errorf("wrote into the link's target: %v", ents)
	}
}
