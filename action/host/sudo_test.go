package host

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDisableSudo(t *testing.T) {
	root, hostDir, must := sudoRoot(t)
	must(os.WriteFile(filepath.Join(root, "etc/sudoers.d/runner"), []byte("# runner\nrunner ALL=(ALL) NOPASSWD:ALL\n"), 0o440))
	must(os.WriteFile(filepath.Join(root, "etc/sudoers.d/other"), []byte("deploy ALL=(ALL) NOPASSWD:ALL\n# runner ALL=(ALL) ALL\n"), 0o440))
	must(os.WriteFile(filepath.Join(root, "etc/sudoers"), []byte("root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n"), 0o440))

	user, err := userName(root, "#1001")
	if err != nil || user != "runner" {
		t.Fatalf("userName: %q %v", user, err)
	}
	if _, err := userName(root, "#4242"); err == nil {
		t.Error("unknown uid resolved")
	}
	moved, warn, err := disableSudo(root, hostDir, user)
	if err != nil {
		t.Fatal(err)
	}
	if len(moved) != 1 || moved[0] != "/etc/sudoers.d/runner" || len(warn) != 0 {
		t.Errorf("moved %v warn %v", moved, warn)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/sudoers.d/runner")); !os.IsNotExist(err) {
		t.Error("runner's sudoers file still in place")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/sudoers.d/other")); err != nil {
		t.Error("another user's sudoers file was moved")
	}
	if _, err := os.Stat(filepath.Join(hostDir, "sudoers.d.disabled/runner")); err != nil {
		t.Error("moved file not kept")
	}
	// Idempotent.
	if moved, _, err := disableSudo(root, hostDir, user); err != nil || len(moved) != 0 {
		t.Errorf("second run: %v %v", moved, err)
	}
}

// TestDisableSudoTakesEveryForm: drop-ins that name the user through an
// alias, its uid or a group it is in are moved too; a rule that cannot be
// moved (in /etc/sudoers) fails the step, naming it.
func TestDisableSudoTakesEveryForm(t *testing.T) {
	root, hostDir, must := sudoRoot(t)
	must(os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nrunner:x:1001:\nci:x:2000:deploy,runner\n"), 0o644))
	drop := map[string]string{
		"alias": "User_Alias CI = deploy, runner\nCI ALL=(ALL) NOPASSWD: ALL\n",
		"uid":   "#1001 ALL=(ALL) NOPASSWD: ALL\n",
		"group": "%ci ALL=(ALL) NOPASSWD: ALL\n",
		"other": "deploy ALL=(ALL) ALL\n",
	}
	for name, text := range drop {
		must(os.WriteFile(filepath.Join(root, "etc/sudoers.d", name), []byte(text), 0o440))
	}
	must(os.WriteFile(filepath.Join(root, "etc/sudoers"), []byte("root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n"), 0o440))
	moved, _, err := disableSudo(root, hostDir, "runner")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/etc/sudoers.d/alias", "/etc/sudoers.d/group", "/etc/sudoers.d/uid"}; !slices.Equal(moved, want) {
		t.Errorf("moved %v, want %v", moved, want)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/sudoers.d/other")); err != nil {
		t.Error("another user's rule was moved")
	}
	// A rule in /etc/sudoers itself: not moved, and the step fails.
	must(os.WriteFile(filepath.Join(root, "etc/sudoers"), []byte("root ALL=(ALL:ALL) ALL\n%ci ALL=(ALL) ALL\n"), 0o440))
	_, _, err = disableSudo(root, hostDir, "runner")
	if err == nil || !strings.Contains(err.Error(), "/etc/sudoers line 2 (%ci ALL=(ALL) ALL)") {
		t.Errorf("a rule left in /etc/sudoers: err %v", err)
	}
}

// sudoRoot is a VM root with an empty sudoers.d and a passwd that has
// runner (uid 1001), the agent's directory in it, and a fatal check.
func sudoRoot(t *testing.T) (root, hostDir string, must func(error)) {
	root = t.TempDir()
	must = func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc/sudoers.d"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nrunner:x:1001:1001::/home/runner:/bin/bash\n"), 0o644))
	return root, filepath.Join(root, "opt/harden-runner"), must
}
