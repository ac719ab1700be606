package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/killwatch"
)

// TestSupervise runs a stand-in daemon (a shell script) under Supervise:
// one killed after it was ready is started again, with how it ended in
// StateExit, and so is one frozen (SIGSTOP: its heartbeat stops), which
// the supervisor kills; one that exits 0 (a clean stop) or never got ready on its
// first start is not; one that keeps dying is given up on.
func TestSupervise(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string // $1 is the state dir, $2 a counter file
		runs   int    // starts expected
		err    string // Supervise's error, "" for nil
		exit   string // StateExit's reason, "" for none
	}{
		{"killed once, then clean", `n=$(cat "$2" 2>/dev/null || echo 0); echo $((n+1)) > "$2"; touch "$1/ready"; [ "$n" -ge 1 ] && exit 0; kill -KILL $$`,
			2, "", "killed by signal 9"},
		{"frozen once, then clean", `n=$(cat "$2" 2>/dev/null || echo 0); echo $((n+1)) > "$2"; [ "$n" -ge 1 ] && exit 0; ` +
			`echo "{\"pid\":$$}" > "$1/ready"; touch -d '-10 seconds' "$1/heartbeat"; kill -STOP $$`, 2, "", "frozen (SIGSTOP?)"},
		{"clean stop", `echo 1 > "$2"; touch "$1/ready"; exit 0`, 1, "", ""},
		{"never ready", `echo 1 > "$2"; exit 3`, 1, "did not start", ""},
		{"keeps dying", `n=$(cat "$2" 2>/dev/null || echo 0); echo $((n+1)) > "$2"; touch "$1/ready"; exit 2`, 4, "died 4 times", "exit status 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			count := filepath.Join(dir, "count")
			err := Supervise(t.Context(), SuperviseConfig{Argv: []string{"sh", "-c", tc.script, "daemon", dir, count},
				StateDir: dir, Delay: time.Millisecond, MaxRestarts: 3, Watchdog: 200 * time.Millisecond})
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Supervise: %v, want %q", err, tc.err)
			}
			b, _ := os.ReadFile(count)
			if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n != tc.runs {
				t.Errorf("started %d times, want %d", n, tc.runs)
			}
			var x ExitRecord
			b, rerr := os.ReadFile(filepath.Join(dir, StateExit))
			if tc.exit == "" {
				if rerr == nil {
					t.Errorf("exit record %s, want none", b)
				}
				return
			}
			if err := json.Unmarshal(b, &x); err != nil || !strings.Contains(x.Reason, tc.exit) || x.Pid == 0 || x.Time.IsZero() {
				t.Errorf("exit record %s (%v), want %q", b, err, tc.exit)
			}
		})
	}
}

// TestDeadPredecessor: what a starting daemon makes of the state dir it
// finds: a fresh start, a live daemon (refused), or a gap to resume after,
// from the dead one's heartbeat and with the supervisor's word on its end.
func TestDeadPredecessor(t *testing.T) {
	beat := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		files  map[string]string
		gap    bool
		reason string
	}{
		{"fresh", nil, false, ""},
		{"stopped cleanly", map[string]string{StatePid: "999999999", StateStopped: "ok", StateJournal: "{}"}, false, ""},
		{"died before a journal", map[string]string{StatePid: "999999999"}, false, ""},
		{"died", map[string]string{StatePid: "999999999", StateJournal: "{}", StateHeartbeat: ""}, true, "unknown"},
		{"died, supervisor saw it", map[string]string{StatePid: "999999999", StateJournal: "{}", StateHeartbeat: "",
			StateExit: `{"pid":999999999,"reason":"killed by signal 9 (killed)"}`}, true, "killed by signal 9"},
		{"another's exit record", map[string]string{StatePid: "999999999", StateJournal: "{}", StateHeartbeat: "",
			StateExit: `{"pid":5,"reason":"killed by signal 9 (killed)"}`}, true, "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for f, body := range tc.files {
				p := filepath.Join(dir, f)
				if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(p, beat, beat); err != nil {
					t.Fatal(err)
				}
			}
			gap, _, err := deadPredecessor(dir)
			if err != nil {
				t.Fatal(err)
			}
			if (gap != nil) != tc.gap {
				t.Fatalf("gap %+v, want %v", gap, tc.gap)
			}
			if gap != nil && (!gap.From.Equal(beat) || !strings.Contains(gap.Reason, tc.reason)) {
				t.Errorf("gap %+v, want from %v, reason %q", gap, beat, tc.reason)
			}
		})
	}
	// A live daemon: this test's own process does not count as one
	// (its command line has no "agent" argument), so fake the check
	// through a pid that is alive but not ours: PID 1 is never a daemon.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StatePid), []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := deadPredecessor(dir); err != nil {
		t.Errorf("PID 1 taken for a live daemon: %v", err)
	}
}

// TestSystemdExit: how the unit's ExecStopPost words systemd's account of
// the daemon's end, and that it records nothing after a clean stop.
func TestSystemdExit(t *testing.T) {
	for _, tc := range []struct{ result, code, status, want string }{
		{"signal", "killed", "KILL", "killed by signal KILL"},
		{"watchdog", "killed", "KILL", "frozen (SIGSTOP?)"},
		{"exit-code", "exited", "1", "exit status 1"},
		{"", "", "", `systemd: result ""`},
	} {
		if got := SystemdExitReason(tc.result, tc.code, tc.status); !strings.Contains(got, tc.want) {
			t.Errorf("SystemdExitReason(%q, %q, %q) = %q, want %q", tc.result, tc.code, tc.status, got, tc.want)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StatePid), []byte("4242\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RecordExit(dir, "killed by signal KILL"); err != nil {
		t.Fatal(err)
	}
	var x ExitRecord
	if b, _ := os.ReadFile(filepath.Join(dir, StateExit)); json.Unmarshal(b, &x) != nil || x.Pid != 4242 || x.Reason != "killed by signal KILL" {
		t.Errorf("exit record %+v", x)
	}
	clean := t.TempDir()
	if err := os.WriteFile(filepath.Join(clean, StateStopped), []byte("ok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RecordExit(clean, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(clean, StateExit)); err == nil {
		t.Error("an exit record after a clean stop")
	}
}

func TestCulprit(t *testing.T) {
	k := func(sender int, sig syscall.Signal, at time.Duration) killwatch.Kill {
		return killwatch.Kill{Sender: sender, Signal: sig, At: at}
	}
	ignored := k(7, syscall.SIGKILL, 5)
	ignored.Ignored = true
	oom := k(7, syscall.SIGKILL, 5)
	oom.Kernel = true
	const sup = 50
	for _, tc := range []struct {
		name  string
		kills []killwatch.Kill
		want  killwatch.Kill
		ok    bool
	}{
		{"none", nil, killwatch.Kill{}, false},
		{"one kill", []killwatch.Kill{k(7, syscall.SIGKILL, 1)}, k(7, syscall.SIGKILL, 1), true},
		{"the stop, not systemd's watchdog kill", []killwatch.Kill{k(1, syscall.SIGKILL, 9), k(1, syscall.SIGABRT, 8), k(7, syscall.SIGSTOP, 1)}, k(7, syscall.SIGSTOP, 1), true},
		{"the stop, not our supervisor's kill", []killwatch.Kill{k(sup, syscall.SIGKILL, 9), k(8, syscall.SIGSTOP, 1)}, k(8, syscall.SIGSTOP, 1), true},
		{"the supervisor when nobody else", []killwatch.Kill{k(sup, syscall.SIGKILL, 9)}, k(sup, syscall.SIGKILL, 9), true},
		{"a kill, not a snapshot request's sender", []killwatch.Kill{k(9, syscall.SIGUSR1, 9), k(sup, syscall.SIGKILL, 2)}, k(sup, syscall.SIGKILL, 2), true},
		{"a term the agent ignores explains nothing", []killwatch.Kill{k(8, syscall.SIGTERM, 1), k(8, syscall.SIGINT, 2)}, killwatch.Kill{}, false},
		{"a kill over a hangup", []killwatch.Kill{k(8, syscall.SIGHUP, 3), k(9, syscall.SIGKILL, 2)}, k(9, syscall.SIGKILL, 2), true},
		{"the later of two kills", []killwatch.Kill{k(8, syscall.SIGKILL, 1), k(9, syscall.SIGKILL, 2)}, k(9, syscall.SIGKILL, 2), true},
		{"an undelivered kill is nobody's", []killwatch.Kill{ignored}, killwatch.Kill{}, false},
		{"a process over the kernel's own", []killwatch.Kill{oom, k(8, syscall.SIGSTOP, 1)}, k(8, syscall.SIGSTOP, 1), true},
		{"the kernel's own alone", []killwatch.Kill{oom}, oom, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := culprit(tc.kills, sup)
			if ok != tc.ok || got != tc.want {
				t.Errorf("culprit = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
