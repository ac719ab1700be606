package filemon

import (
	"errors"
	"os"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/harden-runner/harden-runner/event"
	"golang.org/x/sys/unix"
)

// syncPrefix names the directory Close creates in the root to learn that
// inotify has delivered everything before it.
const syncPrefix = ".harden-runner-filemon-sync-"

// watcher consumes fsnotify events. Without fanotify it is the only source
// of facts; with fanotify its facts carry no pid and are joined by the
// named ones fanotify reports for the same change.
type watcher struct {
	r       *run
	fs      *fsnotify.Watcher
	unknown event.Process // the process of every fact inotify reports
	// follow: watch directories that appear and track baseline files moved
	// or linked into them (aliases: new path -> baseline entry). Only
	// without fanotify, whose marks follow the inodes by themselves.
	follow     bool
	aliases    map[string]int32
	syncs      chan string   // names of sync directories seen
	overflowed chan struct{} // signalled on each overflow
	done       chan struct{}
	hold       <-chan struct{} // tests only: receives until the test closes it
}

func (w *watcher) run() {
	defer close(w.done)
	for {
		select {
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if w.hold != nil {
				<-w.hold
			}
			w.event(ev)
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.r.overflow("inotify")
				select {
				case w.overflowed <- struct{}{}:
				default:
				}
			} else {
				w.r.log.Warn("filemon: inotify", "err", err)
			}
		}
	}
}

func (w *watcher) event(ev fsnotify.Event) {
	base := w.r.base
	rel, ok := base.rel(ev.Name)
	if !ok {
		return
	}
	if strings.HasPrefix(rel, syncPrefix) {
		if ev.Has(fsnotify.Create) {
			select {
			case w.syncs <- rel:
			default:
			}
		}
		return
	}
	tr := w.r.tr
	idx, isBase := base.byPath[rel]
	if isBase && base.entries[idx].isDir() {
		if ev.Has(fsnotify.Rename) {
			tr.addTree(idx, factAway, w.unknown, time.Now())
		}
		if !ev.Has(fsnotify.Create) {
			return
		}
	}
	switch {
	case ev.Has(fsnotify.Create):
		if isBase && !base.entries[idx].isDir() {
			tr.replace(idx, w.unknown, time.Now(), false)
		} else if isBase {
			tr.replaceTree(idx, w.unknown, time.Now(), false)
		}
		if !w.follow {
			return
		}
		st, err := statxAt(unix.AT_FDCWD, ev.Name)
		if err != nil {
			return
		}
		if st.mode == modeDir {
			if (rel == ".git" || strings.HasPrefix(rel, ".git/") || strings.Contains(rel, "/.git/")) && !steerDir(rel) {
				return // git's own (objects/xx): not followed, a flood of events
			}
			w.addTree(ev.Name)
		} else if !isBase {
			w.alias(rel, st)
		}
	case ev.Has(fsnotify.Write):
		if !isBase {
			i, ok := w.aliases[rel]
			if !ok {
				return
			}
			idx = i
		}
		st, err := statxAt(unix.AT_FDCWD, ev.Name)
		if err == nil && base.entries[idx].sameFile(st) {
			tr.add(idx, factChanged, w.unknown, time.Now(), st.size)
		} else if isBase {
			tr.touch(idx) // a new file at a baseline name was written
		}
	case ev.Has(fsnotify.Remove):
		delete(w.aliases, rel)
		if isBase {
			tr.add(idx, factUnlink, w.unknown, time.Now(), -1)
		}
	case ev.Has(fsnotify.Rename):
		delete(w.aliases, rel)
		if isBase {
			tr.add(idx, factAway, w.unknown, time.Now(), -1)
		}
	}
}

// alias remembers that rel is a baseline file under another name.
func (w *watcher) alias(rel string, st fileStat) {
	if st.mode != modeReg {
		return
	}
	w.r.base.lookupIno(st.dev, st.ino, func(idx int32) {
		if w.r.base.entries[idx].sameFile(st) {
			w.aliases[rel] = idx
		}
	})
}

// addTree watches a directory that appeared, and the directories inside it
// that were created before the watch was in place.
func (w *watcher) addTree(dir string) {
	if err := w.fs.Add(dir); err != nil {
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			w.r.watchFailed(dir, err)
		}
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := dir + "/" + e.Name()
		switch {
		case e.IsDir():
			w.addTree(p)
		case e.Type().IsRegular():
			if rel, ok := w.r.base.rel(p); ok {
				if st, err := statxAt(unix.AT_FDCWD, p); err == nil {
					w.alias(rel, st)
				}
			}
		}
	}
}
