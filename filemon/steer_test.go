package filemon

import "testing"

func TestSteerNew(t *testing.T) {
	for _, tc := range []struct {
		rel   string
		steer bool
	}{
		{".npmrc", true}, {"sub/.npmrc", true}, {".yarnrc", true}, {".yarnrc.yml", true},
		{"pip.conf", true}, {"venv/lib/site-packages/sitecustomize.py", true}, {"x/evil.pth", true},
		{"tests/conftest.py", true}, {"go.work", true}, {"Directory.Build.props", true},
		{".github/workflows/a.yml", true}, {"sub/.github/workflows/a.yml", true},
		{".git/hooks/pre-commit", true}, {".git/hooks/pre-commit.sample", true},
		{".git/config", true}, {".git/HEAD", true}, {".git/packed-refs", true},
		{".git/info/attributes", true}, {".git/refs/replace/abc", true}, {".git/refs/replace/abc.lock", false},
		{".git/index", false}, {".git/refs/heads/main", false}, {".git/objects/ab/cd", false},
		{".git/objects/info/alternates", true}, {".git/objects/info/packs", false}, {".git/info/grafts", true},
		{"main.go", false}, {"npmrc", false}, {"workflows/a.yml", false}, {".github/a.yml", false},
		{"x.git/config", false}, {"sub/.git/config", true},
	} {
		if got := steerNew(tc.rel) != ""; got != tc.steer {
			t.Errorf("steerNew(%q) = %v, want %v", tc.rel, got, tc.steer)
		}
	}
}

func TestKeepGit(t *testing.T) {
	for _, tc := range []struct {
		g    string
		dir  bool
		keep bool
	}{
		{"config", false, true}, {"HEAD", false, true}, {"packed-refs", false, true}, {"index", false, false},
		{"hooks", true, true}, {"hooks/pre-commit", false, true}, {"info", true, true}, {"info/attributes", false, true},
		{"info/exclude", false, false}, {"refs", true, true}, {"refs/heads", true, false}, {"refs/replace", true, true},
		{"refs/replace/abc", false, true}, {"objects", true, true}, {"objects/ab", true, false}, {"objects/pack", true, false},
		{"objects/info", true, true}, {"objects/info/alternates", false, true}, {"logs", true, false},
	} {
		if got := keepGit(tc.g, tc.dir); got != tc.keep {
			t.Errorf("keepGit(%q, dir=%v) = %v, want %v", tc.g, tc.dir, got, tc.keep)
		}
	}
}

func FuzzSteerNew(f *testing.F) {
	for _, s := range []string{".npmrc", ".git/hooks/x", "a/.github/workflows/b", ".git/", "/.git/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		steerNew(rel)
		steerDir(rel)
	})
}
