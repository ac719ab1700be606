package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"golang.org/x/sys/unix"
)

// Which sysctls matter to enforcement. No sysctl switches netfilter off; two
// change what our rules mean:
//
//   - net.ipv4.conf.{all,IFACE}.route_localnet: with it on, 127.0.0.0/8 is
//     routable off the machine, and our output chain accepts that range by
//     address (a redirected DNS query keeps its original interface there).
//   - net.netfilter.nf_conntrack_tcp_loose: with it off, conntrack no longer
//     picks up connections mid-stream, so the runner's connections from
//     before the agent break instead of passing the snapshot rule.
//
// Others were weighed and left out: ip_forward (forwarded packets pass our
// forward chain either way), disable_ipv6 (less traffic, not more),
// rp_filter and accept_local (what comes in, not what goes out),
// bridge-nf-call-* (containers' egress is routed, not bridged).
var DefaultSysctls = []string{"net/ipv4/conf/*/route_localnet", "net/netfilter/nf_conntrack_tcp_loose"}

// SysctlPoll is how often the sysctls are read: they have no change
// notification.
const SysctlPoll = 20 * time.Millisecond

// SysctlsConfig says which sysctls to keep.
type SysctlsConfig struct {
	Names []string // globs under /proc/sys; default DefaultSysctls
	Emit  event.Emit
	Poll  time.Duration // default SysctlPoll
	// Writer names the process that last wrote a sysctl (dotted name) in
	// the network namespace with inode number netns, from the kernel's
	// record (proc.Finder.SysctlWriter); nil: none.
	Writer func(netns uint32, name string) event.Process
	root   string // /proc/sys; tests may not change it
}

// Sysctls keeps sysctl values as they were at Start: a change is written
// back and reported as a tamper error, with its writer when
// SysctlsConfig.Writer knows it. Close is safe to call twice.
type Sysctls struct {
	cfg     SysctlsConfig
	netns   uint32 // inode number of the namespace the files belong to
	files   []*sysctlFile
	changes atomic.Int64
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

type sysctlFile struct {
	name string
	f    *os.File
	want []byte
}

// WatchSysctls opens the sysctls in the caller's network namespace (the
// files stay bound to it) and polls them until ctx ends or Close. Names
// that match nothing are skipped (conntrack's appear once it is loaded:
// start after the firewall).
func WatchSysctls(ctx context.Context, cfg SysctlsConfig) (*Sysctls, error) {
	if cfg.Emit == nil {
		return nil, errors.New("guard: sysctls: Emit is required")
	}
	if len(cfg.Names) == 0 {
		cfg.Names = DefaultSysctls
	}
	if cfg.Poll <= 0 {
		cfg.Poll = SysctlPoll
	}
	if cfg.root == "" {
		cfg.root = "/proc/sys"
	}
	s := &Sysctls{cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}
	// The calling thread's: net sysctls belong to the namespace they were
	// opened in.
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err == nil {
		s.netns = uint32(st.Ino)
	}
	for _, g := range cfg.Names {
		paths, _ := filepath.Glob(filepath.Join(cfg.root, g))
		for _, p := range paths {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				// /proc/sys read-only (a container): report, cannot set back.
				f, err = os.Open(p)
			}
			if err != nil {
				s.closeFiles()
				return nil, fmt.Errorf("guard: sysctl %s: %w", p, err)
			}
			sf := &sysctlFile{name: strings.ReplaceAll(strings.TrimPrefix(p, cfg.root+"/"), "/", "."), f: f}
			if sf.want, err = sf.read(); err != nil {
				s.closeFiles()
				return nil, err
			}
			s.files = append(s.files, sf)
		}
	}
	go s.loop(ctx)
	return s, nil
}

func (f *sysctlFile) read() ([]byte, error) {
	buf := make([]byte, 64)
	n, err := f.f.ReadAt(buf, 0)
	if err != nil && n == 0 {
		return nil, fmt.Errorf("guard: read sysctl %s: %w", f.name, err)
	}
	return bytes.TrimSpace(buf[:n]), nil
}

func (s *Sysctls) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		case <-t.C:
		}
		for _, f := range s.files {
			got, err := f.read()
			if err != nil || bytes.Equal(got, f.want) {
				continue
			}
			var who *event.Process
			msg := fmt.Sprintf("sysctl %s changed from %s to %s", f.name, f.want, got)
			if s.cfg.Writer != nil {
				if p := s.cfg.Writer(s.netns, f.name); p.PID > 0 {
					who = &p
					msg += fmt.Sprintf(" by pid %d (%q)", p.PID, p.Exe)
				} else {
					msg += " (" + p.Unknown + ")"
				}
			} else {
				msg += " (sysctl writes name no process)"
			}
			if _, err := f.f.WriteAt(append(f.want, '\n'), 0); err != nil {
				msg += fmt.Sprintf("; writing %s back failed: %v", f.want, err)
			} else {
				msg += "; set back to " + string(f.want)
			}
			s.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentGuard, Level: event.LevelError, Tamper: true, Message: msg, Process: who}})
			s.changes.Add(1) // after the note: a reader of Changes finds it
		}
	}
}

// Changes returns how many changes were seen.
func (s *Sysctls) Changes() int { return int(s.changes.Load()) }

// Close stops polling. Safe to call twice.
func (s *Sysctls) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		s.closeFiles()
	})
	return nil
}

func (s *Sysctls) closeFiles() {
	for _, f := range s.files {
		f.f.Close()
	}
}
