package filemon

import (
	"fmt"
	"os"
	"path/filepath"
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
	const perlTruncate = `perl -e 'truncate($ARGV[0], 1) or die "$ARGV[0]: $!"' `
	longDir := "trunclong/" + strings.Repeat("d", 220) // absolute paths > 255 bytes
	tools := []struct {
		name, exe string
		kind      event.FileOp
		cmd       func(f string) string // f relative to the root, the script's directory
	}{
		{"rm", "rm", event.Delete, func(f string) string { return "rm -f " + f }},
		{"mv", "mv", event.Rename, func(f string) string { return "mv " + f + " " + f + ".moved" }},
		{"sed", "sed", event.Overwrite, func(f string) string { return "sed -i s/a/b/ " + f }},
		{"truncate", "truncate", event.Truncate, func(f string) string { return "truncate -s 1 " + f }},
		// A write: the modify group hears of it too, and must not make a
		// truncation of it when its event is read after the write settled.
		{"append", "perl", event.Overwrite, func(f string) string {
			return `perl -e 'open(F, ">>", $ARGV[0]) or die; print F "x"' ` + f
		}},
		// truncate(2) by path: no open, so no descriptor-mode fanotify
		// event; inotify's IN_MODIFY alone has no pid. The rows after it
		// reach the file by names other than its baseline path.
		{"truncate2", "perl", event.Truncate, func(f string) string { return perlTruncate + f }},
		{"truncsym", "perl", event.Truncate, func(f string) string {
			return "ln -s \"$PWD/" + f + "\" \"$SIDE/s.$$\" && " + perlTruncate + "\"$SIDE/s.$$\" && rm \"$SIDE/s.$$\""
		}},
		{"trunchard", "perl", event.Truncate, func(f string) string {
			return "ln " + f + " \"$SIDE/h.$$\" && " + perlTruncate + "\"$SIDE/h.$$\" && rm \"$SIDE/h.$$\""
		}},
		{"truncdotdot", "perl", event.Truncate, func(f string) string {
			return "(cd truncdotdot && " + perlTruncate + "../" + f + ")"
		}},
		{"truncproc", "perl", event.Truncate, func(f string) string {
			return `perl -e 'chdir "truncproc" or die; truncate("/proc/self/cwd/` + filepath.Base(f) + `", 1) or die "$!"'`
		}},
		{"trunclong", "perl", event.Truncate, func(f string) string { return perlTruncate + "\"$PWD/" + f + "\"" }},
		// A container's view: the directory bind-mounted elsewhere in a
		// mount namespace of its own (a user namespace makes that allowed).
		{"truncmntns", "perl", event.Truncate, func(f string) string {
			return `unshare -Urm sh -c "mount --bind '$PWD/truncmntns' /mnt && perl -e 'truncate(\$ARGV[0], 1) or die' /mnt/` + filepath.Base(f) + `"`
		}},
	}
	dirOf := func(tool string) string {
		if tool == "trunclong" {
			return longDir
		}
		return tool
	}
	files := map[string]string{}
	for _, tool := range tools {
		for i := range n {
			files[fmt.Sprintf("%s/f%03d.txt", dirOf(tool.name), i)] = "aaaa\n"
		}
	}
	root := treeForTest(t, files)
	// Links to the files from outside the root (same file system).
	side := filepath.Join(filepath.Dir(root), "side")
	if err := os.Mkdir(side, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(side, 0o777); err != nil {
		t.Fatal(err)
	}
	tr := lineagetest.Start(t)
	finder := proc.NewFinder(nil).WithLineage(tr)
	t.Cleanup(func() { finder.Close() })
	m, rec := startForTest(t, Config{Root: root, NoOpenGate: true, Process: finder.Info})
	var script strings.Builder
	script.WriteString("SIDE=" + side + "\n")
	for _, tool := range tools {
		for i := range n {
			script.WriteString(tool.cmd(fmt.Sprintf("%s/f%03d.txt", dirOf(tool.name), i)) + "\n")
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
			p := fmt.Sprintf("%s/f%03d.txt", dirOf(tool.name), i)
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
