package dockergate

import (
	"bufio"
	"encoding/json"
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
// passing the gate. Each is reported as an error, naming the container
// and image; this Action's own containers are not.
func (g *Gate) premounted() error {
	c, err := net.DialTimeout("unix", g.hidden, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dockergate: list containers: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "GET /containers/json?all=1 HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("dockergate: list containers: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("dockergate: list containers: HTTP %d", resp.StatusCode)
	}
	var list []listed
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&list); err != nil {
		return fmt.Errorf("dockergate: list containers: %w", err)
	}
	for _, ct := range exposed(list, g.cfg.Socket, g.cfg.TrustedImage) {
		name := strings.TrimPrefix(strings.Join(ct.Names, ","), "/")
		g.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: "dockergate", Level: "error",
			Message: fmt.Sprintf("container %s (%s, image %s, %s) had docker's socket mounted before harden-runner started: "+
				"its processes reach dockerd directly, not through the gate (docker is root on this machine)",
				short(ct.ID), name, ct.Image, ct.State)}})
	}
	return nil
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
		msg := "docker's socket as mounted before harden-runner started (into job, service and container-action containers) stays open: " +
			"processes in those containers reach dockerd without the gate (each such container is named as an error); " +
			"closing it needs BPF LSM (a kernel with CONFIG_BPF_LSM booted with bpf in lsm=, which GitHub's hosted Ubuntu images are not)"
		if why := lsm.Diagnose(err); why != "" {
			msg += ": " + why
		}
		note("error", msg+" ("+err.Error()+")")
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
