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
	"regexp"
	"strings"

	"github.com/harden-runner/harden-runner/action/docker"
	"github.com/harden-runner/harden-runner/action/host"
	"github.com/harden-runner/harden-runner/journal"
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

// helperConfigFile is where the install helper finds its request.
const helperConfigFile = "harden-runner-install.json"

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
	// The request goes in as a file in the helper's own root file system,
	// not as an argument: a long policy (100,000 entries) is megabytes, and
	// one argument holds at most 128 KiB.
	id, err := d.Docker.Create(ctx, "", d.helperConfig(true, "install", "--config-file", "/"+helperConfigFile))
	if err != nil {
		return nil, fmt.Errorf("helper container: %w", err)
	}
	if err := d.Docker.PutFile(ctx, id, "/", helperConfigFile, cfg); err != nil {
		d.remove(id)
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
	return &StartResult{Already: res.Already, Pid: res.Pid, How: res.How, SudoDisabled: res.SudoDisabled, Warnings: res.Warnings,
		Errors: res.Errors}, nil
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

// Stop implements Host: `harden-runner host-stop --stream` in a helper
// this step created and attached to before it started, which stops the
// agent (or, with req.Keep, takes a snapshot of its journal and leaves it
// enforcing) and writes the journal as an export stream (journal.ReadExport)
// on its stdout. The stream is the only channel: nothing is read from a
// directory the runner's user can write, so a step cannot plant a journal
// or a stop result. No docker call is made once the helper runs: with
// disable-sudo-and-containers this container's docker socket is the
// agent's gate, which lets the connections it has finish (the attach
// among them) but takes no new ones once the agent stops.
func (d *DockerHost) Stop(ctx context.Context, req StopRequest) (*Collected, error) {
	args := []string{"host-stop", "--dir", d.dir(), "--stream"}
	if req.Keep {
		args = append(args, "--snapshot")
	}
	id, err := d.Docker.Create(ctx, "", d.helperConfig(true, args...))
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
	out := &stdoutReader{br: bufio.NewReader(stream)}
	ex, err := journal.ReadExport(out, maxJournal)
	if err != nil {
		msg := strings.TrimSpace(out.stderr.String())
		if msg != "" {
			msg = ": " + msg
		}
		return nil, fmt.Errorf("the journal did not arrive whole from the stop helper: %w%s", err, msg)
	}
	var stopErr error
	if ex.Error != "" {
		stopErr = fmt.Errorf("stop the agent: %s", ex.Error)
	}
	return &Collected{Journal: ex.Journal, Verified: true, Snapshot: ex.Snapshot, SHA256: ex.SHA256}, stopErr
}

// maxStderr caps the helper's stderr kept for error messages.
const maxStderr = 64 << 10

// stdoutReader reads the stdout frames of docker's multiplexed stream
// and keeps (the first maxStderr bytes of) stderr.
type stdoutReader struct {
	br     *bufio.Reader
	cur    []byte
	stderr bytes.Buffer
}

func (r *stdoutReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		st, b, err := docker.ReadFrame(r.br)
		if err != nil {
			return 0, err
		}
		if st == 2 {
			if room := maxStderr - r.stderr.Len(); room > 0 {
				r.stderr.Write(b[:min(len(b), room)])
			}
			continue
		}
		r.cur = b
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
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
