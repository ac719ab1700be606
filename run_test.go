package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/egress/policy"
)

// TestRunPolicyFlags: --policy and --allowed-endpoints give the union of
// their entries; the file's mode applies unless --egress-policy says
// otherwise, which is an error rather than a silent choice.
func TestRunPolicyFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	block := write("block.yml", "egress-policy: block\nallowed-endpoints:\n  - a.test:443\n  - 198.18.1.0/24:22\n")
	noMode := write("nomode.yml", "allowed-endpoints: b.test:443\n")
	bad := write("bad.yml", "egress-policy: block\nallowed-endpoints:\n  - a.test:443\n  - b.test:99999\n")
	cases := []struct {
		name    string
		flags   []string
		mode    policy.Mode
		entries []string
		err     string
	}{
		{"file alone", []string{"--policy", block}, policy.Block, []string{"a.test:443", "198.18.1.0/24:22"}, ""},
		{"union", []string{"--policy", block, "--allowed-endpoints", "c.test:443 a.test:443"}, policy.Block,
			[]string{"a.test:443", "c.test:443", "198.18.1.0/24:22"}, ""},
		{"same mode twice", []string{"--policy", block, "--egress-policy", "block"}, policy.Block, []string{"a.test:443", "198.18.1.0/24:22"}, ""},
		{"modes disagree", []string{"--policy", block, "--egress-policy", "audit"}, "", nil, "disagree"},
		{"file without mode", []string{"--policy", noMode, "--egress-policy", "block"}, policy.Block, []string{"b.test:443"}, ""},
		{"default mode", []string{"--policy", noMode}, policy.Audit, []string{"b.test:443"}, ""},
		{"bad entry", []string{"--policy", bad}, "", nil, "bad.yml:4: allowed-endpoints: entry \"b.test:99999\""},
		{"missing file", []string{"--policy", filepath.Join(dir, "nope.yml")}, "", nil, "nope.yml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, _, err := parseRunFlags(append(c.flags, "--", "true"), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			set, err := o.settings()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for e := range policy.New(set.Mode, set.Endpoints, false).Endpoints() {
				got = append(got, e.String())
			}
			if mode := set.Mode; mode != c.mode || strings.Join(got, " ") != strings.Join(c.entries, " ") {
				t.Errorf("got %s %v, want %s %v", mode, got, c.mode, c.entries)
			}
		})
	}
}
