package dockergate

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/harden-runner/harden-runner/dockergate/lsm"
	"github.com/harden-runner/harden-runner/event"
)

// premounted finds the containers that had dockerd's socket bind-mounted
// before the gate took its place (the runner mounts it into job, service
// and container-action containers at job set-up): a bind mount holds the
// socket's inode, not its path, so their processes reach dockerd without
// passing the gate. In each one that runs, the gate's socket is mounted
// over every such mount (overmount); what cannot be covered so — the
// container runs with CAP_SYS_ADMIN and could unmount it, or the mount
// fails — is reported as an error, naming the container and image. A
// container not running yet resolves the socket's path when it starts,
// which is the gate's by then. This Action's own containers are skipped.
func (g *Gate) premounted() error {
	var list []listed
	if err := g.getJSON("/containers/json?all=1", 64<<20, &list); err != nil {
		return fmt.Errorf("dockergate: list containers: %w", err)
	}
	note := func(level event.Level, msg string) {
		g.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentDockergate, Level: level, Message: msg}})
	}
	for _, ct := range exposed(list, g.cfg.Socket, g.cfg.TrustedImage) {
		what := fmt.Sprintf("container %s (%s, image %s, %s)", short(ct.ID), strings.TrimPrefix(strings.Join(ct.Names, ","), "/"), ct.Image, ct.State)
		if ct.State == "created" || ct.State == "exited" || ct.State == "dead" || ct.State == "restarting" {
			note("info", what+" has docker's socket mounted from before harden-runner started: when it starts, the mount is the gate's")
			continue
		}
		// With allow-docker-for: containers it may use docker anyway.
		level := event.LevelError
		if g.cfg.AllowFor == AllowContainers {
			level = event.LevelWarning
		}
		undo, err := g.cover(ct)
		switch {
		case err != nil:
			note(level, what+" had docker's socket mounted before harden-runner started and it could not be put behind the gate: "+
				err.Error()+"; its processes reach dockerd directly (docker is root on this machine)")
		case undo != "" && g.guard != nil:
			note("info", what+" had docker's socket mounted before harden-runner started: the gate's socket is mounted over it, and though "+
				undo+" and could unmount it, BPF LSM refuses its connections to dockerd")
		case undo != "":
			note(level, what+" had docker's socket mounted before harden-runner started: the gate's socket is mounted over it, but "+
				undo+" and could unmount it; its processes can then reach dockerd directly (docker is root on this machine)")
		default:
			note("info", what+" had docker's socket mounted before harden-runner started: the gate's socket is mounted over it in the container")
		}
	}
	return nil
}

// cover mounts the gate's socket over each mount of dockerd's socket in
// the running container ct. undo, when not "", says why the container
// could unmount it again (it runs privileged or with CAP_SYS_ADMIN).
func (g *Gate) cover(ct listed) (undo string, err error) {
	var in struct {
		State struct {
			Pid     int
			Running bool
		}
		HostConfig struct {
			Privileged bool
			CapAdd     []string
		}
	}
	if err := g.getJSON("/containers/"+ct.ID+"/json", 4<<20, &in); err != nil {
		return "", fmt.Errorf("inspect: %w", err)
	}
	if in.HostConfig.Privileged {
		undo = "it is privileged"
	}
	for _, c := range in.HostConfig.CapAdd {
		if c = strings.TrimPrefix(strings.ToUpper(c), "CAP_"); c == "SYS_ADMIN" || c == "ALL" {
			undo = "it has CAP_SYS_ADMIN"
		}
	}
	if !in.State.Running || in.State.Pid <= 0 {
		return undo, fmt.Errorf("no process to reach its mounts through (pid %d)", in.State.Pid)
	}
	var errs []error
	for _, m := range ct.Mounts {
		if m.Type == "bind" && sameSocket(m.Source, g.cfg.Socket) {
			errs = append(errs, overmount(g.cfg.Socket, in.State.Pid, m.Destination))
		}
	}
	return undo, errors.Join(errs...)
}

// getJSON GETs path from dockerd's own socket and decodes at most limit
// bytes of its JSON answer into v.
func (g *Gate) getJSON(path string, limit int64, v any) error {
	c, err := net.DialTimeout("unix", g.hidden, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(v)
}

// listed is a container as GET /containers/json lists it.
type listed struct {
	ID      string `json:"Id"`
	Names   []string
	Image   string
	ImageID string
	State   string
	Mounts  []struct {
		Type        string
		Source      string
		Destination string
	}
}

// exposed returns the containers in list with socket bind-mounted, but
// for those of image trusted.
func exposed(list []listed, socket, trusted string) []listed {
	var out []listed
	for _, ct := range list {
		if trusted != "" && ct.ImageID == trusted {
			continue
		}
		for _, m := range ct.Mounts {
			if m.Type == "bind" && sameSocket(m.Source, socket) {
				out = append(out, ct)
				break
			}
		}
	}
	return out
}

// sameSocket compares socket paths, /var/run being /run on Ubuntu.
func sameSocket(a, b string) bool {
	norm := func(p string) string {
		p = filepath.Clean(p)
		if rest, ok := strings.CutPrefix(p, "/var/run/"); ok {
			return "/run/" + rest
		}
		return p
	}
	return norm(a) == norm(b)
}

// guardPremounted closes the paths around the gate where the kernel lets
// it (package lsm): with allow-docker-for runner, only the agent may
// connect to dockerd's own listening socket, however it is reached. When
// it cannot, that is said in the journal (and premounted names each
// container that keeps such a path).
func (g *Gate) guardPremounted() {
	if g.cfg.AllowFor != AllowRunner {
		return // containers keep docker anyway
	}
	note := func(level, msg string) {
		g.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: "dockergate", Level: event.Level(level), Message: msg}})
	}
	inodes, err := lsm.ListeningInodes(g.cfg.Socket)
	if err == nil && len(inodes) == 0 {
		err = fmt.Errorf("no listening socket bound at %s in /proc/net/unix", g.cfg.Socket)
	}
	if err == nil {
		g.guard, err = lsm.Start(inodes, []int{g.self}, g.lsmDenied)
	}
	if err != nil {
		msg := "BPF LSM cannot guard dockerd's own socket on this kernel, so the sockets bind-mounted into containers before harden-runner started " +
			"are put behind the gate by mounting its socket over them in each running container instead (one that runs privileged or with " +
			"CAP_SYS_ADMIN could unmount it: each such container is an error)"
		if why := lsm.Diagnose(err); why != "" {
			msg += ": " + why
		}
		note("warning", msg+" ("+err.Error()+")")
		return
	}
	note("info", "connections to dockerd's own socket other than through the gate are refused (BPF LSM)")
}

// lsmDenied records a connect the LSM guard refused.
func (g *Gate) lsmDenied(d lsm.Denial) {
	g.denied.Add(1)
	p := event.Process{PID: d.NSPID, UID: d.UID}
	if d.NSPID > 0 {
		p = g.cfg.Process(d.NSPID)
	} else {
		p.Unknown = fmt.Sprintf("in another PID namespace (a container): %s, host pid %d, cgroup %d", d.Comm, d.PID, d.Cgroup)
	}
	g.cfg.Emit(event.Record{Exec: &event.Exec{Time: time.Now(), Program: g.cfg.Socket, Verdict: event.Blocked,
		Detail: "connect to dockerd's own socket (mounted before harden-runner started)", Process: p}})
}
