// Package sudowatch keeps disable-sudo true for the rest of the job: it
// watches /etc/sudoers and /etc/sudoers.d, and every change that gives the
// runner's user a sudo rule again (a file put back, a new one, a line
// added to /etc/sudoers) is reported as an error, naming the file.
//
// A rule in /etc/sudoers that was there at the start (disable-sudo leaves
// it, with a warning) is not reported again. Group rules (%sudo) are not
// looked at: the runner's user is in no such group on GitHub's images.
package sudowatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/harden-runner/harden-runner/event"
)

// Config configures a Watch.
type Config struct {
	User string // the runner's user name; required
	Root string // "/" unless a test says otherwise
	Emit event.Emit
	Log  *slog.Logger
}

// Watch is the watcher. Start once, Close once (safe to repeat).
type Watch struct {
	cfg       Config
	w         *fsnotify.Watcher
	baseline  bool // /etc/sudoers granted User at the start
	done      chan struct{}
	once      sync.Once
	reportedM sync.Mutex
	restored  uint64
	reported  map[string]time.Time // file → when last reported
}

// New validates cfg. It does no I/O.
func New(cfg Config) (*Watch, error) {
	if cfg.User == "" || cfg.Emit == nil {
		return nil, errors.New("sudowatch: User and Emit are required")
	}
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Watch{cfg: cfg, done: make(chan struct{}), reported: make(map[string]time.Time)}, nil
}

func (s *Watch) etc(p string) string { return filepath.Join(s.cfg.Root, "etc", p) }

// Start begins watching. It fails if /etc cannot be watched.
func (s *Watch) Start(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("sudowatch: %w", err)
	}
	// The directories, not the files: a file put back by rename or
	// created anew is seen too. sudoers.d may not exist yet.
	if err := w.Add(s.etc("")); err != nil {
		w.Close()
		return fmt.Errorf("sudowatch: watch /etc: %w", err)
	}
	_ = w.Add(s.etc("sudoers.d"))
	s.w = w
	b, _ := os.ReadFile(s.etc("sudoers"))
	s.baseline = GrantsUser(string(b), s.cfg.User)
	go s.run(ctx)
	return nil
}

func (s *Watch) run(ctx context.Context) {
	defer close(s.done)
	dropin := s.etc("sudoers.d")
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-s.w.Errors:
			if !ok {
				return
			}
			s.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentSudowatch, Level: event.LevelError,
				Message: "sudo rights may be restored unseen: watching /etc/sudoers.d failed: " + err.Error()}})
		case ev, ok := <-s.w.Events:
			if !ok {
				return
			}
			switch {
			case ev.Name == dropin:
				if ev.Has(fsnotify.Create) {
					_ = s.w.Add(dropin)
					s.scanDropins() // files created before the watch took
				}
			case ev.Name == s.etc("sudoers"):
				if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					continue
				}
				b, err := os.ReadFile(ev.Name)
				if err == nil && GrantsUser(string(b), s.cfg.User) && !s.baseline {
					s.restoredRule("/etc/sudoers")
				}
			case filepath.Dir(ev.Name) == dropin:
				if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					continue
				}
				s.check(ev.Name)
			}
		}
	}
}

func (s *Watch) scanDropins() {
	ents, _ := os.ReadDir(s.etc("sudoers.d"))
	for _, e := range ents {
		s.check(filepath.Join(s.etc("sudoers.d"), e.Name()))
	}
}

// check reports a sudoers.d file that grants the user.
func (s *Watch) check(path string) {
	if DropinGrants(path, s.cfg.User) {
		s.restoredRule("/etc/sudoers.d/" + filepath.Base(path))
	}
}

// DropinGrants reports whether the sudoers.d file at path is one sudo
// reads (a regular file whose name has no '.' and does not end in '~')
// and has a rule for user.
func DropinGrants(path, user string) bool {
	name := filepath.Base(path)
	if strings.Contains(name, ".") || strings.HasSuffix(name, "~") {
		return false
	}
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() {
		return false
	}
	b, err := os.ReadFile(path)
	return err == nil && GrantsUser(string(b), user)
}

// EtcGrants reports whether the file rel (relative to etc, slash
// separated) is /etc/sudoers or a sudoers.d drop-in and now has a rule for
// user: what a change of sudo's policy means for disable-sudo.
func EtcGrants(etc, rel, user string) bool {
	switch dir, _ := path.Split(rel); {
	case rel == "sudoers":
		b, err := os.ReadFile(filepath.Join(etc, "sudoers"))
		return err == nil && GrantsUser(string(b), user)
	case dir == "sudoers.d/":
		return DropinGrants(filepath.Join(etc, filepath.FromSlash(rel)), user)
	}
	return false
}

// restoredRule reports file once per change burst (a write is several
// events): again only after a second.
func (s *Watch) restoredRule(file string) {
	s.reportedM.Lock()
	defer s.reportedM.Unlock()
	if t, ok := s.reported[file]; ok && time.Since(t) < time.Second {
		return
	}
	s.reported[file] = time.Now()
	s.restored++
	s.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentSudowatch, Level: event.LevelError,
		Message: fmt.Sprintf("sudo rights for %s were restored after disable-sudo: %s has a rule for the user again", s.cfg.User, file)}})
}

// Close stops watching and emits Stats (Events: rights restored).
func (s *Watch) Close() error {
	var err error
	s.once.Do(func() {
		if s.w == nil {
			return
		}
		err = s.w.Close()
		<-s.done
		s.reportedM.Lock()
		n := s.restored
		s.reportedM.Unlock()
		s.cfg.Emit(event.Record{Stats: &event.Stats{Component: event.ComponentSudowatch, Events: n}})
	})
	return err
}

// GrantsUser reports whether a sudoers text has a rule whose user list
// starts with user.
func GrantsUser(text, user string) bool {
	if user == "" {
		return false // no user: nothing can grant it
	}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.Split(f[0], ",")[0] == user {
			return true
		}
	}
	return false
}
