package filemon

import (
	"path"
	"strings"
)

// Steering files change how a build's tools behave though no source file
// changed: a new .npmrc points npm at another registry, a new *.pth runs
// code at every Python start, a hook runs at the next commit. They are
// reported as event.Steer, not as tampering: a new one anywhere a baseline
// directory sees it, and any change to the state in .git that git reads
// as configuration.

// steerNames are base names of files that steer a tool wherever they are
// created, and why.
var steerNames = map[string]string{
	".npmrc":                  "npm configuration (registry, scripts)",
	"pip.conf":                "pip configuration (index)",
	"sitecustomize.py":        "run by every Python start",
	"usercustomize.py":        "run by every Python start",
	"conftest.py":             "run by pytest",
	"go.work":                 "Go workspace: replaces modules",
	"Directory.Build.props":   "imported by every MSBuild project",
	"Directory.Build.targets": "imported by every MSBuild project",
}

// steerNew says why a file created at rel (relative to the root) steers a
// tool, or "" when it does not.
func steerNew(rel string) string {
	if why := steerGit(rel); why != "" {
		return why
	}
	dir, name := path.Split(rel)
	if why, ok := steerNames[name]; ok {
		return why
	}
	switch {
	case strings.HasPrefix(name, ".yarnrc"):
		return "yarn configuration (registry, plugins)"
	case strings.HasSuffix(name, ".pth"):
		return "Python path configuration: its import lines run at every start"
	case dir == ".github/workflows/" || strings.HasSuffix(dir, "/.github/workflows/"):
		return "a GitHub Actions workflow"
	}
	return ""
}

// steerGit says why a path inside a .git directory is git configuration
// that changes what git does or shows, or "" when it is not.
func steerGit(rel string) string {
	i := strings.Index("/"+rel, "/.git/")
	if i < 0 {
		return ""
	}
	g := rel[i+len(".git/"):]
	if strings.HasSuffix(g, ".lock") {
		return "" // git's lock file: the rename over the real name follows
	}
	switch {
	case g == "config":
		return "git configuration (hooks path, filters, aliases, fsmonitor)"
	case g == "HEAD":
		return "git HEAD: what is checked out"
	case g == "packed-refs":
		return "git refs"
	case g == "info/attributes":
		return "git attributes (filters that run on checkout and diff)"
	case g == "info/grafts":
		return "git grafts: another history shown for a commit"
	case g == "objects/info/alternates":
		return "git alternates: another object store git reads this repository's objects from"
	case strings.HasPrefix(g, "hooks/"):
		return "a git hook"
	case strings.HasPrefix(g, "refs/replace/"):
		return "a git replace ref: another object shown in place of a commit"
	}
	return ""
}

// keepGit says whether the walk records the path g inside a .git
// directory (relative to it): the state steerGit names and the directories
// above it. The rest is git's own, rewritten in normal use.
func keepGit(g string, dir bool) bool {
	if dir {
		return g == "hooks" || g == "info" || g == "refs" || g == "refs/replace" || g == "objects" || g == "objects/info" ||
			strings.HasPrefix(g, "hooks/") || strings.HasPrefix(g, "refs/replace/")
	}
	return steerGit(".git/"+g) != ""
}

// steerDir says whether a directory created at rel may hold steering
// files that only a mark on it would show: .github, its workflows, and
// the kept directories of .git.
func steerDir(rel string) bool {
	_, name := path.Split(rel)
	if name == ".git" || name == ".github" || rel == ".github/workflows" || strings.HasSuffix(rel, "/.github/workflows") {
		return true
	}
	if i := strings.Index("/"+rel, "/.git/"); i >= 0 {
		return keepGit(rel[i+len(".git/"):], true)
	}
	return false
}
