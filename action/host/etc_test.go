package host_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/action/host"
	"github.com/harden-runner/harden-runner/agent"
	"github.com/harden-runner/harden-runner/internal/fakevm"
	"github.com/harden-runner/harden-runner/journal"
	"github.com/harden-runner/harden-runner/post/report"
)

// TestDaemonWatchesEtc: the Action's daemon watches the VM's /etc as `run`
// does. With disable-sudo on, root puts a sudo rule for the runner's user
// back and points a name elsewhere in /etc/hosts: each change is one tamper
// error with its writer, the sudo one saying the rights are back (one
// watcher, one line: not a second line from sudowatch), and the helper's
// own move of the sudoers file at install is not reported.
func TestDaemonWatchesEtc(t *testing.T) {
	n, bin := hostTestNet(t)
	vm := fakevm.Start(t, n.Runner)
	// The VM's own /etc: a copy of the machine's, with a sudoers.d, bound
	// over /etc in the VM's mount namespace only.
	etc := filepath.Join(t.TempDir(), "etc")
	if b, err := exec.Command("cp", "-a", "/etc", etc).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc: %v %s", err, b)
	}
	if err := os.MkdirAll(filepath.Join(etc, "sudoers.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "sudoers.d/runner"), []byte("nobody ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	// A group rule in /etc/sudoers for a group the user is not in (yet).
	// And an include of a file that is not there yet (sudo skips it).
	for file, line := range map[string]string{"sudoers": "%hrci ALL=(ALL) NOPASSWD:ALL\n@include /etc/sudoers.local\n", "group": "hrci:x:4343:\n"} {
		f, err := os.OpenFile(filepath.Join(etc, file), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(line); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	// A second rule that names the user through an alias: disable-sudo
	// takes it too (before, only a rule starting with the name was).
	if err := os.WriteFile(filepath.Join(etc, "sudoers.d/ci"), []byte("User_Alias CI = deploy, nobody\nCI ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	if b, err := vm.Command("mount", "--bind", etc, "/etc").CombinedOutput(); err != nil {
		t.Fatalf("bind /etc in the VM: %v %s", err, b)
	}
	// The agent's directory on the same mount as /etc, so that
	// disable-sudo's rename works as on a runner's one filesystem.
	const dir = "/etc/hr-test-opt"
	cj, _ := json.Marshal(host.Config{Dir: dir, NoSystemd: true, SudoUser: "nobody", Daemon: agent.DaemonConfig{
		Settings: settingsForTest(t, "block", "allowed.test:443", false)}})
	var stderr bytes.Buffer
	inst := vm.Command(bin, "install", "--config-json", string(cj))
	inst.Stderr = &stderr
	out, err := inst.Output()
	if err != nil {
		t.Fatalf("install: %v %s", err, stderr.Bytes())
	}
	var res host.Result
	if err := json.Unmarshal(out, &res); err != nil || len(res.SudoDisabled) != 2 {
		t.Fatalf("install result %q: %v", out, err)
	}
	// The user's sudo is gone, as sudo itself says (where it is installed).
	if _, err := exec.LookPath("sudo"); err == nil {
		if out, err := vm.Command("runuser", "-u", "nobody", "--", "sudo", "-n", "true").CombinedOutput(); err == nil {
			t.Errorf("nobody still runs sudo after disable-sudo: %s", out)
		}
	}
	// The attack, as root in the VM; the writers stay until the test has
	// the reports, so they are named (see guard.FilesConfig).
	hold := vm.Command("sh", "-c", `echo 'nobody ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/back && echo '198.18.1.11 allowed.test' >> /etc/hosts && gpasswd -a nobody hrci && echo 'nobody ALL=(ALL) ALL' > /etc/sudoers.local && read _`)
	stdin, err := hold.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = hold.Wait() }()
	jfile := filepath.Join(etc, "hr-test-opt", "state", agent.StateJournal)
	if !waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile(jfile)
		return bytes.Contains(b, []byte(`"message":"/etc/hosts: `)) && bytes.Contains(b, []byte(`"message":"/etc/sudoers.d/back: `)) &&
			bytes.Contains(b, []byte(`"message":"/etc/group: `)) && bytes.Contains(b, []byte(`"message":"/etc/sudoers.local: `))
	}) {
		b, _ := os.ReadFile(jfile)
		t.Fatalf("the changes of /etc are not in the journal:\n%s", b)
	}
	stdin.Close()
	_ = hold.Wait()
	if out, err := vm.Command(bin, "host-stop", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("host-stop: %v %s", err, out)
	}
	recs, _, _ := journal.Read(bytes.NewReader(must(os.ReadFile(jfile))))
	rep := report.Build(recs, report.Options{})
	var sudo, hosts, group, local int
	for _, m := range append(rep.Agent.Errors, rep.Agent.Warnings...) {
		t.Logf("%s: %s (tamper %v)", m.Component, m.Message, m.Tamper)
		switch {
		case strings.HasPrefix(m.Message, "/etc/sudoers.d/runner"), strings.HasPrefix(m.Message, "/etc/sudoers.d/ci"):
			t.Errorf("the helper's own disable-sudo was reported: %s", m.Message)
		case strings.HasPrefix(m.Message, "/etc/sudoers.local:"):
			local++
			// A file the policy includes, outside sudoers.d.
			if !m.Tamper || !strings.Contains(m.Message, "gives nobody sudo rights again") || !strings.Contains(m.Message, "/etc/sudoers.local line 1") {
				t.Errorf("included file line: %+v", m)
			}
		case strings.HasPrefix(m.Message, "/etc/group:"):
			group++
			// The user joined a group that a rule left in /etc/sudoers names.
			if !m.Tamper || !strings.Contains(m.Message, "gives nobody sudo rights again") || !strings.Contains(m.Message, "(%hrci ALL=(ALL) NOPASSWD:ALL)") ||
				m.Process == nil || m.Process.PID == 0 {
				t.Errorf("group line: %+v", m)
			}
		case strings.Contains(m.Message, "sudo rights") || strings.HasPrefix(m.Message, "/etc/sudoers"):
			sudo++
			if !m.Tamper || !strings.Contains(m.Message, "/etc/sudoers.d/back") || !strings.Contains(m.Message, "gives nobody sudo rights again") ||
				m.Process == nil || m.Process.PID == 0 {
				t.Errorf("sudo line: %+v", m)
			}
		case strings.HasPrefix(m.Message, "/etc/hosts:"):
			hosts++
			if !m.Tamper || m.Process == nil || m.Process.PID == 0 {
				t.Errorf("hosts line: %+v", m)
			}
		}
	}
	if sudo != 1 || hosts != 1 || group != 1 || local != 1 {
		t.Errorf("%d lines about the sudo rule, %d about hosts, %d about group, %d about sudoers.local, want one each", sudo, hosts, group, local)
	}
}
