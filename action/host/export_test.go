package host_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/action/host"
	"github.com/harden-runner/harden-runner/agent"
	"github.com/harden-runner/harden-runner/journal"
)

const testJournal = `{"start":{}}` + "\n" + `{"snapshot":{}}` + "\n" + `{"stop":{}}` + "\n"

// agentDir makes a VM root (a temp dir stands for PID 1's root) with the
// agent's directory /opt/hr and its root-only state dir and journal.
func agentDir(t *testing.T) (root, state string) {
	t.Helper()
	root = t.TempDir()
	state = filepath.Join(root, "opt/hr/state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, agent.StateJournal), []byte(testJournal), 0o600); err != nil {
		t.Fatal(err)
	}
	return root, state
}

// TestExportRoundTrip: the whole journal, or a snapshot's prefix, and the
// stop's error come back out of the stream as they went in.
func TestExportRoundTrip(t *testing.T) {
	root, _ := agentDir(t)
	var buf bytes.Buffer
	if err := host.WriteExport(&buf, root, "/opt/hr", nil, errors.New("agent: daemon stopped with: x")); err != nil {
		t.Fatal(err)
	}
	ex, err := journal.ReadExport(&buf, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if string(ex.Journal) != testJournal || ex.Snapshot || !strings.Contains(ex.Error, "stopped with: x") {
		t.Errorf("export %+v", ex)
	}

	buf.Reset()
	cut := int64(strings.Index(testJournal, `{"stop"`))
	if err := host.WriteExport(&buf, root, "/opt/hr", &agent.SnapshotResult{Bytes: cut}, nil); err != nil {
		t.Fatal(err)
	}
	ex, err = journal.ReadExport(&buf, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if string(ex.Journal) != testJournal[:cut] || !ex.Snapshot || ex.Error != "" {
		t.Errorf("snapshot export %+v", ex)
	}
}

// TestExportRefusesOpenJournal: a journal a step could have written (a
// link, a state dir or journal open to others) is not exported: the
// stream carries no journal and an error naming why.
func TestExportRefusesOpenJournal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, root, state string)
		want  string
	}{
		{"journal is a link", func(t *testing.T, root, state string) {
			j := filepath.Join(state, agent.StateJournal)
			other := filepath.Join(root, "forged.jsonl")
			if err := os.WriteFile(other, []byte(`{"stop":{}}`+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(j); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, j); err != nil {
				t.Fatal(err)
			}
		}, "open the journal"},
		{"state dir open to others", func(t *testing.T, _, state string) {
			if err := os.Chmod(state, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "open to others"},
		{"journal open to others", func(t *testing.T, _, state string) {
			if err := os.Chmod(filepath.Join(state, agent.StateJournal), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "open to others"},
		{"state dir not root's", func(t *testing.T, _, state string) {
			if err := os.Chown(state, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "not owned by root"},
		{"no journal", func(t *testing.T, _, state string) {
			if err := os.Remove(filepath.Join(state, agent.StateJournal)); err != nil {
				t.Fatal(err)
			}
		}, "no journal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if os.Geteuid() != 0 {
				t.Skip("needs root (files owned by root)")
			}
			root, state := agentDir(t)
			tc.setup(t, root, state)
			var buf bytes.Buffer
			if err := host.WriteExport(&buf, root, "/opt/hr", nil, nil); err != nil {
				t.Fatal(err)
			}
			ex, err := journal.ReadExport(&buf, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if len(ex.Journal) != 0 || !strings.Contains(ex.Error, tc.want) {
				t.Errorf("export %q, error %q, want one with %q", ex.Journal, ex.Error, tc.want)
			}
		})
	}
}
