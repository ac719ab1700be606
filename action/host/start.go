package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/harden-runner/harden-runner/agent"
)

// Starting the daemon: a systemd unit or a detached process in PID 1's cgroups.

func pid1IsSystemd(root string) bool {
	comm, err := os.ReadFile("/proc/1/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "systemd" {
		return false
	}
	_, err = os.Stat(filepath.Join(root, "usr/bin/systemd-run"))
	return err == nil
}

// startSystemd starts the daemon as a transient unit, so that it is the
// VM's own service: neither the helper's nor any container's end takes it down.
func startSystemd(ctx context.Context, cfg Config, bin, conf, state string) error {
	// A failed unit of an earlier try keeps the name.
	reset := exec.Command("/usr/bin/systemctl", "reset-failed", Unit)
	reset.SysProcAttr = &syscall.SysProcAttr{Chroot: cfg.Root}
	reset.Dir = "/"
	_ = reset.Run()
	// Restarted whenever it dies, except after the clean stop it asked for
	// (exit status 0): a restarted daemon takes over the table and the
	// journal (agent.RunDaemon). At most 10 restarts a minute.
	delay := cfg.Daemon.RestartDelay
	if delay <= 0 {
		delay = agent.DefaultRestartDelay
	}
	cmd := exec.CommandContext(ctx, "/usr/bin/systemd-run", "--unit="+Unit, "--collect", "--quiet",
		"--description=harden-runner agent", "-p", "KillMode=mixed", "-p", "TimeoutStopSec=30",
		"-p", "Restart=always", "-p", fmt.Sprintf("RestartSec=%dms", delay.Milliseconds()),
		"-p", "RestartPreventExitStatus=0", "-p", "StartLimitIntervalSec=60", "-p", "StartLimitBurst=10",
		// Frozen (SIGSTOP) is dead too: no heartbeat for WatchdogTimeout.
		"-p", "NotifyAccess=main", "-p", fmt.Sprintf("WatchdogSec=%dms", agent.WatchdogTimeout.Milliseconds()),
		"-p", "WatchdogSignal=SIGKILL",
		// How it ended, for the gap the restarted daemon reports.
		"-p", "ExecStopPost=-"+bin+" agent-exited --config "+conf,
		bin, "agent", "--config", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: cfg.Root}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("host: systemd-run: %w: %s", err, strings.TrimSpace(string(out)))
	}
	t0 := time.Now()
	return agent.WaitReady(ctx, state, func() bool {
		if _, err := os.Stat(filepath.Join(state, agent.StatePid)); err != nil {
			return time.Since(t0) < 10*time.Second // not written yet
		}
		return agent.DaemonPid(state) != 0
	})
}

// startDetached starts the daemon under our own supervisor in a new
// session, chrooted to the VM's root, and moves both into PID 1's cgroups
// so that the helper container's end (which kills its cgroup) does not
// take them along.
func startDetached(ctx context.Context, cfg Config, bin, conf, state string) ([]string, error) {
	logf, err := os.OpenFile(filepath.Join(cfg.Root, cfg.Dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("host: agent log: %w", err)
	}
	defer logf.Close()
	// Our own supervisor (agent.Supervise) in place of systemd's Restart=.
	cmd := exec.Command(bin, "supervise", "--config", conf)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: cfg.Root, Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("host: start agent: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	var warn []string
	if err := joinInitCgroups(cfg.Root, cmd.Process.Pid); err != nil {
		warn = append(warn, err.Error())
	}
	err = agent.WaitReady(ctx, state, func() bool {
		select {
		case <-exited:
			return false
		default:
			return true
		}
	})
	if err == nil {
		// The daemon may have been forked before its supervisor moved.
		if pid := agent.DaemonPid(state); pid != 0 {
			if err := joinInitCgroups(cfg.Root, pid); err != nil {
				warn = append(warn, err.Error())
			}
		}
	}
	if err != nil {
		_ = cmd.Process.Kill()
		if pid := agent.DaemonPid(state); pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		tail, _ := os.ReadFile(filepath.Join(cfg.Root, cfg.Dir, "agent.log"))
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return warn, fmt.Errorf("host: %w\n%s", err, strings.TrimSpace(string(tail)))
	}
	return warn, nil
}

// joinInitCgroups moves pid into the cgroups PID 1 is in (every v1
// hierarchy and the v2 one). Needs the VM's cgroup namespace (the helper
// runs with --cgroupns=host).
func joinInitCgroups(root string, pid int) error {
	b, err := os.ReadFile("/proc/1/cgroup")
	if err != nil {
		return fmt.Errorf("host: read PID 1's cgroups: %w", err)
	}
	var errs []error
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dirs []string
		switch ctl := parts[1]; {
		case ctl == "":
			dirs = []string{"sys/fs/cgroup", "sys/fs/cgroup/unified"}
		case strings.HasPrefix(ctl, "name="):
			dirs = []string{"sys/fs/cgroup/" + strings.TrimPrefix(ctl, "name=")}
		default:
			dirs = []string{"sys/fs/cgroup/" + ctl}
			for _, c := range strings.Split(ctl, ",") {
				dirs = append(dirs, "sys/fs/cgroup/"+c)
			}
		}
		done := false
		for _, d := range dirs {
			procs := filepath.Join(root, d, parts[2], "cgroup.procs")
			if _, err := os.Stat(procs); err != nil {
				continue
			}
			if err := os.WriteFile(procs, []byte(strconv.Itoa(pid)), 0); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", procs, err))
			}
			done = true
			break
		}
		if !done && parts[1] != "" {
			errs = append(errs, fmt.Errorf("no cgroup directory for %q", line))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("host: the agent may share the helper container's fate: join PID 1's cgroups: %w", errors.Join(errs...))
	}
	return nil
}
