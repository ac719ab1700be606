// Package privmon reports every start of a privilege-raising program
// (sudo, su, pkexec, doas): the job summary says who used them, which
// matters most when disable-sudo is on and a step still tries. It watches
// the programs' files for FAN_OPEN_EXEC with fanotify; it knows nothing of
// the policy and only emits event.Exec records.
package privmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/fanotify"
)

// DefaultPrograms are watched when Config.Programs is empty; missing ones
// are skipped.
var DefaultPrograms = []string{"/usr/bin/sudo", "/usr/bin/su", "/usr/bin/pkexec", "/usr/bin/doas"}

// Config configures a Monitor.
type Config struct {
	Programs []string // paths to watch; default DefaultPrograms
	Emit     event.Emit
	// Process says who pid is once its exec of prog is done; required
	// (proc.InfoAfterExec: the exec event comes while the old image still
	// runs, and that image must never be named as prog's process).
	Process func(ctx context.Context, pid int, prog string) event.Process
	Log     *slog.Logger
}

// Monitor watches the programs. Start once, Close once (safe to repeat).
type Monitor struct {
	cfg      Config
	f        *os.File
	wg       sync.WaitGroup
	watched  []string
	events   atomic.Uint64
	unknown  atomic.Uint64
	closeErr error
	once     sync.Once
}

// New validates cfg. It does no I/O.
func New(cfg Config) (*Monitor, error) {
	if cfg.Emit == nil || cfg.Process == nil {
		return nil, errors.New("privmon: Emit and Process are required")
	}
	if len(cfg.Programs) == 0 {
		cfg.Programs = DefaultPrograms
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Monitor{cfg: cfg}, nil
}

// Start marks the programs that exist and returns once they are watched.
// It fails if fanotify is unavailable or none could be marked.
func (m *Monitor) Start(ctx context.Context) error {
	f, watched, err := fanotify.WatchFiles(unix.FAN_CLASS_NOTIF, unix.FAN_OPEN_EXEC, m.cfg.Programs)
	if err != nil {
		return fmt.Errorf("privmon: %w", err)
	}
	if len(watched) == 0 {
		f.Close()
		return fmt.Errorf("privmon: none of %v exists", m.cfg.Programs)
	}
	m.f, m.watched = f, watched // non-blocking: Close ends a Read
	m.wg.Add(1)
	go m.read(ctx)
	return nil
}

// Watched returns the programs being watched.
func (m *Monitor) Watched() []string { return m.watched }

func (m *Monitor) read(ctx context.Context) {
	defer m.wg.Done()
	buf := make([]byte, 4096)
	for ctx.Err() == nil {
		n, err := m.f.Read(buf)
		if err != nil {
			return // closed
		}
		err = fanotify.Parse(buf[:n], func(ev *fanotify.Event) bool {
			prog := ""
			if ev.FD >= 0 {
				prog, _ = os.Readlink("/proc/self/fd/" + strconv.Itoa(int(ev.FD)))
				unix.Close(int(ev.FD))
			}
			m.wg.Add(1)
			go m.record(ctx, prog, int(ev.PID), time.Now())
			return true
		})
		if err != nil {
			m.cfg.Log.Error("privmon: read fanotify events", "err", err)
		}
	}
}

// record reads who pid is once its exec has settled and emits the event.
func (m *Monitor) record(ctx context.Context, prog string, pid int, at time.Time) {
	defer m.wg.Done()
	p := m.cfg.Process(ctx, pid, prog)
	if p.Exe == "" {
		m.unknown.Add(1)
	}
	m.events.Add(1)
	m.cfg.Emit(event.Record{Exec: &event.Exec{Time: at, Program: prog, Process: p}})
}

// Close stops watching, waits for pending records and emits Stats.
func (m *Monitor) Close() error {
	m.once.Do(func() {
		if m.f == nil {
			return
		}
		m.closeErr = m.f.Close()
		m.wg.Wait()
		st := m.Stats()
		m.cfg.Emit(event.Record{Stats: &st})
	})
	return m.closeErr
}

// Stats returns the monitor's counts so far (what Close emits). Safe for
// concurrent use.
func (m *Monitor) Stats() event.Stats {
	return event.Stats{Component: event.ComponentPrivmon, Events: m.events.Load(), Unattributed: m.unknown.Load()}
}
