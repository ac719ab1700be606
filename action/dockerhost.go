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

// Stop implements Host: `harden-runner host-stop` in a helper, then the
// journal is copied out of that helper's bind mount.
func (d *DockerHost) Stop(ctx context.Context) ([]byte, error) {
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
