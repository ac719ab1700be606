package filemon

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestBlobs reads the index of a real repository from a subdirectory of it
// (the workspace need not be the repository's top) and checks content
// against the recorded blobs.
func TestBlobs(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	top := t.TempDir()
	old := time.Now().Add(-time.Hour)
	for p, body := range map[string]string{"src/a.go": "package a\n", "src/b.go": "package b\n", "src/link": "", "top.txt": "x\n"} {
		full := filepath.Join(top, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if p == "src/link" {
			if err := os.Symlink("a.go", full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(full, old, old); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = top
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+top)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	// Changed after the index was written: not clean, no blob.
	if err := os.WriteFile(filepath.Join(top, "src/b.go"), []byte("package B\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(top, "src")
	res, err := walk(context.Background(), root, walkHooks{watch: func(string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	b := res.base
	n, err := b.loadBlobs(root)
	if err != nil || n != 2 {
		t.Fatalf("loadBlobs = %d, %v; want a.go and link", n, err)
	}
	a, bb, link := b.byPath["a.go"], b.byPath["b.go"], b.byPath["link"]
	if !b.sameBlob(a) || !b.sameBlob(link) || b.sameBlob(bb) {
		t.Errorf("sameBlob a=%v link=%v b=%v, want true true false", b.sameBlob(a), b.sameBlob(link), b.sameBlob(bb))
	}
	if err := os.WriteFile(filepath.Join(root, "a.go"), []byte("package A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b.sameBlob(a) {
		t.Error("changed content still matches its blob")
	}
}
