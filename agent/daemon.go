package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/harden-runner/harden-runner/dockergate"
	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/egress/resolver"
	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/settings"
)

// DaemonConfig is what the Action hands the host daemon (`harden-runner
// agent --config FILE`), as JSON. Paths are the host's.
type DaemonConfig struct {
	// Settings are the user's, parsed by the Action (package settings):
	// the daemon decodes and checks them, it parses no text.
	// Settings.FileMonitoring is off without a Workspace.
	Settings  settings.Settings `json:"settings"`
	Workspace string            `json:"workspace,omitempty"`
	// StateDir holds the pid file, the ready/failed/stopped markers and
	// the journal (see the State* names).
	StateDir string `json:"state_dir"`
	// DockerSocket and DockerCLIs override dockergate's defaults (for
	// Settings.DisableContainers); DockerTrustedImage is the Action's
	// image ID.
	DockerSocket       string   `json:"docker_socket,omitempty"`
	DockerCLIs         []string `json:"docker_clis,omitempty"`
	DockerTrustedImage string   `json:"docker_trusted_image,omitempty"`
	// ActionContainer is the Action's own container's name (Config.ActionContainer).
	ActionContainer string `json:"action_container,omitempty"`
	// SudoUser is the runner's user name when disable-sudo is on: the
	// agent reports a sudo rule for it that comes back.
	SudoUser string `json:"sudo_user,omitempty"`
	// RestartDelay is how long the supervisor (systemd's RestartSec, or
	// Supervise) waits before it starts a daemon that died again; default
	// DefaultRestartDelay.
	RestartDelay time.Duration `json:"restart_delay,omitempty"`
}

// DefaultRestartDelay is DaemonConfig.RestartDelay's default.
const DefaultRestartDelay = 100 * time.Millisecond

// Files the daemon keeps in DaemonConfig.StateDir.
const (
	StatePid     = "agent.pid"     // the daemon's pid, written first
	StateReady   = "ready"         // written once the policy is enforced
	StateFailed  = "failed"        // the start error, if start failed
	StateStopped = "stopped"       // written after the final journal flush
	StateJournal = "journal.jsonl" // the event journal (root only)
	// StateSnapshot answers a snapshot request (SIGUSR1): SnapshotResult.
	StateSnapshot = "snapshot.json"
	// StateStopRequest is written by StopDaemon before its SIGTERM: a
	// stop signal without it (systemctl stop, or a step's kill) does not
	// end enforcement; it is reported.
	StateStopRequest = "stop-request"
	// StateHeartbeat's mtime is the daemon's last sign of life, renewed
	// every HeartbeatEvery: where a gap begins if it is killed.
	StateHeartbeat = "heartbeat"
	// StateExit is written by Supervise when the daemon died: ExitRecord.
	StateExit = "exit.json"
)

// HeartbeatEvery is how often the daemon renews StateHeartbeat (and
// tells systemd's watchdog it lives): a gap's start is known to within that.
const HeartbeatEvery = 100 * time.Millisecond

// WatchdogTimeout is how long a ready daemon may go without a heartbeat
// before its supervisor (Supervise, or systemd's WatchdogSec) takes it
// for frozen, kills it and starts it again: a step with sudo that stops
// the agent with SIGSTOP, then deletes the table, gets that long.
const WatchdogTimeout = 5 * time.Second

// ExitRecord is how a supervised daemon ended (StateExit).
type ExitRecord struct {
	Pid    int       `json:"pid"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"` // "killed by signal 9", "exit status 2"
}

// SnapshotResult is the daemon's answer to a snapshot request, in
// StateSnapshot: the journal's first Bytes bytes end with the Snapshot
// record written for it.
type SnapshotResult struct {
	Bytes int64     `json:"bytes"`
	Time  time.Time `json:"time"`
	Error string    `json:"error,omitempty"`
}

// Readiness is StateReady's content.
type Readiness struct {
	Pid  int       `json:"pid"`
	Time time.Time `json:"time"`
	// Errors are what the agent noted as errors while it started (e.g.
	// a path to dockerd it cannot close on this kernel): the step that
	// started it shows them at once, not only the report at the end.
	Errors []string `json:"errors,omitempty"`
}

// ReadReadiness reads the StateReady file of the daemon in dir.
func ReadReadiness(dir string) (*Readiness, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateReady))
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	var r Readiness
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("agent: %s: %w", StateReady, err)
	}
	return &r, nil
}

// drainTimeout bounds the wait for docker connections after a stop.
const drainTimeout = 30 * time.Second

// ErrNotRunning is returned by StopDaemon when no daemon is recorded in the state dir.
var ErrNotRunning = errors.New("agent: daemon not running")

// ReadDaemonConfig reads and checks a DaemonConfig file.
func ReadDaemonConfig(path string) (*DaemonConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent: read config: %w", err)
	}
	var c DaemonConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("agent: parse config %s: %w", path, err)
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return nil, fmt.Errorf("agent: config %s: state_dir %q must be an absolute path", path, c.StateDir)
	}
	if err := c.Settings.Check(); err != nil {
		return nil, fmt.Errorf("agent: config %s: %w", path, err)
	}
	return &c, nil
}

// RunDaemon runs the agent as a long-lived process: it records its pid,
// starts the agent, marks the state dir ready (or failed, with the error),
// and on a stop request (StopDaemon: StateStopRequest, then SIGTERM) stops
// the agent, which flushes the journal, then marks it stopped. A stop
// signal without the request is reported as tampering and changes nothing:
// a step with sudo cannot end enforcement by `kill` or `systemctl stop`
// unnoticed, and the table stays in the kernel even if it is then killed.
//
// A daemon that finds the pid file of one that died (killed during the
// job; its supervisor started this one) takes over: one journal, appended,
// the table replaced without refusing what it allowed, and the time
// without an agent recorded as a Gap.
//
// It returns the start error, or nil once stopped as requested (the stop's
// own error is in StateStopped and the journal): a supervisor restarts a
// daemon that exits with an error.
func RunDaemon(ctx context.Context, cfg *DaemonConfig, log *slog.Logger) error {
	dir := cfg.StateDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	resume, prev, err := deadPredecessor(dir)
	if err != nil {
		return err
	}
	// Who signals this daemon, recorded in the kernel and kept past its
	// death for the successor a supervisor starts.
	kw, kerr := openKillwatch(dir)
	if kw != nil {
		defer kw.Close()
		// The predecessor's record first: nothing below may lose it.
		if resume != nil && prev > 0 {
			nameKiller(kw, resume, prev, os.Getppid(), log)
		}
		if err := kw.Add(os.Getpid()); err != nil {
			kw, kerr = nil, err // (the deferred Close releases it)
		}
	}
	if kw == nil {
		log.Warn("agent: who signals the agent is not recorded", "err", kerr)
		if resume != nil {
			resume.Reason += "; who sent the signal is not known (" + kerr.Error() + ")"
		}
	}
	for _, f := range []string{StateReady, StateFailed, StateStopped, StateSnapshot, StateStopRequest, StateExit} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	if err := writeAtomic(filepath.Join(dir, StatePid), []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		return err
	}
	// For the whole life of the process, start and stop included: only a
	// frozen (or dead) process misses a beat.
	beat := filepath.Join(dir, StateHeartbeat)
	if err := writeAtomic(beat, nil); err != nil {
		return err
	}
	defer heartbeat(beat, log)()
	// Before ready: SIGUSR1's default action would end the agent. The stop
	// signals are ours to judge, so the agent's lifetime is not ctx's.
	snap := make(chan os.Signal, 1)
	signal.Notify(snap, syscall.SIGUSR1)
	defer signal.Stop(snap)
	stop := make(chan os.Signal, 4)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(stop)
	lift := LimitStartMemory()
	ag, err := daemonAgent(cfg, resume, log)
	if err == nil {
		err = ag.Start(context.WithoutCancel(ctx))
	}
	lift()
	if err != nil {
		_ = writeAtomic(filepath.Join(dir, StateFailed), []byte(err.Error()+"\n"))
		return err
	}
	ready, _ := json.Marshal(Readiness{Pid: os.Getpid(), Time: time.Now().UTC(), Errors: ag.StartErrors()})
	if err := writeAtomic(filepath.Join(dir, StateReady), append(ready, '\n')); err != nil {
		_ = ag.Stop()
		return err
	}
	for done := false; !done; {
		select {
		case sig := <-stop:
			if _, err := os.Stat(filepath.Join(dir, StateStopRequest)); err == nil {
				done = true
				break
			}
			from := ""
			if kw != nil {
				if s, ok := sig.(syscall.Signal); ok {
					if k, found, err := kw.TakeSignal(os.Getpid(), s); err != nil {
						from = " (who sent it is not known: " + err.Error() + ")"
					} else if found {
						_, from = sender(k)
						from = " (" + from + ")"
					}
				}
			}
			ag.Alert("agent", fmt.Sprintf("the agent got %v%s without the post step's stop request (systemctl stop, or a kill by a step): it goes on enforcing", sig, from))
			log.Warn("agent: stop signal without a stop request; ignored", "signal", sig)
		case <-snap:
			answerSnapshot(dir, ag, log)
		}
	}
	err = ag.Stop()
	msg := "ok\n"
	if err != nil {
		msg = err.Error() + "\n"
		log.Error("agent: stop", "err", err)
	}
	_ = writeAtomic(filepath.Join(dir, StateStopped), []byte(msg))
	if kw != nil {
		_ = kw.Remove() // a clean stop: nobody to tell
	}
	_ = os.Remove(filepath.Join(dir, StatePid))
	// The post step that stopped us may still be talking to dockerd
	// through the docker gate: let it finish.
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if derr := ag.Drain(dctx); derr != nil {
		log.Warn("agent: drain docker connections", "err", derr)
	}
	return nil
}

// deadPredecessor looks at the pid file a daemon before us left: none, or
// one that stopped cleanly, is a fresh start (nil); a live daemon is an
// error; one that died during the job gives the gap this daemon resumes
// after, From its last heartbeat and with the supervisor's word on how it
// ended.
func deadPredecessor(dir string) (*event.Gap, int, error) {
	b, err := os.ReadFile(filepath.Join(dir, StatePid))
	if err != nil {
		return nil, 0, nil
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid > 0 && pid != os.Getpid() && isDaemon(pid) {
		return nil, 0, fmt.Errorf("agent: a daemon already runs (pid %d)", pid)
	}
	if _, err := os.Stat(filepath.Join(dir, StateStopped)); err == nil {
		return nil, 0, nil
	}
	if _, err := os.Stat(filepath.Join(dir, StateJournal)); err != nil {
		return nil, 0, nil // it never got as far as a journal: nothing to resume
	}
	gap := &event.Gap{Reason: "unknown: no supervisor saw it end (it was killed with its supervisor?)"}
	if st, err := os.Stat(filepath.Join(dir, StateHeartbeat)); err == nil {
		gap.From = st.ModTime()
	} else if st, err := os.Stat(filepath.Join(dir, StateJournal)); err == nil {
		gap.From = st.ModTime() // an agent older than the heartbeat
	}
	if b, err := os.ReadFile(filepath.Join(dir, StateExit)); err == nil {
		var x ExitRecord
		if json.Unmarshal(b, &x) == nil && x.Pid == pid && x.Reason != "" {
			gap.Reason = x.Reason
		}
	}
	return gap, pid, nil
}

// answerSnapshot writes StateSnapshot for one snapshot request.
func answerSnapshot(dir string, ag *Agent, log *slog.Logger) {
	size, err := ag.Snapshot()
	res := SnapshotResult{Bytes: size, Time: time.Now().UTC()}
	if err != nil {
		res.Error = err.Error()
	}
	b, _ := json.Marshal(res)
	if err := writeAtomic(filepath.Join(dir, StateSnapshot), append(b, '\n')); err != nil {
		log.Warn("agent: snapshot", "err", err)
	}
}

func daemonAgent(cfg *DaemonConfig, resume *event.Gap, log *slog.Logger) (*Agent, error) {
	s := &cfg.Settings
	ups := s.Upstreams
	if len(ups) == 0 {
		var err error
		ups, err = resolver.SystemUpstreams(resolver.ResolvConf, resolver.ResolvedUpstreamsConf)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	pol := policy.New(s.Mode, s.Endpoints, !s.NoRunnerEndpoints)
	s.Endpoints = nil // held once, by pol (100,000 entries are 6 MB)
	return New(Config{
		Policy:         pol,
		Upstreams:      ups,
		ClientServers:  resolver.ParseResolvConfFile(resolver.ResolvConf),
		JournalPath:    filepath.Join(cfg.StateDir, StateJournal),
		Workspace:      cfg.Workspace,
		FileMonitoring: s.FileMonitoring && cfg.Workspace != "",
		// The Action starts before actions/checkout: its writes to the
		// still empty workspace build the baseline (isCheckout).
		DisableContainers: s.DisableContainers,
		Docker: dockergate.Config{Socket: cfg.DockerSocket, CLIs: cfg.DockerCLIs,
			AllowFor: s.AllowDockerFor, TrustedImage: cfg.DockerTrustedImage},
		ActionContainer: cfg.ActionContainer,
		SudoUser:        cfg.SudoUser,
		// The VM's /etc (the daemon runs chrooted to the VM's root).
		WatchEtc: "/etc",
		Resume:   resume,
		Log:      log,
	})
}

// DaemonPid returns the pid recorded in dir if that process is alive and
// is a harden-runner agent, else 0.
func DaemonPid(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, StatePid))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if !isDaemon(pid) {
		return 0
	}
	return pid
}

// isDaemon reports whether pid runs `harden-runner agent` (a zombie has no
// command line: it is not running). It does not need the pid file, which
// the daemon may remove as it stops.
func isDaemon(pid int) bool {
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmd), "\x00agent\x00")
}

// WaitReady waits until the daemon in dir enforces (nil), reports a start
// error, exits, or ctx ends. pidAlive tells whether the process that is
// starting is still there; nil means "use DaemonPid".
func WaitReady(ctx context.Context, dir string, pidAlive func() bool) error {
	if pidAlive == nil {
		pidAlive = func() bool { return DaemonPid(dir) != 0 }
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := os.Stat(filepath.Join(dir, StateReady)); err == nil {
			return nil
		}
		if b, err := os.ReadFile(filepath.Join(dir, StateFailed)); err == nil {
			return fmt.Errorf("agent: start failed: %s", strings.TrimSpace(string(b)))
		}
		if !pidAlive() {
			// One last look: it may have written a marker and exited.
			if _, err := os.Stat(filepath.Join(dir, StateReady)); err == nil {
				return errors.New("agent: daemon exited after it was ready")
			}
			if b, err := os.ReadFile(filepath.Join(dir, StateFailed)); err == nil {
				return fmt.Errorf("agent: start failed: %s", strings.TrimSpace(string(b)))
			}
			return errors.New("agent: daemon exited before it was ready")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent: waiting for the daemon: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Ready reports whether the daemon in dir is alive and enforcing.
func Ready(dir string) bool {
	if DaemonPid(dir) == 0 {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, StateReady))
	return err == nil
}

// SnapshotDaemon asks the daemon recorded in dir for a journal snapshot
// (SIGUSR1) and waits for its answer. The daemon goes on enforcing.
func SnapshotDaemon(ctx context.Context, dir string) (*SnapshotResult, error) {
	pid := DaemonPid(dir)
	if pid == 0 {
		return nil, ErrNotRunning
	}
	path := filepath.Join(dir, StateSnapshot)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("agent: snapshot: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return nil, fmt.Errorf("agent: signal daemon %d: %w", pid, err)
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			var res SnapshotResult
			if err := json.Unmarshal(b, &res); err != nil {
				return nil, fmt.Errorf("agent: snapshot: unreadable answer %q: %w", b, err)
			}
			if res.Error != "" {
				return nil, fmt.Errorf("agent: snapshot: %s", res.Error)
			}
			return &res, nil
		}
		if DaemonPid(dir) != pid {
			return nil, fmt.Errorf("agent: daemon %d exited before it answered the snapshot request", pid)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("agent: waiting for daemon %d's snapshot: %w", pid, ctx.Err())
		case <-t.C:
		}
	}
}

// StopDaemon sends SIGTERM to the daemon recorded in dir and waits until it
// has written its stopped marker (the journal is then complete) or ctx
// ends. It returns ErrNotRunning when there is no live daemon, and the
// daemon's own stop error if it had one.
func StopDaemon(ctx context.Context, dir string) error {
	pid := DaemonPid(dir)
	if pid == 0 {
		return ErrNotRunning
	}
	req, _ := json.Marshal(map[string]any{"pid": os.Getpid(), "time": time.Now().UTC()})
	if err := writeAtomic(filepath.Join(dir, StateStopRequest), append(req, '\n')); err != nil {
		return fmt.Errorf("agent: stop daemon %d: %w", pid, err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("agent: signal daemon %d: %w", pid, err)
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(filepath.Join(dir, StateStopped)); err == nil {
			if msg := strings.TrimSpace(string(b)); msg != "ok" {
				return fmt.Errorf("agent: daemon stopped with: %s", msg)
			}
			// The mark comes with the final flush, just before the daemon
			// exits: a caller that next checks the machine (no table, no
			// agent) must find it gone. Its exit is bounded by what is
			// left of its shutdown, so wait a little, not forever.
			for end := time.Now().Add(5 * time.Second); isDaemon(pid) && time.Now().Before(end) && ctx.Err() == nil; {
				time.Sleep(5 * time.Millisecond)
			}
			return nil
		}
		if DaemonPid(dir) != pid { // gone, or a zombie nobody reaped yet
			if _, err := os.Stat(filepath.Join(dir, StateStopped)); err == nil {
				continue
			}
			return fmt.Errorf("agent: daemon %d exited without marking a clean stop", pid)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent: waiting for daemon %d to stop: %w", pid, ctx.Err())
		case <-t.C:
		}
	}
}

func writeAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("agent: write %s: %w", name, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("agent: write %s: %w", name, err)
	}
	return nil
}

// notifier tells systemd's watchdog (WatchdogSec, NOTIFY_SOCKET) that the
// daemon lives; a nil one does nothing (no systemd, or no watchdog).
type notifier struct{ c *net.UnixConn }

// systemdWatchdog connects to NOTIFY_SOCKET when systemd set one.
func systemdWatchdog(log *slog.Logger) *notifier {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:] // abstract
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		log.Warn("agent: systemd watchdog", "err", err)
		return nil
	}
	return &notifier{c: c}
}

func (n *notifier) alive() {
	if n != nil {
		_, _ = n.c.Write([]byte("WATCHDOG=1"))
	}
}

func (n *notifier) close() {
	if n != nil {
		n.c.Close()
	}
}

// heartbeat renews the heartbeat file's mtime and pings systemd's watchdog
// every HeartbeatEvery until the returned func is called.
func heartbeat(path string, log *slog.Logger) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		watchdog := systemdWatchdog(log)
		defer watchdog.close()
		t := time.NewTicker(HeartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				_ = os.Chtimes(path, now, now)
				watchdog.alive()
			}
		}
	}()
	return func() { close(done); <-exited }
}
