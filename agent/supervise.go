package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SuperviseConfig is what Supervise runs.
type SuperviseConfig struct {
	// Argv is the daemon's command line (our own binary, "agent",
	// "--config", FILE); StateDir its DaemonConfig.StateDir.
	Argv     []string
	StateDir string
	// Delay is the wait before a restart; default DefaultRestartDelay.
	Delay time.Duration
	// MaxRestarts bounds the restarts within a minute (a daemon that
	// cannot start again is not retried forever); default 10.
	MaxRestarts int
	// Watchdog is how old the heartbeat of a daemon that is ready may get
	// before the supervisor takes it for frozen (SIGSTOP), kills it and
	// starts it again; default WatchdogTimeout.
	Watchdog time.Duration
	Log      *slog.Logger
}

// Supervise is the detached mode's stand-in for systemd's Restart=: it
// runs the daemon, and whenever it dies without a clean stop after it had
// enforced (killed by a step with sudo, or crashed) it records how in
// StateExit and starts it again, which takes over the table and the
// journal (RunDaemon). It returns when the daemon stopped as asked (nil),
// could not start (its error), or died too often. Stop signals sent to
// the supervisor itself are ignored: only the daemon's stop request ends
// it. Killing the supervisor leaves the daemon running, unsupervised.
func Supervise(ctx context.Context, cfg SuperviseConfig) error {
	if len(cfg.Argv) == 0 || cfg.StateDir == "" {
		return errors.New("agent: supervise: no daemon command or state dir")
	}
	if cfg.Delay <= 0 {
		cfg.Delay = DefaultRestartDelay
	}
	if cfg.MaxRestarts <= 0 {
		cfg.MaxRestarts = 10
	}
	if cfg.Watchdog <= 0 {
		cfg.Watchdog = WatchdogTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			cfg.Log.Warn("agent: supervise: stop signal ignored (the daemon's stop request ends supervision)", "signal", s)
		}
	}()
	var restarts []time.Time
	for first := true; ; first = false {
		cmd := exec.Command(cfg.Argv[0], cfg.Argv[1:]...)
		cmd.Stdout, cmd.Stderr, cmd.Dir = os.Stdout, os.Stderr, "/"
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("agent: supervise: start the daemon: %w", err)
		}
		frozen, err := watch(cmd, cfg.StateDir, cfg.Watchdog)
		if err == nil {
			return nil // stopped as asked
		}
		if _, serr := os.Stat(filepath.Join(cfg.StateDir, StateStopped)); serr == nil {
			return nil
		}
		if _, rerr := os.Stat(filepath.Join(cfg.StateDir, StateReady)); rerr != nil && first {
			return fmt.Errorf("agent: supervise: the daemon did not start: %w", err)
		}
		now := time.Now()
		x := ExitRecord{Pid: cmd.Process.Pid, Time: now.UTC(), Reason: exitReason(cmd.ProcessState)}
		if frozen != "" {
			x.Reason = frozen
		}
		if werr := writeExit(cfg.StateDir, x); werr != nil {
			cfg.Log.Warn("agent: supervise", "err", werr)
		}
		cfg.Log.Warn("agent: supervise: the daemon died; restarting it", "pid", x.Pid, "how", x.Reason)
		for len(restarts) > 0 && now.Sub(restarts[0]) > time.Minute {
			restarts = restarts[1:]
		}
		if len(restarts) >= cfg.MaxRestarts {
			return fmt.Errorf("agent: supervise: the daemon died %d times within a minute; last: %s", len(restarts)+1, x.Reason)
		}
		restarts = append(restarts, now)
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent: supervise: %w", ctx.Err())
		case <-time.After(cfg.Delay):
		}
	}
}

// watch waits for the daemon cmd runs to exit; if, once ready, its
// heartbeat gets older than watchdog (it was frozen: SIGSTOP), it kills
// it, and says so.
func watch(cmd *exec.Cmd, dir string, watchdog time.Duration) (frozen string, err error) {
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t := time.NewTicker(watchdog / 4)
	defer t.Stop()
	for {
		select {
		case err := <-exited:
			return frozen, err
		case <-t.C:
			if age := heartbeatAge(dir, cmd.Process.Pid); frozen == "" && age > watchdog {
				frozen = fmt.Sprintf("frozen (SIGSTOP?): its heartbeat stopped for %.1f s; killed by its supervisor", age.Seconds())
				_ = cmd.Process.Kill()
			}
		}
	}
}

// heartbeatAge is how old the heartbeat of the daemon pid is, once it
// marked the state dir ready; 0 before.
func heartbeatAge(dir string, pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join(dir, StateReady))
	if err != nil {
		return 0
	}
	var r struct {
		Pid int `json:"pid"`
	}
	if json.Unmarshal(b, &r) != nil || r.Pid != pid {
		return 0
	}
	st, err := os.Stat(filepath.Join(dir, StateHeartbeat))
	if err != nil {
		return 0
	}
	return time.Since(st.ModTime())
}

// exitReason says how a process ended, for a Gap.
func exitReason(ps *os.ProcessState) string {
	if ps == nil {
		return "unknown"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ps.ExitCode())
}

func writeExit(dir string, x ExitRecord) error {
	b, _ := json.Marshal(x)
	return writeAtomic(filepath.Join(dir, StateExit), append(b, '\n'))
}

// RecordExit writes StateExit for the daemon whose pid file is in dir,
// when it did not stop cleanly: how it ended (systemd's word, see
// SystemdExitReason), for the gap its restarted successor reports.
func RecordExit(dir, reason string) error {
	if _, err := os.Stat(filepath.Join(dir, StateStopped)); err == nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, StatePid))
	if err != nil {
		return nil // a clean stop removed it, or it never started
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return writeExit(dir, ExitRecord{Pid: pid, Time: time.Now().UTC(), Reason: reason})
}

// SystemdExitReason words systemd's SERVICE_RESULT, EXIT_CODE and
// EXIT_STATUS (ExecStopPost's environment) as exitReason does.
func SystemdExitReason(result, code, status string) string {
	switch {
	case result == "watchdog":
		return "frozen (SIGSTOP?): no heartbeat for systemd's watchdog; killed by systemd"
	case code == "killed" || code == "dumped":
		return "killed by signal " + status + " (systemd restarted it)"
	case code == "exited":
		return "exit status " + status + " (systemd restarted it)"
	}
	return fmt.Sprintf("systemd: result %q, code %q, status %q", result, code, status)
}
