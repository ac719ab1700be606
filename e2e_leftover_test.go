package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// TestRunOutlastsLeftovers: COMMAND (as nobody) exits at once, leaving a
// loop that keeps connecting to a blocked address. `run` keeps enforcing
// until the loop is gone: when the loop ends by itself (3 s of tries)
// within --leftover-wait, and when it never ends and is killed at the
// bound. The far end sees nothing either way, the report has the blocked
// tries and a note on the leftovers, and the loop is dead once run returns.
// Before, run tore the table down as COMMAND exited and the loop got out.
func TestRunOutlastsLeftovers(t *testing.T) {
	w := newWorld(t)
	if err := os.Chmod(w.tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	// Every loop ends by itself, so that a regression fails rather than hangs.
	const (
		short = `end=$(( $(date +%s) + 4 )); while [ $(date +%s) -lt $end ]`
		long  = `end=$(( $(date +%s) + 30 )); while [ $(date +%s) -lt $end ]`
	)
	for i, tc := range []struct {
		name, loop, wait string
		note             string
		// cgroup: enter the namespace with nsenter, which leaves the
		// machine's cgroup2 mount visible (ip netns exec remounts /sys
		// without it, so run falls back to a process group there).
		cgroup, setsid bool
	}{
		{"ends within the wait", short, "20s", "ended", false, false},
		// 3 s: on a loaded machine the loop's first try took over 1 s.
		{"killed at the bound", long, "3s", "were killed", false, false},
		{"cgroup holds a setsid daemon", long, "3s", "were killed", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(w.tmp, "leftover-"+strings.ReplaceAll(tc.name, " ", "-"))
			pidFile := filepath.Join(w.tmp, "leftover-pid-"+strconv.Itoa(i))
			attempts := filepath.Join(w.tmp, "leftover-attempts-"+strconv.Itoa(i))
			loop := `echo $$ > "$1"; ` + tc.loop + `; do echo x >> "$2"; curl -sk -o /dev/null --connect-timeout 0.3 --max-time 0.5 https://` +
				testnet.Host4(11).String() + `/; done`
			script := `(` + loop + `) & exit 0`
			if tc.setsid {
				script = `setsid sh -c '` + loop + `' loop "$1" "$2" & exit 0`
			}
			args := []string{w.bin, "run", "--egress-policy", "block", "--upstream", "198.18.0.2",
				"--report-dir", dir, "--disable-file-monitoring", "--leftover-wait", tc.wait, "--",
				"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
				"sh", "-c", script, "command", pidFile, attempts}
			cmd := w.In(w.Runner, args...)
			if tc.cgroup {
				cmd = exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + w.Runner, "--"}, args...)...)
			}
			t0 := time.Now()
			out, err := cmd.CombinedOutput()
			took := time.Since(t0)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out)
			}
			b, _ := os.ReadFile(attempts)
			tries := strings.Count(string(b), "x")
			hits := w.HitsTo("tcp", testnet.Host4(11), 443)
			t.Logf("run took %v; the leftover tried %d times, %d reached the far end", took.Round(time.Millisecond), tries, len(hits))
			// Two tries: the first curl has run to its end (the count goes
			// up before each curl).
			if tries < 2 {
				t.Fatalf("the leftover tried %d times: this test could not fail", tries)
			}
			if len(hits) != 0 {
				t.Errorf("the leftover reached the far end %d times", len(hits))
			}
			pb, _ := os.ReadFile(pidFile)
			pid, err := strconv.Atoi(strings.TrimSpace(string(pb)))
			if err != nil {
				t.Fatalf("leftover pid %q", pb)
			}
			for deadline := time.Now().Add(5 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					_ = unix.Kill(pid, unix.SIGKILL)
					t.Fatalf("the leftover %d outlived run", pid)
				}
			}
			var rep struct {
				Egress []struct {
					IP      string `json:"ip"`
					Verdict string `json:"verdict"`
				} `json:"egress"`
				Agent struct {
					Info     []struct{ Message string } `json:"info"`
					Warnings []struct{ Message string } `json:"warnings"`
				} `json:"agent"`
			}
			rb, err := os.ReadFile(filepath.Join(dir, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(rb, &rep); err != nil {
				t.Fatal(err)
			}
			blocked := false
			for _, e := range rep.Egress {
				blocked = blocked || (e.IP == testnet.Host4(11).String() && e.Verdict == "blocked")
			}
			if !blocked {
				t.Errorf("the report lacks the leftover's blocked tries: %+v", rep.Egress)
			}
			noted := false
			for _, m := range append(rep.Agent.Info, rep.Agent.Warnings...) {
				noted = noted || (strings.Contains(m.Message, "COMMAND exited leaving") && strings.Contains(m.Message, tc.note))
			}
			if !noted {
				t.Errorf("no note on the leftovers (%q) in %+v", tc.note, rep.Agent)
			}
			for _, m := range rep.Agent.Warnings {
				if tc.cgroup && strings.Contains(m.Message, "no cgroup") {
					t.Errorf("run did not use a cgroup: %s", m.Message)
				}
			}
		})
	}
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}
