package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/harden-runner/harden-runner/action"
	"github.com/harden-runner/harden-runner/action/docker"
	"github.com/harden-runner/harden-runner/action/host"
	"github.com/harden-runner/harden-runner/agent"
	"github.com/harden-runner/harden-runner/internal/escape"
)

// actionArgs returns the subcommand line: the image's stage entrypoints
// (/main, /post: links to /harden-runner, see dist/) are dispatched by
// their name, since the runner gives every stage the same args.
func actionArgs(argv []string) []string {
	switch filepath.Base(argv[0]) {
	case "main", "pre":
		return append([]string{"main"}, argv[1:]...)
	case "post":
		return append([]string{"post"}, argv[1:]...)
	}
	return argv[1:]
}

// actionEnv builds the step's Env and its Host from the container action's
// environment: the docker socket, the action's own container (for its
// image and the host paths of its mounts).
//
// The agent's directory is HARDEN_RUNNER_DIR (tests) in the main step; the
// post step takes the one the main step saved in its state (Env.HostDir).
func actionEnv(ctx context.Context, log *slog.Logger, post bool) (*action.Env, *action.DockerHost, error) {
	cli := docker.New(docker.DefaultSocket)
	self, err := action.SelfContainer(ctx, cli)
	if err != nil {
		return nil, nil, fmt.Errorf("is /var/run/docker.sock mounted? %w", err)
	}
	ws := os.Getenv("GITHUB_WORKSPACE")
	home := os.Getenv("HOME")
	if home == "" || home == "/" {
		home = "/github/home"
	}
	reportDir := filepath.Join(home, "harden-runner-report")
	env := &action.Env{
		Getenv: os.Getenv, Stdout: os.Stdout, Log: log,
		Workspace: ws, HostWorkspace: self.HostPath(ws),
		ReportDir: reportDir, HostReportDir: self.HostPath(reportDir),
	}
	if env.HostReportDir == "" {
		env.HostReportDir = reportDir
	}
	if st, err := os.Stat(ws); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 {
			env.SudoUser = "#" + strconv.Itoa(int(sys.Uid))
		}
	}
	env.HostDockerSocket = self.HostPath(docker.DefaultSocket)
	env.DockerImage = self.Image
	env.DockerName = strings.TrimPrefix(self.Name, "/")
	env.HostDir = os.Getenv("HARDEN_RUNNER_DIR")
	if post {
		env.HostDir = os.Getenv("STATE_" + action.StateDir)
	}
	h := &action.DockerHost{Docker: cli, Image: self.Image, Dir: env.HostDir}
	return env, h, nil
}

// mainCmd is the Action's pre and main step.
func mainCmd(ctx context.Context, log *slog.Logger) (int, error) {
	if err := action.CheckArch(os.Getenv("RUNNER_ARCH"), runtime.GOARCH); err != nil {
		fmt.Printf("::error title=harden-runner::%s\n", escapeCmd(err.Error()))
		return 1, err
	}
	if os.Getenv("STATE_harden_runner_started") == "true" {
		// Started by the pre step: no docker needed to know that.
		return exitCode(action.Main(ctx, &action.Env{Getenv: os.Getenv, Stdout: os.Stdout, Log: log}, nil))
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	env, h, err := actionEnv(ctx, log, false)
	if err != nil {
		fmt.Printf("::error title=harden-runner::%s\n", escapeCmd(err.Error()))
		return 1, err
	}
	return exitCode(action.Main(ctx, env, h))
}

// postCmd is the Action's post step.
func postCmd(ctx context.Context, log *slog.Logger) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	env, h, err := actionEnv(ctx, log, true)
	if err != nil {
		fmt.Printf("::error title=harden-runner::%s\n", escapeCmd(err.Error()))
		return 1, err
	}
	return exitCode(action.Post(ctx, env, h))
}

func exitCode(err error) (int, error) {
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// escapeCmd escapes the message of a workflow command.
func escapeCmd(s string) string { return escape.CommandData(s) }

// agentCmd is the host daemon: `harden-runner agent --config FILE`.
func agentCmd(ctx context.Context, args []string, log *slog.Logger) (int, error) {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	conf := fs.String("config", "", "daemon config (JSON, see agent.DaemonConfig)")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	if *conf == "" {
		return 2, errors.New("agent: --config is required")
	}
	cfg, err := agent.ReadDaemonConfig(*conf)
	if err != nil {
		return 1, err
	}
	return exitCode(agent.RunDaemon(ctx, cfg, log))
}

// superviseCmd is the detached mode's supervisor: `harden-runner
// supervise --config FILE` runs `harden-runner agent --config FILE` and
// starts it again when it dies (agent.Supervise). Stop signals do not end
// it: the daemon's own clean stop does.
func superviseCmd(args []string, log *slog.Logger) (int, error) {
	fs := flag.NewFlagSet("supervise", flag.ContinueOnError)
	conf := fs.String("config", "", "daemon config (JSON, see agent.DaemonConfig)")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	if *conf == "" {
		return 2, errors.New("supervise: --config is required")
	}
	cfg, err := agent.ReadDaemonConfig(*conf)
	if err != nil {
		return 1, err
	}
	self, err := os.Executable()
	if err != nil {
		return 1, fmt.Errorf("supervise: own binary: %w", err)
	}
	return exitCode(agent.Supervise(context.Background(), agent.SuperviseConfig{
		Argv: []string{self, "agent", "--config", *conf}, StateDir: cfg.StateDir, Delay: cfg.RestartDelay, Log: log}))
}

// agentExitedCmd is the systemd unit's ExecStopPost: it records how the
// daemon ended (systemd's SERVICE_RESULT, EXIT_CODE, EXIT_STATUS) for
// the gap its restarted successor reports.
func agentExitedCmd(args []string) (int, error) {
	fs := flag.NewFlagSet("agent-exited", flag.ContinueOnError)
	conf := fs.String("config", "", "daemon config (JSON, see agent.DaemonConfig)")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	cfg, err := agent.ReadDaemonConfig(*conf)
	if err != nil {
		return 1, err
	}
	return exitCode(agent.RecordExit(cfg.StateDir, agent.SystemdExitReason(os.Getenv("SERVICE_RESULT"),
		os.Getenv("EXIT_CODE"), os.Getenv("EXIT_STATUS"))))
}

// installCmd runs in the helper container: install and start the agent on
// the VM, print the result as JSON.
func installCmd(ctx context.Context, args []string, log *slog.Logger) (int, error) {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	conf := fs.String("config-json", "", "install request (JSON, see host.Config)")
	confFile := fs.String("config-file", "", "file holding the install request (for requests over the 128 KiB an argument holds)")
	noSystemd := fs.Bool("no-systemd", false, "start a detached process even if PID 1 is systemd")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	src, raw := "--config-json", []byte(*conf)
	if *confFile != "" {
		b, err := os.ReadFile(*confFile)
		if err != nil {
			return 2, fmt.Errorf("install: --config-file: %w", err)
		}
		src, raw = "--config-file "+*confFile, b
	}
	var cfg host.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return 2, fmt.Errorf("install: %s: %w", src, err)
	}
	cfg.NoSystemd = cfg.NoSystemd || *noSystemd
	res, err := host.Install(ctx, cfg, log)
	if err != nil {
		return 1, err
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return 0, nil
}

// hostStopCmd runs in the helper container: stop the agent on the VM
// (or, with --snapshot, take a snapshot of its journal and leave it
// enforcing); with --stream, write the journal as an export stream to
// stdout, which the post step reads from its attach to this container.
func hostStopCmd(ctx context.Context, args []string, _ *slog.Logger) (int, error) {
	fs := flag.NewFlagSet("host-stop", flag.ContinueOnError)
	dir := fs.String("dir", host.DefaultDir, "host directory of the agent")
	root := fs.String("root", host.DefaultRoot, "the VM's root directory")
	stream := fs.Bool("stream", false, "write the journal to stdout as an export stream (see host.ReadExport)")
	snapshot := fs.Bool("snapshot", false, "leave the agent enforcing; export its journal up to a snapshot")
	_ = fs.Bool("no-systemd", false, "ignored")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var snap *agent.SnapshotResult
	var err error
	if *snapshot {
		snap, err = host.Snapshot(ctx, *root, *dir)
	} else {
		err = host.Stop(ctx, *root, *dir)
	}
	if *stream && !errors.Is(err, host.ErrWrongHost) {
		// The stop's error travels in the stream's trailer; only a failed
		// export fails the helper.
		return exitCode(host.WriteExport(os.Stdout, *root, *dir, snap, err))
	}
	return exitCode(err)
}
