package action

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/harden-runner/harden-runner/action/docker"
	"github.com/harden-runner/harden-runner/action/host"
	"github.com/harden-runner/harden-runner/agent"
)

// HelperCaps are the capabilities the helper container (and the detached
// agent it starts) gets: nftables, NFLOG/NFQUEUE and SO_MARK; fanotify and
// cgroup moves; reading other processes' /proc entries and PID 1's root.
// Not --privileged.
var HelperCaps = []string{"NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"}

// maxJournal caps the journal copied out of the helper.
const maxJournal = 512 << 20

// DockerHost is the Host of the container action: it reaches the VM
// through the docker socket the runner mounts into the action's container,
// with short-lived helper containers from the action's own image in the
// VM's PID, network and cgroup namespaces.
type DockerHost struct {
	Docker *docker.Client
	Image  string // the action's image ID; helpers run it
	Dir    string // host directory for the binary and state; default host.DefaultDir
	// Args are extra arguments for the helper (tests: --no-systemd).
	Args []string
	// Exchange is a directory this container shares with the VM (the
	// report dir) and HostExchange its path on the VM: Stop's helper
	// leaves the journal there. Without it the journal is copied out of
	// the helper through docker, which fails if the docker gate
	// (disable-sudo-and-containers) stopped with the agent.
	Exchange, HostExchange string
}

func (d *DockerHost) dir() string {
	if d.Dir == "" {
		return host.DefaultDir
	}
	return d.Dir
}

// helperConfig is a helper container running `harden-runner args...`.
func (d *DockerHost) helperConfig(autoRemove bool, args ...string) docker.CreateConfig {
	return docker.CreateConfig{
		Image:      d.Image,
		Entrypoint: []string{"/harden-runner"},
		Cmd:        append(args, d.Args...),
		Labels:     map[string]string{"harden-runner.helper": args[0]},
		HostConfig: docker.HostConfig{
			Binds:        []string{d.dir() + ":" + d.dir()},
			NetworkMode:  "host",
			PidMode:      "host",
			CgroupnsMode: "host",
			CapAdd:       HelperCaps,
			SecurityOpt:  []string{"seccomp=unconfined", "apparmor=unconfined"},
			AutoRemove:   autoRemove,
		},
	}
}

// helper runs one helper container to its end and returns its exit code,
// stdout and stderr. cleanup removes it; callers may copy files out first.
func (d *DockerHost) helper(ctx context.Context, args ...string) (id string, code int, stdout, stderr []byte, err error) {
	id, err = d.Docker.Create(ctx, "", d.helperConfig(false, args...))
	if err != nil {
		return "", -1, nil, nil, err
	}
	if err = d.Docker.Start(ctx, id); err != nil {
		return id, -1, nil, nil, err
	}
	if code, err = d.Docker.Wait(ctx, id); err != nil {
		return id, code, nil, nil, err
	}
	stdout, stderr, err = d.Docker.Logs(ctx, id)
	return id, code, stdout, stderr, err
}

func (d *DockerHost) remove(id string) {
	if id != "" {
		_ = d.Docker.Remove(context.Background(), id)
	}
}

// Start implements Host: `harden-runner install` in a helper. It returns
// as soon as the helper prints its result, which it does once the agent
// enforces; the helper's exit and removal (AutoRemove) happen after the
// step goes on. Waiting for them cost about 0.2 s (bench/action.sh).
func (d *DockerHost) Start(ctx context.Context, req StartRequest) (*StartResult, error) {
	cfg, err := json.Marshal(host.Config{Dir: d.dir(), Daemon: req.Daemon, SudoUser: req.SudoUser})
	if err != nil {
		return nil, err
	}
	id, err := d.Docker.Create(ctx, "", d.helperConfig(true, "install", "--config-json", string(cfg)))
	if err != nil {
		return nil, fmt.Errorf("helper container: %w", err)
	}
	stream, err := d.Docker.Attach(ctx, id)
	if err != nil {
		d.remove(id)
		return nil, fmt.Errorf("helper container: %w", err)
	}
	defer stream.Close()
	if err := d.Docker.Start(ctx, id); err != nil {
		d.remove(id)
		return nil, fmt.Errorf("helper container: %w", err)
	}
	res, stderr, err := readResult(stream)
	if err != nil {
		return nil, fmt.Errorf("helper container: %w", err)
	}
	if res == nil {
		return nil, fmt.Errorf("helper container exited without a result: %s", strings.TrimSpace(string(stderr)))
	}
	return &StartResult{Already: res.Already, Pid: res.Pid, How: res.How, SudoDisabled: res.SudoDisabled, Warnings: res.Warnings}, nil
}

// readResult reads the helper's multiplexed output until a stdout line is
// a host.Result, or the stream ends (the helper exited without one).
func readResult(stream io.Reader) (*host.Result, []byte, error) {
	br := bufio.NewReader(stream)
	var stdout, stderr bytes.Buffer
	for {
		st, b, err := docker.ReadFrame(br)
		if errors.Is(err, io.EOF) {
			return nil, stderr.Bytes(), nil
		}
		if err != nil {
			return nil, stderr.Bytes(), err
		}
		if st == 2 {
			stderr.Write(b)
			continue
		}
		stdout.Write(b)
		for {
			line, err := stdout.ReadBytes('\n')
			if err != nil { // no complete line yet: keep the part
				rest := append([]byte(nil), line...)
				stdout.Reset()
				stdout.Write(rest)
				break
			}
			var res host.Result
			if bytes.HasPrefix(line, []byte("{")) && json.Unmarshal(line, &res) == nil {
				return &res, stderr.Bytes(), nil
			}
		}
	}
}

// Stop implements Host: `harden-runner host-stop` in a helper, which
// leaves the journal and its result in the exchange directory; this
// container reads them from its own mount. No docker call is needed once
// the agent has stopped: with disable-sudo-and-containers, this
// container's docker socket was the agent's gate, and is gone with it.
func (d *DockerHost) Stop(ctx context.Context) ([]byte, error) {
	if d.HostExchange == "" {
		return d.stopAndCopy(ctx)
	}
	if err := os.MkdirAll(d.Exchange, 0o755); err != nil {
		return nil, fmt.Errorf("stop the agent: %w", err)
	}
	result := filepath.Join(d.Exchange, host.ExportResultFile)
	journalPath := filepath.Join(d.Exchange, host.ExportJournalFile)
	for _, f := range []string{result, journalPath} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("stop the agent: %w", err)
		}
	}
	id, err := d.Docker.Create(ctx, "", d.helperConfig(true, "host-stop", "--dir", d.dir(), "--out", d.HostExchange))
	if err != nil {
		return nil, fmt.Errorf("helper container: %w", err)
	}
	if err := d.Docker.Start(ctx, id); err != nil {
		d.remove(id)
		return nil, fmt.Errorf("helper container: %w", err)
	}
	exited := make(chan int, 1)
	go func() {
		code, err := d.Docker.Wait(ctx, id)
		if err != nil {
			code = -1 // removed already (AutoRemove), or the gate went away
		}
		exited <- code
	}()
	var gone <-chan time.Time // after the helper exited: a last look
	for {
		if b, err := os.ReadFile(result); err == nil {
			var res host.StopResult
			if err := json.Unmarshal(b, &res); err != nil {
				return nil, fmt.Errorf("stop the agent: unreadable result %q: %w", b, err)
			}
			_ = os.Remove(result)
			var stopErr error
			if res.Error != "" {
				stopErr = fmt.Errorf("stop the agent: %s", res.Error)
			}
			journal, err := readCapped(journalPath, maxJournal)
			if errors.Is(err, os.ErrNotExist) {
				return nil, stopErr
			}
			if err != nil {
				return nil, errors.Join(stopErr, fmt.Errorf("read the journal: %w", err))
			}
			return journal, stopErr
		}
		select {
		case code := <-exited:
			if code > 0 {
				return nil, fmt.Errorf("stop the agent: the helper container exited with %d without a result", code)
			}
			gone = time.After(2 * time.Second)
		case <-gone:
			return nil, errors.New("stop the agent: the helper container ended without a result")
		case <-ctx.Done():
			return nil, fmt.Errorf("stop the agent: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stopAndCopy is Stop without an exchange directory: the journal is
// copied out of the stopped helper through docker.
func (d *DockerHost) stopAndCopy(ctx context.Context) ([]byte, error) {
	id, code, _, stderr, err := d.helper(ctx, "host-stop", "--dir", d.dir())
	defer d.remove(id)
	if err != nil {
		return nil, fmt.Errorf("helper container: %w", err)
	}
	var stopErr error
	if code != 0 {
		stopErr = fmt.Errorf("stop the agent: %s", strings.TrimSpace(string(stderr)))
	}
	journal, err := d.Docker.CopyFile(ctx, id, filepath.Join(d.dir(), "state", agent.StateJournal), maxJournal)
	if err != nil {
		var ae *docker.APIError
		if errors.As(err, &ae) && ae.Status == 404 {
			return nil, stopErr
		}
		return nil, errors.Join(stopErr, fmt.Errorf("read the journal: %w", err))
	}
	return journal, stopErr
}

// readCapped reads a file of at most max bytes.
func readCapped(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		return nil, fmt.Errorf("%s: more than %d bytes", path, max)
	}
	return b, err
}

var containerIDRe = regexp.MustCompile(`/containers/([0-9a-f]{64})/(?:hostname|hosts|resolv\.conf)`)

// SelfContainer finds and inspects the container this process runs in:
// by the /var/lib/docker/containers/ID/... files docker bind-mounts into
// every container, else by the hostname (docker's default is the short ID).
func SelfContainer(ctx context.Context, cli *docker.Client) (*docker.Container, error) {
	var ids []string
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if m := containerIDRe.FindStringSubmatch(sc.Text()); m != nil {
				ids = append(ids, m[1])
				break
			}
		}
		f.Close()
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		ids = append(ids, h)
	}
	var errs []error
	for _, id := range ids {
		c, err := cli.Inspect(ctx, id)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("find the action's own container: %w", errors.Join(errs...))
}
