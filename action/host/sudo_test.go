package host

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDisableSudo(t *testing.T) {
	root := t.TempDir()
	hostDir := filepath.Join(root, "opt/harden-runner")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc/sudoers.d"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nrunner:x:1001:1001::/home/runner:/bin/bash\n"), 0o644))
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
