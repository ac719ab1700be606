package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestActionPostForgedStateDir: the runner sets STATE_<key> for the post
// step only for the keys the main step saved; any other STATE_ variable a
// step wrote to GITHUB_ENV reaches the post step unchanged. Before this
// fix, the main step saved harden_runner_dir only when HARDEN_RUNNER_DIR
// was set (tests): in a real job (the default /opt/harden-runner) a step
// could point the post step at a directory of its own. This test gives the
// post step such a directory, made by the runner's user (nobody): a pid
// file naming the user's own process (argv "... agent ...", all DaemonPid
// asked for) and state/stop-request.tmp, a link to a root-owned file. The
// post step, root in the stop helper, wrote the stop request through the
// link: a file of the step's choosing truncated and rewritten by root; and
// the real agent was left running. The helper must refuse a directory
// that is not root's all the way down before it reads or writes anything
// in it.
func TestActionPostForgedStateDir(t *testing.T) {
	v := startActionVM(t)
	n, dirs := v.n, v.dirs
	v.mainStep(t)
	base := filepath.Dir(dirs["opt"])
	for d := base; d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil { // t.TempDir's are 0700
			t.Fatal(err)
		}
	}
	// A root-owned file the step cannot write.
	victim := filepath.Join(base, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	forged := filepath.Join(base, "forged")
	state := filepath.Join(forged, "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../victim", filepath.Join(state, "stop-request.tmp")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{forged, state} {
		if err := os.Lchown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	// The step's own process, whose argv holds "agent"; it writes its pid
	// (in the VM's PID namespace) where the post step looks for the agent's.
	decoy := v.vm.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c",
		`echo $$ > "$0/agent.pid"; while :; do sleep 1; done`, state, "agent")
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = decoy.Process.Kill(); _ = decoy.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(filepath.Join(state, "agent.pid")); len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the decoy wrote no pid file")
		}
	}

	out, err := v.runAction("/post", "STATE_harden_runner_started=true", "STATE_harden_runner_dir="+forged,
		"GITHUB_OUTPUT=/github/file_commands/set_output_1", "GITHUB_STEP_SUMMARY=/github/file_commands/step_summary_1")
	t.Logf("post step pointed at the step's directory (err %v):\n%s", err, out)
	if err == nil {
		t.Error("the post step passed with a directory the runner's user made")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("root wrote through the step's link: the victim file now holds %q", b)
	}
	if tables, _ := n.In(n.Runner, "nft", "list", "tables").CombinedOutput(); !strings.Contains(string(tables), "harden_runner") {
		t.Errorf("the agent's table is gone although its directory was not the one the post step used: %s", tables)
	}
	// The real post step still finds the agent and reports.
	if summary := v.post(t); !strings.Contains(string(summary), "harden-runner") {
		t.Errorf("summary after the forged run:\n%s", summary)
	}
}
