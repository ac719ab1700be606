package action

import (
	"strings"
	"testing"
)

func TestCheckArch(t *testing.T) {
	for _, tt := range []struct {
		runner, goarch string
		wantErr        []string // substrings; nil: no error
	}{
		{"", "amd64", nil},
		{"X64", "amd64", nil},
		{"ARM64", "arm64", nil},
		{"arm64", "arm64", nil},
		{"ARM64", "amd64", []string{`RUNNER_ARCH="ARM64"`, "(arm64)", "binary is for amd64", "linux/arm64"}},
		{"X64", "arm64", []string{`RUNNER_ARCH="X64"`, "binary is for arm64", "linux/amd64"}},
		{"X86", "amd64", []string{`RUNNER_ARCH="X86"`, "X64 (amd64) and ARM64 (arm64) runners only"}},
		{"ARM", "arm64", []string{`RUNNER_ARCH="ARM"`, "runners only"}},
	} {
		err := CheckArch(tt.runner, tt.goarch)
		if (err != nil) != (tt.wantErr != nil) {
			t.Errorf("CheckArch(%q, %q) = %v", tt.runner, tt.goarch, err)
			continue
		}
		for _, w := range tt.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("CheckArch(%q, %q) = %q, lacks %q", tt.runner, tt.goarch, err, w)
			}
		}
	}
}
