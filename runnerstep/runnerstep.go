// Package runnerstep tells which workflow step a process belongs to from
// its ancestry. The runner's job process (Runner.Worker) starts each step
// as a child process, so the ancestor whose parent is Runner.Worker is the
// step's root. Runner.Worker is the process pinned at the start of the job
// (package runnerid), named here by its pid: never a process that calls
// itself Runner.Worker (a copy of bash, `exec -a`), so a step cannot choose
// the step its events are blamed on. The root's command line gives the
// name the runner shows for a
// step without `name:`: "Run " and the script's first line for a `run:`
// step (its script is a file in the runner's _temp directory), "Run
// owner/repo@ref" for a JavaScript action (node runs a file under
// _actions/owner/repo/ref).
//
// A process that outlives its step (`cmd &`, setsid) keeps its step when
// its ancestry comes from the kernel's process table (package lineage
// records who made each process, not who it was re-parented to): the step
// that planted a leftover is the one its later events are blamed on. From
// /proc alone it is re-parented when the step ends and loses its root;
// callers fall back to the time of the event.
package runnerstep

import (
	"bytes"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// Key identifies a step root: its pid and command line (a pid alone may
// be reused by a later step).
type Key struct {
	PID     int
	Cmdline string
}

// RootOf returns the step root among p and its parents: the nearest
// process whose parent is the runner, the process with pid runner (the
// pinned Runner.Worker; a pid is not reused while its process lives, and
// the runner outlives every step). ok is false when there is none (a
// daemon, a container's process, an orphan, the runner itself, or no
// pinned runner: runner 0).
func RootOf(p event.Process, runner int) (root event.Ancestor, ok bool) {
	if runner <= 0 || p.PID == 0 || p.PID == runner {
		return event.Ancestor{}, false
	}
	prev := event.Ancestor{PID: p.PID, Exe: p.Exe, Cmdline: p.Cmdline}
	for _, a := range p.Parents {
		if a.PID == runner {
			return prev, true
		}
		prev = a
	}
	return event.Ancestor{}, false
}

// RootAmong returns the nearest of p and its parents that isRoot says is
// a step root: for a reader of the journal, whose StepRoot records name
// the roots the agent found under the pinned runner. No step root runs
// under another, so the nearest is the one.
func RootAmong(p event.Process, isRoot func(Key) bool) (root event.Ancestor, ok bool) {
	if p.PID == 0 {
		return event.Ancestor{}, false
	}
	if isRoot(Key{p.PID, p.Cmdline}) {
		return event.Ancestor{PID: p.PID, Exe: p.Exe, Cmdline: p.Cmdline}, true
	}
	for _, a := range p.Parents {
		if isRoot(Key{a.PID, a.Cmdline}) {
			return a, true
		}
	}
	return event.Ancestor{}, false
}

var (
	// A run: step's script: _temp/<guid><extension for the shell>.
	scriptRe = regexp.MustCompile(`(/[^\s'"]*/_temp/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?:\.[A-Za-z0-9]+)?)(?:$|[\s'"])`)
	// A JavaScript action's entry point: _actions/owner/repo/ref/path.
	actionRe = regexp.MustCompile(`(/[^\s'"]*/_actions)/([^/\s'"]+)/([^/\s'"]+)/([^/\s'"]+)/([^\s'"]*)`)
)

// maxNameLen bounds a default name (a script's first line may be long).
const maxNameLen = 200

// FS is what DefaultName reads: the start of a file, and whether one exists.
type FS interface {
	ReadHead(path string) ([]byte, error)
	Exists(path string) bool
}

// DefaultName returns the name the runner gives a step without `name:`
// whose root process has this command line, or "" when it cannot tell.
// The script's first line is as the runner wrote it, secrets included:
// the runner masks them in the summary and annotations, not in report.json
// (as with command lines).
func DefaultName(cmdline string, fs FS) string {
	if m := scriptRe.FindStringSubmatch(cmdline); m != nil {
		b, err := fs.ReadHead(m[1])
		if err != nil {
			return ""
		}
		return "Run " + firstLine(b, path.Ext(m[1]))
	}
	if m := actionRe.FindStringSubmatch(cmdline); m != nil {
		root, owner, repo, ref, rest := m[1], m[2], m[3], m[4], m[5]
		// The action's directory is the deepest one on the entry point's
		// path that has an action.yml: the repository's root or a
		// subdirectory (owner/repo/sub@ref).
		sub, dir := "", ""
		parts := strings.Split(rest, "/")
		for i := 0; i < len(parts)-1; i++ {
			if parts[i] == "" || parts[i] == "." || parts[i] == ".." {
				break
			}
			dir = path.Join(dir, parts[i])
			base := path.Join(root, owner, repo, ref, dir)
			if fs.Exists(base+"/action.yml") || fs.Exists(base+"/action.yaml") {
				sub = "/" + dir
			}
		}
		return "Run " + clean(owner+"/"+repo+sub+"@"+ref)
	}
	return ""
}

// firstLine is the runner's "first line" of a script: leading blanks and
// newlines trimmed, up to the next line break; the line the runner itself
// prepends for cmd and PowerShell is skipped.
func firstLine(b []byte, ext string) string {
	switch strings.ToLower(ext) {
	case ".ps1":
		b = skipPrefixLine(b, "$ErrorActionPreference = 'stop'")
	case ".cmd":
		b = skipPrefixLine(b, "@echo off")
	}
	b = bytes.TrimLeft(b, " \t\r\n")
	if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
		b = b[:i]
	}
	return clean(string(b))
}

// clean makes s valid UTF-8 of at most maxNameLen bytes (and an ellipsis).
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > maxNameLen {
		s = strings.ToValidUTF8(s[:maxNameLen], "") + "…"
	}
	return s
}

func skipPrefixLine(b []byte, line string) []byte {
	if rest, ok := bytes.CutPrefix(b, []byte(line)); ok {
		rest = bytes.TrimPrefix(rest, []byte("\r"))
		if rest, ok := bytes.CutPrefix(rest, []byte("\n")); ok {
			return rest
		}
	}
	return b
}

// maxRoots bounds the step roots a Tracker remembers.
const maxRoots = 10000

// Tracker records each step root once, the first time an event of a
// process under it goes by. Safe for concurrent use.
type Tracker struct {
	fs     FS
	runner int
	mu     sync.Mutex
	seen   map[Key]bool
}

// NewTracker returns a Tracker that reads scripts and action directories
// through fs, for the steps of the pinned runner with pid runner (0: none,
// no step roots are recorded).
func NewTracker(fs FS, runner int) *Tracker {
	return &Tracker{fs: fs, runner: runner, seen: make(map[Key]bool)}
}

// Wrap returns an Emit that passes every record to next, preceded by a
// StepRoot record when the record's process is under a step root not seen before.
func (t *Tracker) Wrap(next event.Emit) event.Emit {
	return func(r event.Record) {
		if p := r.Process(); p != nil {
			if root, ok := RootOf(*p, t.runner); ok && t.first(Key{root.PID, root.Cmdline}) {
				at := r.Time()
				if at.IsZero() {
					at = time.Now()
				}
				next(event.Record{StepRoot: &event.StepRoot{Time: at, PID: root.PID, Cmdline: root.Cmdline,
					Name: DefaultName(root.Cmdline, t.fs)}})
			}
		}
		next(r)
	}
}

func (t *Tracker) first(k Key) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[k] {
		return false
	}
	if len(t.seen) >= maxRoots {
		clear(t.seen)
	}
	t.seen[k] = true
	return true
}
