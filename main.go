// Command harden-runner hardens a GitHub Actions runner for the rest of its
// job: egress control with nftables and a policy DNS resolver, source-tamper
// detection, and a report. One static binary with four subcommands:
//
//	harden-runner run [flags] -- COMMAND [ARGS...]   run COMMAND under the agent, then report
//	harden-runner agent ...                          the host daemon the Action starts
//	harden-runner main | post                        the Action's steps
//
// main.go is flags and wiring only; the work is in the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	args := actionArgs(os.Args)
	// HARDEN_RUNNER_CPUPROFILE=FILE profiles the whole command, and
	// HARDEN_RUNNER_MEMPROFILE=FILE writes an allocation profile at exit
	// (bench/): for run only. The Action's steps run as root with the VM's
	// files in reach, and a step can set the post step's environment
	// (GITHUB_ENV): a path from there would be a file root truncates.
	profile := len(args) > 0 && args[0] == "run"
	if path := os.Getenv("HARDEN_RUNNER_CPUPROFILE"); profile && path != "" {
		if f, err := os.Create(path); err == nil {
			_ = pprof.StartCPUProfile(f)
		}
	}
	code, err := dispatch(ctx, args, log)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "harden-runner:", err)
		if code == 0 {
			code = 1
		}
	}
	pprof.StopCPUProfile()
	if path := os.Getenv("HARDEN_RUNNER_MEMPROFILE"); profile && path != "" {
		if f, err := os.Create(path); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			_ = f.Close()
		}
	}
	os.Exit(code)
}

func logLevel() slog.Level {
	if os.Getenv("HARDEN_RUNNER_DEBUG") != "" || os.Getenv("RUNNER_DEBUG") == "1" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

const usage = `usage: harden-runner run [flags] -- COMMAND [ARGS...]
       harden-runner run -h     (flags)
       harden-runner report --journal FILE [--report-dir DIR] [--workspace DIR]`

// dispatch runs one subcommand and returns the process exit code.
func dispatch(ctx context.Context, args []string, log *slog.Logger) (int, error) {
	if len(args) == 0 {
		return 2, errors.New(usage)
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], log)
	case "main":
		return mainCmd(ctx, log)
	case "post":
		return postCmd(ctx, log)
	case "agent":
		return agentCmd(ctx, args[1:], log)
	case "supervise":
		return superviseCmd(args[1:], log)
	case "agent-exited":
		return agentExitedCmd(args[1:])
	case "install":
		return installCmd(ctx, args[1:], log)
	case "host-stop":
		return hostStopCmd(ctx, args[1:], log)
	case "report":
		return reportCmd(args[1:])
	case "-h", "--help", "help":
		fmt.Println(usage)
		return 0, nil
	}
	return 2, fmt.Errorf("unknown subcommand %q\n%s", args[0], usage)
}
