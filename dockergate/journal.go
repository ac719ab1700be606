package dockergate

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// Admitted requests are journaled folded: one record per client process,
// endpoint, container and image, with a count, emitted at Close (or when
// maxFolds are held).

type procKey struct {
	pid   int
	start uint64
}

type reqKey struct {
	proc      procKey
	method    string
	endpoint  string // the path with IDs and names as {id} / {name}
	container string // the container the path names
	image     string // the image a create or pull names
}

type reqFold struct {
	first time.Time
	count uint64
}

// maxFolds bounds the folded requests held before they are emitted.
const maxFolds = 4096

// forward copies the client's bytes to dockerd unchanged, as they are
// read, and reads the requests among them on the way, for the journal.
// Once a request upgrades the connection (attach, exec start) or cannot
// be read, the rest is a stream and is only copied.
func (g *Gate) forward(up io.Writer, c io.Reader, pk procKey, container string) {
	// Every byte read from c is written to up before the parser sees it.
	br, _ := g.bufs.Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(nil, 32<<10)
	}
	br.Reset(io.TeeReader(c, up))
	defer func() { br.Reset(nil); g.bufs.Put(br) }()
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			break
		}
		k := reqKey{proc: pk, method: req.Method}
		k.endpoint, k.container, k.image = endpoint(req.URL.Path)
		if strings.HasSuffix(req.URL.Path, "/images/create") {
			k.image = imageRef(req.URL.Query().Get("fromImage"), req.URL.Query().Get("tag"))
		}
		if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/containers/create") {
			var v struct{ Image string }
			b, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
			if json.Unmarshal(b, &v) == nil {
				k.image = v.Image
			}
		}
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
		if !strings.HasSuffix(req.URL.Path, "/_ping") {
			g.fold(k, pk.pid, container)
		}
		if upgrades(req) {
			break
		}
	}
	// What br holds was forwarded already; the rest goes straight through.
	_, _ = io.Copy(up, c)
}

// upgrades reports whether a request turns the connection into a stream.
func upgrades(req *http.Request) bool {
	if strings.EqualFold(req.Header.Get("Connection"), "Upgrade") || req.Header.Get("Upgrade") != "" {
		return true
	}
	p := req.URL.Path
	return strings.HasSuffix(p, "/attach") || (strings.Contains(p, "/exec/") && strings.HasSuffix(p, "/start"))
}

// endpoint replaces the IDs and names in a docker API path by {id} and
// {name}, and returns the container (or image) the path names.
func endpoint(path string) (ep, ctr, image string) {
	parts := strings.Split(path, "/")
	for i := 1; i < len(parts); i++ {
		if i+1 >= len(parts) || parts[i+1] == "" {
			continue
		}
		switch parts[i] {
		case "containers":
			if parts[i+1] != "json" && parts[i+1] != "create" && parts[i+1] != "prune" {
				ctr = parts[i+1]
				parts[i+1] = "{id}"
				i++
			}
		case "exec", "networks", "volumes", "plugins", "secrets", "configs", "services", "tasks", "nodes":
			if parts[i+1] != "create" && parts[i+1] != "prune" && parts[i+1] != "json" {
				parts[i+1] = "{id}"
				i++
			}
		case "images", "distribution":
			// Image names hold slashes: everything up to the last segment
			// (json, tag, push, history, or the end) is the name.
			rest := parts[i+1:]
			if len(rest) == 1 && (rest[0] == "json" || rest[0] == "create" || rest[0] == "search" || rest[0] == "load" || rest[0] == "get" || rest[0] == "prune") {
				continue
			}
			last := len(rest)
			switch rest[len(rest)-1] {
			case "json", "tag", "push", "history", "get":
				last = len(rest) - 1
			}
			image = strings.Join(rest[:last], "/")
			parts = append(append(parts[:i+1:i+1], "{name}"), rest[last:]...)
			i = len(parts)
		}
	}
	return strings.Join(parts, "/"), short(ctr), image
}

func imageRef(from, tag string) string {
	if from == "" || tag == "" || strings.Contains(from, "@") {
		return from
	}
	return from + ":" + tag
}

// short is docker's 12-character form of a full container ID; a name or
// a short ID is kept as it is.
func short(id string) string {
	if len(id) == 64 && strings.Trim(id, "0123456789abcdef") == "" {
		return id[:12]
	}
	return id
}

// learn reads who an admitted process is, once per process (until the
// next flush), for the journal's folded requests.
func (g *Gate) learn(k procKey, pid int, peer string) {
	g.jmu.Lock()
	_, ok := g.who[k]
	full := len(g.who) >= 2*maxFolds // connections without requests: fold reads it then
	g.jmu.Unlock()
	if ok || full {
		return
	}
	p := g.cfg.Process(pid)
	if p.Container == "" {
		p.Container = short(peer)
	}
	g.jmu.Lock()
	if _, ok := g.who[k]; !ok {
		g.who[k] = p
	}
	g.jmu.Unlock()
}

// fold counts one request of pid, which runs in container peer (or "").
func (g *Gate) fold(k reqKey, pid int, peer string) {
	g.jmu.Lock()
	f := g.journal[k]
	if f == nil {
		if len(g.journal) >= maxFolds {
			g.jmu.Unlock()
			g.flushJournal()
			g.jmu.Lock()
		}
		if _, ok := g.who[k.proc]; !ok {
			// Read while the client runs; once per process.
			g.jmu.Unlock()
			p := g.cfg.Process(pid)
			if p.Container == "" {
				p.Container = short(peer)
			}
			g.jmu.Lock()
			g.who[k.proc] = p
		}
		f = &reqFold{first: time.Now()}
		g.journal[k] = f
	}
	f.count++
	g.jmu.Unlock()
}

// flushJournal emits the folded requests and forgets them.
func (g *Gate) flushJournal() {
	g.jmu.Lock()
	folds, who := g.journal, g.who
	g.journal, g.who = make(map[reqKey]*reqFold), make(map[procKey]event.Process)
	g.jmu.Unlock()
	for k, f := range folds {
		p := who[k.proc]
		d := k.method + " " + k.endpoint + " ×" + strconv.FormatUint(f.count, 10)
		if k.container != "" {
			d += " container " + k.container
		}
		if k.image != "" {
			d += " image " + k.image
		}
		g.cfg.Emit(event.Record{Exec: &event.Exec{Time: f.first, Program: g.cfg.Socket, Verdict: event.Allowed,
			Detail: d, Process: p}})
	}
}
