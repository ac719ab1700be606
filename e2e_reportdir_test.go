package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunReportDirIsNotTrusted: the report dir is one the command's user
// can write (here a directory of nobody's, as the workspace is the runner
// user's). What that user plants or swaps there must not make root write
// elsewhere, hang run, leak the journal, or stand in for the report.
func TestRunReportDirIsNotTrusted(t *testing.T) {
	w := newWorld(t)
	// A root-only file and directory a planted link points at.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(filepath.Join(secret+"-file"), []byte("root's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	nobody := func(t *testing.T, script string) {
		t.Helper()
		if out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("as nobody: %s: %v\n%s", script, err, out)
		}
	}
	// run's command, as nobody: a blocked probe, then whatever the case does.
	probe := "curl -sk --max-time 3 https://198.18.1.11/; "
	runIn := func(t *testing.T, dir, then string) ([]byte, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args := w.agent(w.bin, "run", "--egress-policy", "block", "--upstream", "198.18.0.2", "--report-dir", dir,
			"--disable-file-monitoring", "--", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", probe+then).Args
		cmd := exec.CommandContext(ctx, args[0], args[1:]...) // killed if it hangs
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("run hung: %s", out)
		}
		return out, err
	}
	blocked := func(t *testing.T, dir string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "report.json"))
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			Counts struct {
				Blocked int `json:"destinations_blocked"`
			} `json:"counts"`
		}
		if err := json.Unmarshal(b, &rep); err != nil || rep.Counts.Blocked < 1 {
			t.Errorf("report.json at %s is not run's (the blocked probe is missing): %v %s", dir, err, b)
		}
		st, err := os.Lstat(filepath.Join(dir, "journal.jsonl"))
		if err != nil || !st.Mode().IsRegular() || st.Sys().(*syscall.Stat_t).Uid != 0 || st.Mode().Perm() != 0o600 {
			t.Errorf("journal.jsonl beside the report: %v %v, want root's own file, mode 0600", st, err)
		}
	}
	intact := func(t *testing.T) {
		t.Helper()
		if b, err := os.ReadFile(secret + "-file"); err != nil || string(b) != "root's\n" {
			t.Errorf("root's file was written through the link: %q %v", b, err)
		}
		if ents, _ := os.ReadDir(secret); len(ents) != 0 {
			t.Errorf("root's directory got files through the link: %v", ents)
		}
	}

	t.Run("journal.jsonl a link to a root file", func(t *testing.T) {
		dir := filepath.Join(w.tmp, "rep-link")
		nobody(t, "mkdir "+dir+" && ln -s "+secret+"-file "+dir+"/journal.jsonl && ln -s "+secret+"-file "+dir+"/report.json")
		if out, err := runIn(t, dir, "true"); err != nil {
			t.Fatalf("run: %v\n%s", err, out)
		}
		intact(t)
		blocked(t, dir)
	})
	t.Run("journal.jsonl a FIFO", func(t *testing.T) {
		dir := filepath.Join(w.tmp, "rep-fifo")
		nobody(t, "mkdir "+dir+" && mkfifo "+dir+"/journal.jsonl "+dir+"/summary.md")
		if out, err := runIn(t, dir, "true"); err != nil {
			t.Fatalf("run: %v\n%s", err, out)
		}
		blocked(t, dir)
	})
	t.Run("report dir a link", func(t *testing.T) {
		dir := filepath.Join(w.tmp, "rep-dirlink")
		nobody(t, "ln -s "+secret+" "+dir)
		out, err := runIn(t, dir, "true")
		if err == nil || !strings.Contains(string(out), "not a directory") {
			t.Errorf("run wrote through a linked report dir: %v\n%s", err, out)
		}
		intact(t)
	})
	t.Run("report dir swapped during the run", func(t *testing.T) {
		dir := filepath.Join(w.tmp, "rep-swap")
		// The forgery: a journal that says nothing happened.
		forged := `{"start":{"time":"2026-01-01T00:00:00Z","mode":"block"}}` + "\n" + `{"stop":{"time":"2026-01-01T00:00:01Z"}}` + "\n"
		nobody(t, "mkdir "+dir+" && chmod 777 "+dir)
		out, err := runIn(t, dir, "mv "+dir+" "+dir+".real && mkdir "+dir+" && printf '%s' '"+forged+"' > "+dir+"/journal.jsonl")
		if err == nil || !strings.Contains(string(out), "replaced during the run") {
			t.Errorf("run did not fail on the swapped report dir: %v\n%s", err, out)
		}
		blocked(t, dir)
		blocked(t, dir+".real")
	})
}
