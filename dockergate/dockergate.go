// Package dockergate takes docker away from workflow steps while the
// runner keeps it (disable-sudo-and-containers): the docker group is root
// by another name, yet the runner itself needs docker for container
// actions, service containers and this Action's own post step.
//
// The Gate moves dockerd's socket into a root-only directory next to it
// and serves a proxy at the old path. A connection passes through to
// dockerd when its peer (SO_PEERCRED) is root — containers and system
// services — or is a docker CLI that Runner.Worker itself started, or a
// child of one (CLI plugins). Those are told apart at exec time: the
// docker CLI files are watched with fanotify FAN_OPEN_EXEC_PERM, and while
// the exec waits for the answer the process still runs its old image, so a
// fresh fork of Runner.Worker shows Runner.Worker, and a step's shell that
// runs `exec docker` shows the shell. Every other connection is answered
// HTTP 403 with a message naming the input, and reported.
package dockergate

import (
	"bufio"
	"context"
	"encoding/binary"
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

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/runnerstep"
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
const DeniedMessage = "harden-runner: docker is disabled for workflow steps (disable-sudo-and-containers); only the runner's own docker commands and containers may use it"

// Config configures a Gate.
type Config struct {
	Socket  string   // dockerd's socket; default DefaultSocket
	CLIs    []string // docker CLI files; default DefaultCLIs
	Emit    event.Emit
	Process func(pid int) event.Process // required: who a denied peer is
	Log     *slog.Logger
}

// Gate is the filtering proxy. Start once, Close once (safe to repeat).
type Gate struct {
	cfg     Config
	hidden  string
	ln      *net.UnixListener
	fan     *os.File
	watched []string

	mu      sync.Mutex
	runners map[int]uint64 // pid → start time: docker CLIs Runner.Worker started

	readers sync.WaitGroup // accept loop and fanotify reader
	conns   sync.WaitGroup // connections in flight
	passed  atomic.Uint64
	denied  atomic.Uint64

	once     sync.Once
	closeErr error
}

// New validates cfg. It does no I/O.
func New(cfg Config) (*Gate, error) {
	if cfg.Emit == nil || cfg.Process == nil {
		return nil, errors.New("dockergate: Emit and Process are required")
	}
	if cfg.Socket == "" {
		cfg.Socket = DefaultSocket
	}
	if len(cfg.CLIs) == 0 {
		cfg.CLIs = DefaultCLIs
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Gate{cfg: cfg, runners: make(map[int]uint64),
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
	g.cfg.Log.Info("dockergate: docker is the runner's only", "socket", g.cfg.Socket, "clis", g.watched)
	return nil
}

// Watched returns the docker CLI files being watched.
func (g *Gate) Watched() []string { return g.watched }

func (g *Gate) watchCLIs() error {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		return fmt.Errorf("dockergate: fanotify_init (needed to tell the runner's docker commands from the steps'): %w", err)
	}
	for _, p := range g.cfg.CLIs {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, p); err != nil {
			unix.Close(fd)
			return fmt.Errorf("dockergate: watch %s for FAN_OPEN_EXEC_PERM: %w", p, err)
		}
		g.watched = append(g.watched, p)
	}
	// No CLI at all: only root and containers can use docker, which is
	// what the runner could do too; nothing to fail for.
	g.fan = os.NewFile(uintptr(fd), "fanotify")
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
// the CLIs. Connections in flight go on (see Drain). It emits Stats:
// Events counts denied connections.
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
		g.readers.Wait()
		g.cfg.Emit(event.Record{Stats: &event.Stats{Component: "dockergate", Events: g.denied.Load()}})
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

const metaLen = 24 // struct fanotify_event_metadata

// readExecs answers every exec of a watched CLI (always with FAN_ALLOW:
// the gate decides at the socket), remembering the ones Runner.Worker made.
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
		for b := buf[:n]; len(b) >= metaLen; {
			evLen := int(binary.NativeEndian.Uint32(b))
			if evLen < metaLen || evLen > len(b) {
				break
			}
			fd := int32(binary.NativeEndian.Uint32(b[16:]))
			pid := int(int32(binary.NativeEndian.Uint32(b[20:])))
			if fd >= 0 {
				// The exec waits for this answer, so the process still runs
				// the image it had before: Runner.Worker for the runner's own.
				if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil && filepath.Base(exe) == runnerstep.WorkerName {
					if start, _, err := procStat(pid); err == nil {
						g.remember(pid, start)
					}
				}
				var resp [8]byte
				binary.NativeEndian.PutUint32(resp[:], uint32(fd))
				binary.NativeEndian.PutUint32(resp[4:], unix.FAN_ALLOW)
				if _, err := unix.Write(int(g.fan.Fd()), resp[:]); err != nil {
					g.cfg.Log.Warn("dockergate: answer exec", "pid", pid, "err", err)
				}
				unix.Close(int(fd))
			}
			b = b[evLen:]
		}
	}
}

// maxRunners bounds the remembered docker CLIs; exited ones are pruned.
const maxRunners = 4096

func (g *Gate) remember(pid int, start uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.runners) >= maxRunners {
		for p, s := range g.runners {
			if cur, _, err := procStat(p); err != nil || cur != s {
				delete(g.runners, p)
			}
		}
	}
	g.runners[pid] = start
}

// maxAncestry is how far up a peer's parents a runner's docker CLI is looked for.
const maxAncestry = 4

// admits reports whether a peer may reach dockerd: root, or a docker CLI
// the runner started, or a process it started (a CLI plugin).
func (g *Gate) admits(pid, uid int) bool {
	if uid == 0 {
		return true
	}
	// Read the chain first: /proc reads are slow, the lock is shared.
	type link struct {
		pid   int
		start uint64
	}
	var chain []link
	for i := 0; i <= maxAncestry && pid > 1; i++ {
		start, ppid, err := procStat(pid)
		if err != nil {
			break
		}
		chain = append(chain, link{pid, start})
		pid = ppid
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range chain {
		if s, ok := g.runners[l.pid]; ok && s == l.start {
			return true
		}
	}
	return false
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
	pid, uid, err := peer(c)
	if err != nil {
		g.cfg.Log.Warn("dockergate: peer credentials", "err", err)
		return
	}
	if !g.admits(pid, uid) {
		g.deny(c, pid)
		return
	}
	up, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: g.hidden, Net: "unix"})
	if err != nil {
		g.cfg.Log.Warn("dockergate: dial dockerd", "err", err)
		return
	}
	defer up.Close()
	g.passed.Add(1)
	// Both ways, half-closing as each side finishes: docker's attach and
	// exec streams are hijacked HTTP connections that close one way first.
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
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
func (g *Gate) deny(c *net.UnixConn, pid int) {
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
			g.cfg.Emit(event.Record{Exec: &event.Exec{Time: time.Now(), Program: g.cfg.Socket, Verdict: event.Blocked,
				Detail: req.Method + " " + req.URL.Path, Process: g.cfg.Process(pid)}})
		}
		fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %d\r\nApi-Version: 1.41\r\n\r\n%s", len(body), body)
	}
}

// peer returns the pid and uid of a unix socket's other end.
func peer(c *net.UnixConn) (pid, uid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if serr != nil {
		return 0, 0, serr
	}
	return int(cred.Pid), int(cred.Uid), nil
}

// procStat returns a process's start time (clock ticks since boot, which
// tells a pid's reuse apart) and its parent's pid.
func procStat(pid int) (start uint64, ppid int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	start, ppid, err = parseStat(b)
	if err != nil {
		return 0, 0, fmt.Errorf("dockergate: /proc/%d/stat: %w", pid, err)
	}
	return start, ppid, nil
}

// parseStat reads the parent pid and start time out of /proc/PID/stat.
// The command name (field 2) is the process's to choose and may hold
// spaces and parentheses: the fields that follow start after the last ')'.
func parseStat(b []byte) (start uint64, ppid int, err error) {
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, errors.New("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, starttime field 22.
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("%d fields", len(f))
	}
	if ppid, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, err
	}
	if start, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return 0, 0, err
	}
	return start, ppid, nil
}
