// Package dockergate takes docker away from workflow steps while the
// runner keeps it (disable-sudo-and-containers): the docker group is root
// by another name, yet the runner itself needs docker for container
// actions, service containers and this Action's own post step.
//
// The Gate moves dockerd's socket into a root-only directory next to it
// and serves a proxy at the old path. Who may pass is decided per
// connection from the peer's pid (SO_PEERCRED), never from a name, argv
// or uid:
//   - a docker CLI the pinned runner (runnerid.Identity) forked and exec'd
//     itself, while it still runs that docker CLI file — not its children
//     (credential helpers, CLI plugins and hooks a step planted in
//     ~/.docker), not a docker CLI a step started;
//   - a process in a container of the trusted image (this Action's own
//     post step and helpers), and with AllowContainers any container
//     dockerd runs (the container is read from the peer's cgroup and
//     confirmed with dockerd);
//   - the agent itself.
//
// Everything else, root on the host included, is answered HTTP 403 with a
// message naming the input. The runner's docker CLI is told apart at exec
// time: the docker CLI files are watched with fanotify FAN_OPEN_EXEC_PERM,
// and while the exec waits for the answer the process still runs its old
// image, so a fresh fork of the runner shows the runner's pid as parent
// and the runner's executable, and a step's shell that runs `exec docker`
// shows the shell.
//
// Every request that passes is journaled too, folded per client process
// and endpoint, with the container and image where the request names them.
package dockergate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/dockergate/lsm"
	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/fanotify"
	"github.com/harden-runner/harden-runner/runnerid"
)

// DefaultSocket is dockerd's socket on Ubuntu (/var/run is /run).
const DefaultSocket = "/var/run/docker.sock"

// DefaultCLIs are the docker CLI files watched when Config.CLIs is empty;
// missing ones are skipped.
var DefaultCLIs = []string{"/usr/bin/docker", "/usr/local/bin/docker"}

// HiddenDir is the root-only directory, next to the socket, that dockerd's
// socket is moved into while the gate runs.
const HiddenDir = ".harden-runner-docker"

// DeniedMessage is the error a denied docker command prints.
const DeniedMessage = "harden-runner: docker is disabled for workflow steps (disable-sudo-and-containers); only the runner's own docker commands and containers may use it (allow-docker-for)"

// AllowFor says who besides the runner's own docker CLI gets docker.
type AllowFor string

// AllowFor values (the allow-docker-for input).
const (
	// AllowRunner: the runner's docker CLI, this Action's own containers
	// (TrustedImage) and the agent; no other container.
	AllowRunner AllowFor = "runner"
	// AllowContainers: AllowRunner, and processes in any container dockerd
	// runs (job, service and container-action containers, which the runner
	// started: while the gate runs nothing else can start one).
	AllowContainers AllowFor = "containers"
)

// ParseAllowFor checks an allow-docker-for value ("" is AllowRunner).
func ParseAllowFor(s string) (AllowFor, error) {
	switch AllowFor(s) {
	case "", AllowRunner:
		return AllowRunner, nil
	case AllowContainers:
		return AllowContainers, nil
	}
	return "", fmt.Errorf("want %q or %q", AllowRunner, AllowContainers)
}

// Config configures a Gate.
type Config struct {
	Socket string   // dockerd's socket; default DefaultSocket
	CLIs   []string // docker CLI files; default DefaultCLIs
	// Runner is the pinned runner process (runnerid). Zero: no docker CLI
	// is the runner's, only containers and the agent pass.
	Runner runnerid.Identity
	// AllowFor: default AllowRunner.
	AllowFor AllowFor
	// TrustedImage is this Action's image ID ("sha256:..."): processes in
	// its containers (the post step, the helpers) always pass.
	TrustedImage string
	Emit         event.Emit
	Process      func(pid int) event.Process // required: who a peer is
	// Container returns the ID of the container pid runs in (from its
	// cgroup), or "": proc.ContainerID. Required.
	Container func(pid int) string
	Log       *slog.Logger
}

// Gate is the filtering proxy. Start once, Close once (safe to repeat).
type Gate struct {
	cfg     Config
	hidden  string
	ln      *net.UnixListener
	fan     *os.File
	watched []string
	self    int
	selfNS  string
	guard   *lsm.Guard // nil: pre-mounted sockets are reported, not closed

	mu      sync.Mutex
	runners map[int]cliProc // pid → the runner's docker CLIs

	images sync.Map // container ID → container, as dockerd last described it

	bufs sync.Pool // forward's 32 KiB readers (a build context streams through one)

	jmu     sync.Mutex
	journal map[reqKey]*reqFold
	who     map[procKey]event.Process

	readers sync.WaitGroup // accept loop and fanotify reader
	conns   sync.WaitGroup // connections in flight
	passed  atomic.Uint64
	denied  atomic.Uint64

	once     sync.Once
	closeErr error
}

// cliProc is a docker CLI the runner exec'd: its start time, and the
// device and inode of the CLI file it exec'd.
type cliProc struct {
	start    uint64
	dev, ino uint64
}

// New validates cfg. It does no I/O.
func New(cfg Config) (*Gate, error) {
	if cfg.Emit == nil || cfg.Process == nil || cfg.Container == nil {
		return nil, errors.New("dockergate: Emit, Process and Container are required")
	}
	if cfg.Socket == "" {
		cfg.Socket = DefaultSocket
	}
	if len(cfg.CLIs) == 0 {
		cfg.CLIs = DefaultCLIs
	}
	af, err := ParseAllowFor(string(cfg.AllowFor))
	if err != nil {
		return nil, fmt.Errorf("dockergate: allow-docker-for %q: %w", cfg.AllowFor, err)
	}
	cfg.AllowFor = af
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Gate{cfg: cfg, runners: make(map[int]cliProc), journal: make(map[reqKey]*reqFold),
		who: make(map[procKey]event.Process), self: os.Getpid(),
		hidden: filepath.Join(filepath.Dir(cfg.Socket), HiddenDir, filepath.Base(cfg.Socket))}, nil
}

// Start watches the docker CLIs, then puts the proxy in the socket's place.
// It fails, changing nothing, if there is no docker socket or the runner's
// docker commands cannot be told from the steps' (no fanotify permission
// events): disabling docker for steps would then break the runner too.
func (g *Gate) Start(ctx context.Context) error {
	st, err := os.Lstat(g.cfg.Socket)
	if err != nil {
		return fmt.Errorf("dockergate: %w", err)
	}
	if st.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("dockergate: %s is not a socket", g.cfg.Socket)
	}
	if g.selfNS, err = os.Readlink("/proc/self/ns/pid"); err != nil {
		return fmt.Errorf("dockergate: own PID namespace: %w", err)
	}
	if err := g.watchCLIs(); err != nil {
		return err
	}
	if err := g.swap(); err != nil {
		g.fan.Close()
		return err
	}
	g.readers.Add(2)
	go g.readExecs()
	go g.accept(ctx)
	g.guardPremounted()
	if err := g.premounted(); err != nil {
		// Cannot tell: say so, as loudly as a container that is exposed.
		g.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentDockergate, Level: event.LevelError,
			Message: "cannot tell whether a container had docker's socket mounted before harden-runner started (and so bypasses the gate): " + err.Error()}})
	}
	g.cfg.Log.Info("dockergate: docker is the runner's only", "socket", g.cfg.Socket, "clis", g.watched,
		"runner", g.cfg.Runner.PID, "allow_for", g.cfg.AllowFor)
	return nil
}

// Watched returns the docker CLI files being watched.
func (g *Gate) Watched() []string { return g.watched }

// Upstream is dockerd's own socket while the gate runs (in the root-only
// directory); a caller that must reach dockerd itself (the agent) dials it.
func (g *Gate) Upstream() string { return g.hidden }

func (g *Gate) watchCLIs() error {
	f, watched, err := fanotify.WatchFiles(unix.FAN_CLASS_CONTENT, unix.FAN_OPEN_EXEC_PERM, g.cfg.CLIs)
	if err != nil {
		return fmt.Errorf("dockergate: watch the docker CLIs for FAN_OPEN_EXEC_PERM (needed to tell the runner's docker commands from the steps'): %w", err)
	}
	// No CLI at all: only root and containers can use docker, which is
	// what the runner could do too; nothing to fail for.
	g.fan, g.watched = f, watched
	return nil
}

// swap listens next to the socket, moves dockerd's socket into the hidden
// directory and ours into its place; on any error it puts things back.
func (g *Gate) swap() error {
	sock := g.cfg.Socket
	if err := os.MkdirAll(filepath.Dir(g.hidden), 0o700); err != nil {
		return fmt.Errorf("dockergate: %w", err)
	}
	if err := os.Chmod(filepath.Dir(g.hidden), 0o700); err != nil {
		return fmt.Errorf("dockergate: %w", err)
	}
	tmp := sock + ".harden-runner"
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return fmt.Errorf("dockergate: listen: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	undo := func(err error) error {
		ln.Close()
		os.Remove(tmp)
		return fmt.Errorf("dockergate: %w", err)
	}
	// Who connects is decided per connection, so anyone may.
	if err := os.Chmod(tmp, 0o666); err != nil {
		return undo(err)
	}
	if st, err := os.Lstat(g.hidden); err == nil && st.Mode()&os.ModeSocket != 0 {
		// A gate of an agent that was killed left dockerd's socket hidden
		// and its own dead one at the path: take the path over, and leave
		// dockerd's where it is (a second move would lose it).
		if err := os.Rename(tmp, sock); err != nil {
			return undo(err)
		}
		g.ln = ln
		return nil
	}
	if err := os.Rename(sock, g.hidden); err != nil {
		return undo(err)
	}
	if err := os.Rename(tmp, sock); err != nil {
		if rerr := os.Rename(g.hidden, sock); rerr != nil {
			err = errors.Join(err, fmt.Errorf("put dockerd's socket back: %w", rerr))
		}
		return undo(err)
	}
	g.ln = ln
	return nil
}

// Close stops accepting, puts dockerd's socket back and stops watching
// the CLIs. Connections in flight go on (see Drain); their requests after
// Close are not journaled. It emits the folded admitted requests, then
// Stats: Events counts connections, denied and admitted.
func (g *Gate) Close() error {
	g.once.Do(func() {
		if g.ln == nil {
			return
		}
		var errs []error
		errs = append(errs, g.ln.Close())
		// Renaming over our socket's path restores it in one step.
		if err := os.Rename(g.hidden, g.cfg.Socket); err != nil {
			errs = append(errs, fmt.Errorf("dockergate: put dockerd's socket back: %w", err))
		} else {
			_ = os.Remove(filepath.Dir(g.hidden))
		}
		errs = append(errs, g.fan.Close()) // pending exec permissions are granted by the kernel
		if g.guard != nil {
			errs = append(errs, g.guard.Close())
			if n := g.guard.Lost(); n > 0 {
				g.cfg.Emit(event.Record{Stats: &event.Stats{Component: event.ComponentDockergateLSM, Lost: n}})
			}
		}
		g.readers.Wait()
		g.flushJournal()
		g.cfg.Emit(event.Record{Stats: &event.Stats{Component: event.ComponentDockergate, Events: g.denied.Load() + g.passed.Load()}})
		g.closeErr = errors.Join(errs...)
	})
	return g.closeErr
}

// Drain waits until the connections in flight at Close have ended, or ctx
// does: the post step's own docker calls pass through the gate while it
// stops the agent.
func (g *Gate) Drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() { g.conns.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dockergate: connections still open: %w", ctx.Err())
	}
}

// readExecs answers every exec of a watched CLI (always with FAN_ALLOW:
// the gate decides at the socket), remembering the ones the runner made.
func (g *Gate) readExecs() {
	defer g.readers.Done()
	buf := make([]byte, 4096)
	for {
		n, err := g.fan.Read(buf)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue // os.File waits for readability: EAGAIN is not seen here
			}
			return // closed
		}
		err = fanotify.Parse(buf[:n], func(ev *fanotify.Event) bool {
			if ev.FD >= 0 {
				g.execed(int(ev.PID), int(ev.FD))
				if err := fanotify.Allow(int(g.fan.Fd()), ev.FD); err != nil {
					g.cfg.Log.Warn("dockergate: answer exec", "pid", ev.PID, "err", err)
				}
				unix.Close(int(ev.FD))
			}
			return true
		})
		if err != nil {
			g.cfg.Log.Error("dockergate: read fanotify events", "err", err)
		}
	}
}

// execed remembers pid, which is exec'ing the CLI file open at fd, when
// it is the runner's own fork: the exec waits for our answer, so pid
// still runs the image it had before — the runner's executable, with the
// pinned runner as its parent.
func (g *Gate) execed(pid, fd int) {
	r := g.cfg.Runner
	if r.IsZero() {
		return
	}
	start, ppid, err := runnerid.Stat(pid)
	if err != nil || ppid != r.PID || !runnerid.SameExe(pid, r.Dev, r.Ino) || !r.Is(ppid) {
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return
	}
	g.remember(pid, cliProc{start: start, dev: uint64(st.Dev), ino: st.Ino})
}

// maxRunners bounds the remembered docker CLIs; exited ones are pruned.
const maxRunners = 4096

func (g *Gate) remember(pid int, c cliProc) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.runners) >= maxRunners {
		for p, s := range g.runners {
			if cur, _, err := runnerid.Stat(p); err != nil || cur != s.start {
				delete(g.runners, p)
			}
		}
	}
	g.runners[pid] = c
}

// Why a peer passed (or "" when it did not).
const (
	byRunnerCLI = "runner's docker CLI"
	byAgent     = "agent"
	byImage     = "this action's container"
	byContainer = "container (allow-docker-for: containers)"
)

// admits says why pid may reach dockerd, or "" when it may not. Only the
// peer itself counts, never its parents: a credential helper or CLI
// plugin of the runner's docker CLI is a step's code.
// start is pid's start time, when it was read.
func (g *Gate) admits(pid int) (why, container string, start uint64) {
	if pid <= 0 {
		return "", "", 0 // outside our PID namespace: cannot be told
	}
	if pid == g.self {
		return byAgent, "", 0
	}
	start, _, err := runnerid.Stat(pid)
	if err != nil {
		return "", "", 0
	}
	g.mu.Lock()
	c, ok := g.runners[pid]
	g.mu.Unlock()
	if ok && c.start == start && runnerid.SameExe(pid, c.dev, c.ino) {
		return byRunnerCLI, "", start
	}
	ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil || ns == g.selfNS {
		return "", "", start // a host process
	}
	id := g.cfg.Container(pid)
	if id == "" {
		return "", "", start
	}
	image, known := g.image(id, ns)
	switch {
	case !known:
		// Not a container dockerd runs, or pid is not in its PID
		// namespace: a step's own namespace, in a cgroup it named.
		return "", id, start
	case g.cfg.TrustedImage != "" && image == g.cfg.TrustedImage:
		return byImage, id, start
	case g.cfg.AllowFor == AllowContainers:
		return byContainer, id, start
	}
	return "", id, start
}

// container is what dockerd said of a container: its image ID and the
// PID namespace of its init process (State.Pid); image "" if dockerd
// does not know it or it is not running.
type container struct {
	image, pidNS string
}

// image returns the image ID of container id if dockerd runs it and a
// process whose PID namespace is pidNS is in it; known is false
// otherwise. The container's ID comes from the process's cgroup path,
// which a step can name itself (a systemd user scope called
// docker-<ID>.scope, a cgroup it was delegated), and a PID namespace of
// its own is one unshare away: only the namespace of the container's
// init, as dockerd reports its pid, places the process in the container.
// Answers are kept per container; one that disagrees is asked again
// (the container restarted, with a new init).
func (g *Gate) image(id, pidNS string) (image string, known bool) {
	if v, ok := g.images.Load(id); ok {
		if c := v.(container); c.image != "" && c.pidNS == pidNS {
			return c.image, true
		}
	}
	c, ok := g.inspect(id)
	if !ok {
		return "", false
	}
	g.images.Store(id, c)
	return c.image, c.image != "" && c.pidNS == pidNS
}

// inspect asks dockerd (at its own socket) about container id; ok is
// false when dockerd could not be asked.
func (g *Gate) inspect(id string) (container, bool) {
	c, err := net.DialTimeout("unix", g.hidden, 5*time.Second)
	if err != nil {
		return container{}, false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /containers/%s/json HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n", id)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return container{}, false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return container{}, true
	}
	if resp.StatusCode != http.StatusOK {
		return container{}, false
	}
	var v struct {
		Image string
		State struct{ Pid int }
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&v); err != nil || v.Image == "" {
		return container{}, false
	}
	if v.State.Pid <= 0 {
		return container{}, true // created or stopped: nothing runs in it
	}
	ns, err := os.Readlink("/proc/" + strconv.Itoa(v.State.Pid) + "/ns/pid")
	if err != nil {
		return container{}, false
	}
	return container{image: v.Image, pidNS: ns}, true
}

func (g *Gate) accept(ctx context.Context) {
	defer g.readers.Done()
	for {
		c, err := g.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			g.cfg.Log.Warn("dockergate: accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		g.conns.Add(1)
		go func() {
			defer g.conns.Done()
			g.serve(ctx, c)
		}()
	}
}

func (g *Gate) serve(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	pid, err := peer(c)
	if err != nil {
		g.cfg.Log.Warn("dockergate: peer credentials", "err", err)
		return
	}
	why, container, start := g.admits(pid)
	if why == "" {
		g.deny(c, pid, container)
		return
	}
	// Who the client is, read now, while it waits for its answer: read
	// once the request had passed, a short-lived client (curl) had often
	// exited and was journaled without its program.
	g.learn(procKey{pid, start}, pid, container)
	up, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: g.hidden, Net: "unix"})
	if err != nil {
		g.cfg.Log.Warn("dockergate: dial dockerd", "err", err)
		return
	}
	defer up.Close()
	g.passed.Add(1)
	// Both ways, half-closing as each side finishes: docker's attach and
	// exec streams are hijacked HTTP connections that close one way first.
	// The requests are read for the journal from a copy of what passes,
	// so what reaches dockerd is the client's bytes unchanged.
	done := make(chan struct{})
	go func() {
		g.forward(up, c, procKey{pid, start}, container)
		_ = up.CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	_ = c.CloseWrite()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// deny answers a peer's requests with 403 and reports the first one that
// is not a ping (the CLI pings before every command).
func (g *Gate) deny(c *net.UnixConn, pid int, container string) {
	g.denied.Add(1)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(io.LimitReader(c, 1<<20))
	body := `{"message":` + strconv.Quote(DeniedMessage) + "}\n"
	reported := false
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, 1<<20))
		req.Body.Close()
		if !reported && !strings.HasSuffix(req.URL.Path, "/_ping") {
			reported = true
			p := g.cfg.Process(pid)
			if p.Container == "" {
				p.Container = short(container)
			}
			g.cfg.Emit(event.Record{Exec: &event.Exec{Time: time.Now(), Program: g.cfg.Socket, Verdict: event.Blocked,
				Detail: req.Method + " " + req.URL.Path, Process: p}})
		}
		fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %d\r\nApi-Version: 1.41\r\n\r\n%s", len(body), body)
	}
}

// peer returns the pid of a unix socket's other end (0 when it is
// outside our PID namespace).
func peer(c *net.UnixConn) (pid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return int(cred.Pid), nil
}
