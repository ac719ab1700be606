// Package sudowatch keeps disable-sudo true for the rest of the job: it
// watches /etc/sudoers, /etc/sudoers.d and the user and group databases,
// and every change after which a rule gives the runner's user sudo rights
// again (a file put back, a new one, a line added to /etc/sudoers, an
// alias or a group that now takes the user in, the user added to a group
// a rule names) is reported as an error, naming the file and the rule.
//
// The policy is read the way sudo reads it (Scan: aliases, #uid, %group,
// ALL, negation, @include and @includedir), and, where the sudo binary
// is there, sudo itself is asked too (SudoList), which also knows rules
// from elsewhere (sssd, LDAP). A rule that was there at the start
// (disable-sudo fails when one is left) is not reported again.
package sudowatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
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
	baseline  map[string]bool // rules (file and text) granting User at the start
	sudoSaid  bool            // sudo -l granted User at the start
	done      chan struct{}
	once      sync.Once
	reportedM sync.Mutex
	restored  uint64
	reported  map[string]bool // rules reported (grantKey), each once
	// policy is the files and directories the last Scan read or tried
	// (host paths): an include outside /etc/sudoers and /etc/sudoers.d
	// is watched too. Used by the run goroutine only.
	policy map[string]bool
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
	return &Watch{cfg: cfg, done: make(chan struct{}), reported: make(map[string]bool)}, nil
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
	s.baseline = map[string]bool{}
	grants, paths := scanFiles(s.cfg.Root, LookupUser(s.cfg.Root, s.cfg.User))
	for _, g := range grants {
		s.baseline[grantKey(g)] = true
	}
	s.watchPolicy(paths)
	s.sudoSaid, _ = s.sudoList(ctx)
	go s.run(ctx)
	return nil
}

// grantKey names a rule by file and text, not line: a line added above
// it does not make it new.
func grantKey(g Grant) string { return g.File + "\x00" + g.Rule }

// sudoList is SudoList for the watched root.
func (s *Watch) sudoList(ctx context.Context) (bool, error) {
	return SudoListIn(ctx, s.cfg.Root, s.cfg.User)
}

// Relevant reports whether a change of the file rel (relative to /etc,
// slash separated) can change what sudo grants: the sudoers files, the
// user and group databases, where NSS looks.
func Relevant(rel string) bool {
	switch dir, _ := path.Split(rel); {
	case rel == "sudoers", dir == "sudoers.d/", rel == "sudoers.d",
		rel == "passwd", rel == "group", rel == "nsswitch.conf", rel == "sudo.conf":
		return true
	}
	return false
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
			if ev.Name == dropin && ev.Has(fsnotify.Create) {
				_ = s.w.Add(dropin) // files created before the watch took are read by check
			}
			rel, err := filepath.Rel(s.etc(""), ev.Name)
			if (err != nil || !Relevant(filepath.ToSlash(rel))) && !s.inPolicy(ev.Name) {
				continue
			}
			s.check(ctx)
		}
	}
}

// check reads the policy again and reports each rule for the user that
// was not there at the start; if there is none but sudo itself now
// grants the user what it did not at the start, that is reported.
func (s *Watch) check(ctx context.Context) {
	found := false
	grants, paths := scanFiles(s.cfg.Root, LookupUser(s.cfg.Root, s.cfg.User))
	s.watchPolicy(paths)
	for _, g := range grants {
		if !s.baseline[grantKey(g)] {
			found = true
			s.restoredRule(grantKey(g), fmt.Sprintf("%s has a rule for the user again (line %d: %s)", g.File, g.Line, g.Rule))
		}
	}
	if found || s.sudoSaid {
		return
	}
	if granted, err := s.sudoList(ctx); err == nil && granted {
		s.restoredRule("sudo -l", "sudo -l -U "+s.cfg.User+" lists rules for the user again")
	}
}

// watchPolicy notes the policy's files and watches the directories they
// are in (or are to be in), beyond /etc and /etc/sudoers.d.
func (s *Watch) watchPolicy(paths []string) {
	s.policy = map[string]bool{}
	for _, p := range paths {
		s.policy[p] = true
		for _, d := range []string{p, path.Dir(p)} {
			if d != "/etc" && d != "/etc/sudoers.d" {
				_ = s.w.Add(filepath.Join(s.cfg.Root, filepath.FromSlash(d))) // fails for a file or one not there
			}
		}
	}
}

// inPolicy reports whether the file at name (on this machine) is one
// the policy reads, or is in a directory it reads.
func (s *Watch) inPolicy(name string) bool {
	rel, err := filepath.Rel(s.cfg.Root, name)
	if err != nil {
		return false
	}
	p := "/" + filepath.ToSlash(rel)
	return s.policy[p] || s.policy[path.Dir(p)]
}

// FirstGrant returns the first rule under etc's root that gives user
// sudo rights, by Scan.
func FirstGrant(etc, user string) (Grant, bool) {
	root := filepath.Dir(filepath.Clean(etc))
	if gs := Scan(root, LookupUser(root, user)); len(gs) > 0 {
		return gs[0], true
	}
	return Grant{}, false
}

// GrantIn returns the first rule in the file at host path file that
// gives user sudo rights, by Scan over the policy under etc's root.
func GrantIn(etc, user, file string) (Grant, bool) {
	root := filepath.Dir(filepath.Clean(etc))
	for _, g := range Scan(root, LookupUser(root, user)) {
		if g.File == file {
			return g, true
		}
	}
	return Grant{}, false
}

// DatabaseGrant returns the first rule under etc's root that gives user
// sudo rights through the user and group databases only (its uid, a
// group it is in), by Scan: what a change of /etc/passwd or /etc/group
// can have made apply. A rule for the user's name is not one.
func DatabaseGrant(etc, user string) (Grant, bool) {
	root := filepath.Dir(filepath.Clean(etc))
	byName := map[string]bool{}
	for _, g := range Scan(root, User{Name: user}) {
		byName[grantKey(g)] = true
	}
	for _, g := range Scan(root, LookupUser(root, user)) {
		if !byName[grantKey(g)] {
			return g, true
		}
	}
	return Grant{}, false
}

// restoredRule reports a rule (named by key) the first time it is seen:
// a write is several events, and an apt run touches /etc/group often.
func (s *Watch) restoredRule(key, what string) {
	s.reportedM.Lock()
	defer s.reportedM.Unlock()
	if s.reported[key] {
		return
	}
	s.reported[key] = true
	s.restored++
	s.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentSudowatch, Level: event.LevelError,
		Message: fmt.Sprintf("sudo rights for %s were restored after disable-sudo: %s", s.cfg.User, what)}})
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
