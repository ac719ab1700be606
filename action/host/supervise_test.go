package host_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/action/host"
	"github.com/harden-runner/harden-runner/agent"
	"github.com/harden-runner/harden-runner/internal/fakevm"
	"github.com/harden-runner/harden-runner/internal/testnet"
	"github.com/harden-runner/harden-runner/journal"
	"github.com/harden-runner/harden-runner/post/report"
)

// readyPid is the pid (in the VM's PID namespace) of the daemon that
// marked dir ready, 0 if none did.
func readyPid(state string) int {
	b, err := os.ReadFile(filepath.Join(state, agent.StateReady))
	if err != nil {
		return 0
	}
	var r struct {
		Pid int `json:"pid"`
	}
	_ = json.Unmarshal(b, &r)
	return r.Pid
}

// waitFor polls ok every 10 ms until it holds or d has passed.
func waitFor(d time.Duration, ok func() bool) bool {
	for end := time.Now().Add(d); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			return false
		}
	}
	return true
}

// TestSupervisedAgentKilled is issue 9's "the agent is supervised": a step
// with sudo kills the agent with SIGKILL mid-run. Its supervisor (our own
// in detached mode, systemd's Restart= where PID 1 is systemd) starts it
// again after RestartDelay; meanwhile the table stays in the kernel, so a
// blocked probe that keeps trying throughout never reaches the far end
// and DNS gets no answer; after the restart an allowed name resolves
// again within 2 s; and the journal, one journal exported whole over the
// stop helper's stream, reports the gap as a tamper error with its length.
func TestSupervisedAgentKilled(t *testing.T) {
	for _, how := range []string{"detached", "systemd"} {
		t.Run(how, func(t *testing.T) {
			testnet.Skip(t, "dig")
			n, bin := hostTestNet(t)
			var vm *fakevm.VM
			if how == "systemd" {
				vm = fakevm.StartSystemd(t, n.Runner)
			} else {
				vm = fakevm.Start(t, n.Runner)
			}
			dir := filepath.Join(t.TempDir(), "opt-harden-runner")
			state := filepath.Join(dir, "state")
			const delay = 2 * time.Second
			cj, _ := json.Marshal(host.Config{Dir: dir, NoSystemd: how == "detached", Daemon: agent.DaemonConfig{
				Settings:     settingsForTest(t, "block", "allowed.test:443", false),
				RestartDelay: delay}})
			var stderr bytes.Buffer
			inst := vm.Command(bin, "install", "--config-json", string(cj))
			inst.Stderr = &stderr
			out, err := inst.Output()
			if err != nil {
				t.Fatalf("install: %v %s %s", err, out, stderr.Bytes())
			}
			var res host.Result
			if err := json.Unmarshal(out, &res); err != nil || res.How != how || res.Pid <= 0 {
				t.Fatalf("install result %q: %v", out, err)
			}
			checkEnforces(t, n)

			// The blocked probe: an unprivileged loop, every attempt logged.
			scratch := t.TempDir()
			if err := os.Chmod(scratch, 0o777); err != nil {
				t.Fatal(err)
			}
			for d := filepath.Dir(scratch); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
				_ = os.Chmod(d, 0o711) // t.TempDir's are 0700
			}
			attempts := filepath.Join(scratch, "attempts")
			probe := n.In(n.Runner, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c",
				`while :; do date +%s.%N >> "$1"; curl -sk -o /dev/null --connect-timeout 0.2 --max-time 0.3 https://198.18.1.11/; done`,
				"probe", attempts)
			probe.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := probe.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Kill(-probe.Process.Pid, syscall.SIGKILL); _ = probe.Wait() })
			attemptsIn := func(from, to time.Time) int {
				b, _ := os.ReadFile(attempts)
				k := 0
				for _, l := range strings.Fields(string(b)) {
					if f, err := strconv.ParseFloat(l, 64); err == nil && f >= float64(from.UnixNano())/1e9 && f <= float64(to.UnixNano())/1e9 {
						k++
					}
				}
				return k
			}
			if !waitFor(10*time.Second, func() bool { return attemptsIn(time.Time{}, time.Now()) > 0 }) {
				t.Fatal("the probe never ran")
			}

			// What the agent saw so far is on disk (it flushes every 200 ms;
			// a kill loses what is not).
			if !waitFor(5*time.Second, func() bool {
				b, _ := os.ReadFile(filepath.Join(state, agent.StateJournal))
				return bytes.Contains(b, []byte(`"name":"blocked.test"`))
			}) {
				t.Fatal("the journal never had blocked.test")
			}

			// The attack.
			killed := time.Now()
			if out, err := vm.Command("kill", "-KILL", strconv.Itoa(res.Pid)).CombinedOutput(); err != nil {
				t.Fatalf("kill: %v %s", err, out)
			}
			if !waitFor(5*time.Second, func() bool {
				b, _ := vm.Command("cat", "/proc/"+strconv.Itoa(res.Pid)+"/cmdline").Output()
				return !bytes.Contains(b, []byte("agent"))
			}) {
				t.Fatal("the agent outlived SIGKILL")
			}
			// In the gap: DNS fails closed.
			digOut, digErr := n.In(n.Runner, "dig", "+short", "+tries=1", "+time=1", "allowed.test").CombinedOutput()
			// Ready is the dead one's, or gone (a new one starting): the gap.
			if p := readyPid(state); p == 0 || p == res.Pid {
				if digErr == nil && strings.Contains(string(digOut), "198.18.1.10") {
					t.Errorf("DNS answered while the agent was down: %s", digOut)
				}
			} else {
				t.Errorf("the agent was back before the gap could be probed (restart delay %v)", delay)
			}
			var newPid int
			if !waitFor(30*time.Second, func() bool {
				newPid = readyPid(state)
				return newPid != 0 && newPid != res.Pid
			}) {
				b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
				t.Fatalf("no agent enforced again within 30 s of the kill; log:\n%s", b)
			}
			back := time.Now()
			// An allowed name resolves again within 2 s.
			var resolved time.Duration
			if !waitFor(2*time.Second, func() bool {
				out, err := n.In(n.Runner, "dig", "+short", "+tries=1", "+time=1", "allowed.test").Output()
				resolved = time.Since(back)
				return err == nil && strings.Contains(string(out), "198.18.1.10")
			}) {
				t.Errorf("allowed.test does not resolve 2 s after the restart")
			}
			during := attemptsIn(killed, back)
			// The probe goes on a little after the restart too.
			waitFor(5*time.Second, func() bool { return attemptsIn(back, time.Now()) >= 3 })
			_ = syscall.Kill(-probe.Process.Pid, syscall.SIGKILL)
			hits := n.HitsTo("tcp", testnet.Host4(11), 443)
			t.Logf("%s: down for %v (kill to ready, restart delay %v), allowed.test resolved %v after; %d blocked probes in the gap, %d reached the far end",
				how, back.Sub(killed).Round(time.Millisecond), delay, resolved.Round(time.Millisecond), during, len(hits))
			if during == 0 {
				t.Error("no probe ran in the gap: this test could not fail")
			}
			if len(hits) != 0 {
				t.Errorf("the blocked host was reached %d times: %+v", len(hits), hits[0])
			}
			if curl := n.In(n.Runner, "curl", "-sk", "-o", "/dev/null", "--max-time", "5", "https://allowed.test/").Run(); curl != nil {
				t.Errorf("curl allowed.test after the restart: %v", curl)
			}

			// The post step's stop: whole journal over the stream.
			var stream bytes.Buffer
			stop := vm.Command(bin, "host-stop", "--dir", dir, "--stream")
			stop.Stdout = &stream
			if err := stop.Run(); err != nil {
				t.Fatalf("host-stop --stream: %v", err)
			}
			exp, err := journal.ReadExport(&stream, 64<<20)
			if err != nil {
				t.Fatalf("the export stream: %v", err)
			}
			if exp.Error != "" {
				t.Errorf("host-stop: %s", exp.Error)
			}
			// report.json, as the binary writes it from that journal.
			rdir := t.TempDir()
			jpath := filepath.Join(rdir, "journal.jsonl")
			if err := os.WriteFile(jpath, exp.Journal, 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, "report", "--journal", jpath, "--report-dir", rdir).CombinedOutput(); err != nil {
				t.Fatalf("report: %v %s", err, out)
			}
			var rep report.Report
			if err := json.Unmarshal(must(os.ReadFile(filepath.Join(rdir, "report.json"))), &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Agent.Gaps) != 1 {
				t.Fatalf("report.json's gaps %+v, want one", rep.Agent.Gaps)
			}
			g := rep.Agent.Gaps[0]
			t.Logf("gap: %+v", g)
			if g.Seconds < delay.Seconds() || g.Seconds > back.Sub(killed).Seconds()+1 {
				t.Errorf("gap of %.3f s; the agent was down %v (restart delay %v)", g.Seconds, back.Sub(killed), delay)
			}
			if !strings.Contains(g.Reason, map[string]string{"detached": "signal 9", "systemd": "signal KILL"}[how]) {
				t.Errorf("gap reason %q, want the supervisor's word on the SIGKILL", g.Reason)
			}
			// Who did it, from the kernel's record of the signal (killwatch).
			if g.Process == nil || filepath.Base(g.Process.Exe) != "kill" || !strings.Contains(g.Reason, "SIGKILL sent by pid") {
				b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
				t.Errorf("gap %+v: want the kill(1) that sent SIGKILL named; agent log:\n%s", g, b)
			}
			if len(rep.Tampering()) == 0 {
				t.Error("the gap is not a tamper error")
			}
			if !rep.Agent.StoppedCleanly || !bytes.Contains(exp.Journal, []byte(`"name":"blocked.test"`)) {
				t.Errorf("the journal is not one whole journal across the restart (stopped cleanly %v):\n%s", rep.Agent.StoppedCleanly, exp.Journal)
			}
			if tables, _ := n.In(n.Runner, "nft", "list", "tables").CombinedOutput(); strings.Contains(string(tables), "harden_runner") {
				t.Errorf("firewall table left behind: %s", tables)
			}
		})
	}
}

// TestStopSignalWithoutRequest: `kill -TERM` on the agent by a step with
// sudo used to be a clean stop, table removed and no word in the report.
// Without the post step's stop request it changes nothing: the agent goes
// on enforcing, and the journal has a tamper error.
func TestStopSignalWithoutRequest(t *testing.T) {
	n, bin := hostTestNet(t)
	vm := fakevm.Start(t, n.Runner)
	dir := filepath.Join(t.TempDir(), "opt")
	cj, _ := json.Marshal(host.Config{Dir: dir, NoSystemd: true, Daemon: agent.DaemonConfig{
		Settings: settingsForTest(t, "block", "allowed.test:443", false)}})
	out, err := vm.Command(bin, "install", "--config-json", string(cj)).Output()
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	var res host.Result
	if err := json.Unmarshal(out, &res); err != nil || res.Pid == 0 {
		t.Fatalf("install result %q: %v", out, err)
	}
	jfile := filepath.Join(dir, "state", agent.StateJournal)
	for _, sig := range []string{"TERM", "INT"} {
		if out, err := vm.Command("kill", "-"+sig, strconv.Itoa(res.Pid)).CombinedOutput(); err != nil {
			t.Fatalf("kill -%s: %v %s", sig, err, out)
		}
	}
	// The journal is flushed every 200 ms: wait for both notes.
	if !waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile(jfile)
		return bytes.Count(b, []byte("without the post step's stop request")) == 2
	}) {
		b, _ := os.ReadFile(jfile)
		t.Fatalf("no tamper note for the stop signals:\n%s", b)
	}
	if b, _ := vm.Command("cat", "/proc/"+strconv.Itoa(res.Pid)+"/cmdline").Output(); !bytes.Contains(b, []byte("agent")) {
		t.Fatal("the agent obeyed a stop signal without a stop request")
	}
	// Each note names the kill(1) that sent its signal (killwatch).
	for _, sig := range []string{"SIGTERM", "SIGINT"} {
		if b, _ := os.ReadFile(jfile); !bytes.Contains(b, []byte(sig+` sent by pid `)) || !bytes.Contains(b, []byte(`\"kill\"`)) {
			t.Errorf("the tamper note does not name who sent %s:\n%s", sig, b)
		}
	}
	checkEnforces(t, n)
	// A snapshot (the post step on a GitHub-hosted runner) carries the
	// running components' counts: its report knows what was lost so far.
	var stream bytes.Buffer
	snapCmd := vm.Command(bin, "host-stop", "--dir", dir, "--snapshot", "--stream")
	snapCmd.Stdout = &stream
	if err := snapCmd.Run(); err != nil {
		t.Fatalf("host-stop --snapshot: %v", err)
	}
	exp, err := journal.ReadExport(&stream, 64<<20)
	if err != nil || !exp.Snapshot {
		t.Fatalf("snapshot export: %v %+v", err, exp)
	}
	srecs, _, _ := journal.Read(bytes.NewReader(exp.Journal))
	if srep := report.Build(srecs, report.Options{}); !srep.Agent.Lost.Total.Known {
		t.Errorf("the snapshot's report does not know what was lost: %+v", srep.Agent.Components)
	}
	if out, err := vm.Command(bin, "host-stop", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("host-stop: %v %s", err, out)
	}
	recs, _, _ := journal.Read(bytes.NewReader(must(os.ReadFile(jfile))))
	rep := report.Build(recs, report.Options{})
	if len(rep.Tampering()) != 2 || !rep.Agent.StoppedCleanly {
		t.Errorf("tampering %+v, stopped cleanly %v", rep.Tampering(), rep.Agent.StoppedCleanly)
	}
	if tables, _ := n.In(n.Runner, "nft", "list", "tables").CombinedOutput(); strings.Contains(string(tables), "harden_runner") {
		t.Errorf("firewall table left behind after the real stop: %s", tables)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestSupervisedAgentFrozen: a step with sudo stops the agent with
// SIGSTOP (nothing restarts a process that is not dead) and deletes our
// table, which the frozen guard cannot restore. Within WatchdogTimeout of
// its last heartbeat the supervisor (ours; systemd's WatchdogSec) kills
// it and starts another, which puts the table back: a blocked host is
// refused again, and the gap is in the report, at least that long.
func TestSupervisedAgentFrozen(t *testing.T) {
	for _, how := range []string{"detached", "systemd"} {
		t.Run(how, func(t *testing.T) {
			n, bin := hostTestNet(t)
			var vm *fakevm.VM
			if how == "systemd" {
				vm = fakevm.StartSystemd(t, n.Runner)
			} else {
				vm = fakevm.Start(t, n.Runner)
			}
			dir := filepath.Join(t.TempDir(), "opt-harden-runner")
			state := filepath.Join(dir, "state")
			cj, _ := json.Marshal(host.Config{Dir: dir, NoSystemd: how == "detached", Daemon: agent.DaemonConfig{
				Settings: settingsForTest(t, "block", "allowed.test:443", false)}})
			out, err := vm.Command(bin, "install", "--config-json", string(cj)).Output()
			if err != nil {
				t.Fatalf("install: %v %s", err, out)
			}
			var res host.Result
			if err := json.Unmarshal(out, &res); err != nil || res.How != how {
				t.Fatalf("install result %q: %v", out, err)
			}
			frozen := time.Now()
			if out, err := vm.Command("kill", "-STOP", strconv.Itoa(res.Pid)).CombinedOutput(); err != nil {
				t.Fatalf("kill -STOP: %v %s", err, out)
			}
			if out, err := n.In(n.Runner, "nft", "delete", "table", "inet", "harden_runner").CombinedOutput(); err != nil {
				t.Fatalf("nft delete table: %v %s", err, out)
			}
			var newPid int
			if !waitFor(agent.WatchdogTimeout+20*time.Second, func() bool {
				newPid = readyPid(state)
				return newPid != 0 && newPid != res.Pid
			}) {
				t.Fatalf("the frozen agent was not replaced within %v", agent.WatchdogTimeout+20*time.Second)
			}
			back := time.Since(frozen)
			tables, _ := n.In(n.Runner, "nft", "list", "tables").CombinedOutput()
			if !strings.Contains(string(tables), "harden_runner") {
				t.Fatalf("no table after the restart: %s", tables)
			}
			before := len(n.HitsTo("tcp", testnet.Host4(11), 443))
			if err := n.In(n.Runner, "curl", "-sk", "-o", "/dev/null", "--max-time", "3", "https://198.18.1.11/").Run(); err == nil {
				t.Error("the blocked host is reachable after the restart")
			}
			if hits := len(n.HitsTo("tcp", testnet.Host4(11), 443)); hits != before {
				t.Errorf("the blocked host was reached after the restart")
			}
			var stream bytes.Buffer
			stop := vm.Command(bin, "host-stop", "--dir", dir, "--stream")
			stop.Stdout = &stream
			if err := stop.Run(); err != nil {
				t.Fatalf("host-stop: %v", err)
			}
			exp, err := journal.ReadExport(&stream, 64<<20)
			if err != nil {
				t.Fatal(err)
			}
			recs, _, _ := journal.Read(bytes.NewReader(exp.Journal))
			rep := report.Build(recs, report.Options{})
			t.Logf("%s: replaced %v after SIGSTOP; gaps %+v", how, back.Round(time.Millisecond), rep.Agent.Gaps)
			if len(rep.Agent.Gaps) != 1 || rep.Agent.Gaps[0].Seconds < agent.WatchdogTimeout.Seconds()-0.5 {
				t.Fatalf("gaps %+v, want one of at least %v", rep.Agent.Gaps, agent.WatchdogTimeout)
			}
			if !strings.Contains(rep.Agent.Gaps[0].Reason, "frozen") {
				t.Errorf("gap reason %q", rep.Agent.Gaps[0].Reason)
			}
			// The step's SIGSTOP, not the supervisor's kill of the frozen agent.
			if g := rep.Agent.Gaps[0]; g.Process == nil || filepath.Base(g.Process.Exe) != "kill" || !strings.Contains(g.Reason, "SIGSTOP sent by pid") {
				t.Errorf("gap %+v: want the kill(1) that sent SIGSTOP named", g)
			}
		})
	}
}
