package gitindex

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseRealIndex builds repositories with the real git in every index
// version and compares Parse with `git ls-files --stage --debug`.
func TestParseRealIndex(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	for _, ver := range []string{"2", "3", "4"} {
		t.Run("v"+ver, func(t *testing.T) {
			dir := t.TempDir()
			git := func(args ...string) string {
				t.Helper()
				cmd := exec.Command("git", args...)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir,
					"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
					"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("git %v: %v\n%s", args, err, out)
				}
				return string(out)
			}
			git("init", "-q")
			git("config", "index.version", ver)
			want := map[string]string{}
			for i, p := range []string{"a.txt", "dir/b.go", "dir/sub/c with space", "dir/sub/d", "zz/" + strings.Repeat("long", 30)} {
				full := filepath.Join(dir, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				body := fmt.Sprintf("content %d\n", i)
				if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				h := sha1.Sum([]byte(fmt.Sprintf("blob %d\x00%s", len(body), body)))
				want[p] = hex.EncodeToString(h[:])
			}
			if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			h := sha1.Sum([]byte("blob 5\x00a.txt"))
			want["link"] = hex.EncodeToString(h[:])
			git("add", "-A")
			if ver == "3" {
				git("update-index", "--skip-worktree", "a.txt") // sets an extended flag
			}
			data, err := os.ReadFile(filepath.Join(dir, ".git", "index"))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			err = Parse(data, 20, func(e Entry) bool {
				got[e.Path] = hex.EncodeToString(e.Hash)
				if e.Path == "link" && e.Mode != 0o120000 {
					t.Errorf("link mode %o", e.Mode)
				}
				if e.Path == "a.txt" {
					fi, err := os.Stat(filepath.Join(dir, "a.txt"))
					if err != nil {
						t.Fatal(err)
					}
					if int64(e.Size) != fi.Size() || int64(e.MtimeSec) != fi.ModTime().Unix() {
						t.Errorf("a.txt stat data %+v, file %v %v", e, fi.Size(), fi.ModTime())
					}
				}
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"magic", "DIRX\x00\x00\x00\x02\x00\x00\x00\x00"},
		{"version", "DIRC\x00\x00\x00\x05\x00\x00\x00\x00"},
		{"truncated entry", "DIRC\x00\x00\x00\x02\x00\x00\x00\x01" + strings.Repeat("\x00", 30)},
		{"unterminated name", "DIRC\x00\x00\x00\x02\x00\x00\x00\x01" + strings.Repeat("\x00", 62) + "abc"},
		// Version 4 names build on the previous one: they must not grow
		// past maxPath (an input that did made parsing quadratic).
		{"v4 name growing without bound", "DIRC\x00\x00\x00\x04\x00\x00\x00\x03" +
			strings.Repeat(strings.Repeat("\x00", 62)+"\x00"+strings.Repeat("a", 40000)+"\x00", 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Parse([]byte(tc.data), 20, func(Entry) bool { return true }); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestGitVarint(t *testing.T) {
	// Values from git's varint.c encoder.
	for _, tc := range []struct {
		in   []byte
		want uint64
	}{
		{[]byte{0}, 0},
		{[]byte{0x7f}, 127},
		{[]byte{0x80, 0x00}, 128},
		{[]byte{0x80, 0x7f}, 255},
		{[]byte{0x81, 0x00}, 256},
	} {
		got, n := gitVarint(tc.in)
		if got != tc.want || n != len(tc.in) {
			t.Errorf("gitVarint(%x) = %d, %d; want %d", tc.in, got, n, tc.want)
		}
	}
	if _, n := gitVarint([]byte{0x80}); n != 0 {
		t.Error("truncated varint accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("DIRC\x00\x00\x00\x02\x00\x00\x00\x00"))
	entry := strings.Repeat("\x00", 60) + "\x00\x01" + "a\x00\x00\x00\x00\x00\x00\x00\x00"
	f.Add([]byte("DIRC\x00\x00\x00\x02\x00\x00\x00\x01" + entry))
	f.Add([]byte("DIRC\x00\x00\x00\x04\x00\x00\x00\x02" + strings.Repeat("\x00", 62) + "\x00ab\x00" + strings.Repeat("\x00", 62) + "\x01c\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		_ = Parse(data, 20, func(e Entry) bool {
			n++
			if len(e.Hash) != 20 || len(e.Path) > maxPath {
				t.Fatalf("bad entry %+v", e)
			}
			return n < 1000
		})
	})
}
