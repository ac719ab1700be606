package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestActionImageBuildable checks action.yml's image the way the runner
// reads it: a released image pinned by digest, or a file named Dockerfile
// (the runner pulls anything else as an image name) whose directory, the
// build context the runner gives it, holds what it copies.
func TestActionImageBuildable(t *testing.T) {
	b, err := os.ReadFile("action.yml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^  image: (\S+)$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("action.yml has no runs.image")
	}
	image := m[1]
	if strings.HasPrefix(image, "docker://") {
		if !regexp.MustCompile(`@sha256:[0-9a-f]{64}$`).MatchString(image) {
			t.Errorf("released image %s is not pinned by digest", image)
		}
		return
	}
	if filepath.Base(image) != "Dockerfile" {
		t.Fatalf("image %q: the runner builds only a file named Dockerfile", image)
	}
	df, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	context := filepath.Dir(image)
	for _, line := range strings.Split(string(df), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "COPY" || strings.HasPrefix(f[1], "--") {
			continue
		}
		for _, src := range f[1 : len(f)-1] {
			if src == "." {
				continue
			}
			if _, err := os.Stat(filepath.Join(context, src)); err != nil {
				t.Errorf("%s copies %s, which is not in its build context %s: %v", image, src, context, err)
			}
		}
	}
}
