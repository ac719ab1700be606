package filemon

import (
	"fmt"
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/lineage/lineagetest"
	"github.com/harden-runner/harden-runner/proc"
)

// lineageFinderForTest starts the kernel's process table (observe-only
// tracepoints) and returns a process lookup that asks it first, as the
// agent's is. It skips when the kernel cannot run the programs.
func lineageFinderForTest(t *testing.T) func(int) event.Process {
	t.Helper()
	tr := lineagetest.Start(t)
	f := proc.NewFinder(nil).WithLineage(tr)
	t.Cleanup(func() { f.Close() })
	return f.Info
}

// TestWritersNamedWithoutGate is the measurement that let the open gate
// go: with the kernel's process table (which keeps exited processes), the
// short-lived programs that change baseline files — rm, mv, sed -i,
// truncate, a truncate(2) by path, each run N times by a shell as the unprivileged user — are
// all named, with no open ever held. Without the table a read of /proc
// finds many of them gone (see the package doc).
func TestWritersNamedWithoutGate(t *testing.T) {
	needRoot(t)
	n := 100
	if testing.Short() {
		n = 20
	}
	tools := []struct {
		name, exe string
		kind      event.FileOp
		cmd       func(f string) string
	}{
		{"rm", "rm", event.Delete, func(f string) string { return "rm -f " + f }},
		{"mv", "mv", event.Rename, func(f string) string { return "mv " + f + " " + f + ".moved" }},
		{"sed", "sed", event.Overwrite, func(f string) string { return "sed -i s/a/b/ " + f }},
		{"truncate", "truncate", event.Truncate, func(f string) string { return "truncate -s 1 " + f }},
		// truncate(2) by path: no open, so no fanotify event; inotify's
		// IN_MODIFY alone has no pid (the kernel's truncation record does).
		{"truncate2", "perl", event.Truncate, func(f string) string { return "perl -e 'truncate(\"" + f + "\", 1) or die'" }},
	}
	files := map[string]string{}
	for _, tool := range tools {
		for i := range n {
			files[fmt.Sprintf("%s/f%03d.txt", tool.name, i)] = "aaaa\n"
		}
	}
	root := treeForTest(t, files)
	tr := lineagetest.Start(t)
	finder := proc.NewFinder(nil).WithLineage(tr)
	t.Cleanup(func() { finder.Close() })
	m, rec := startForTest(t, Config{Root: root, NoOpenGate: true, Process: finder.Info, PathTruncator: finder.PathTruncator})
	var script strings.Builder
	for _, tool := range tools {
		for i := range n {
			script.WriteString(tool.cmd(fmt.Sprintf("%s/f%03d.txt", tool.name, i)) + "\n")
		}
	}
	workload(t, root, "sh", "-c", script.String())
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]event.File{}
	for _, f := range rec.files() {
		if _, dup := got[f.Path]; !dup || f.Event != event.Overwrite {
			got[f.Path] = f
		}
	}
	for _, tool := range tools {
		named := 0
		var bad []string
		for i := range n {
			p := fmt.Sprintf("%s/f%03d.txt", tool.name, i)
			f, ok := got[p]
			switch {
			case !ok:
				bad = append(bad, p+": not reported")
			case f.Event != tool.kind:
				bad = append(bad, fmt.Sprintf("%s: %s, want %s", p, f.Event, tool.kind))
			case program(f.Process) != tool.exe || f.Process.UID != 65534 || f.Process.Unknown != "":
				bad = append(bad, fmt.Sprintf("%s: by pid %d %s uid %d unknown=%q", p, f.Process.PID, program(f.Process), f.Process.UID, f.Process.Unknown))
			default:
				named++
			}
		}
		t.Logf("%s: %d of %d named", tool.name, named, n)
		if len(bad) > 0 {
			t.Errorf("%s: %d of %d not named right:\n  %s", tool.name, len(bad), n, strings.Join(bad[:min(len(bad), 10)], "\n  "))
		}
	}
}
