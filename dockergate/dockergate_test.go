package dockergate

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/proc"
)

// fakeDockerd is the far end: an HTTP server on a unix socket that logs
// the "case" query parameter of every request that reaches it.
type fakeDockerd struct {
	mu   sync.Mutex
	seen []string
}

func (d *fakeDockerd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	d.seen = append(d.seen, r.URL.Query().Get("case"))
	d.mu.Unlock()
	w.Write([]byte("[]\n"))
}

func (d *fakeDockerd) reached(c string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.seen, c)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// TestGate runs the gate in front of a fake dockerd in a temporary
// directory, with a stand-in runner (bash copied as Runner.Worker) and a
// stand-in docker CLI (bash copied as docker, running curl as its
// "plugin" or exec'ing it), clients as nobody.
func TestGate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify permission events")
	}
	for _, tool := range []string{"bash", "curl", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	bash, _ := exec.LookPath("bash")
	curl, _ := exec.LookPath("curl")
	// Not t.TempDir: its parent is closed to nobody.
	dir, err := os.MkdirTemp("", "hr-dockergate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	worker := filepath.Join(dir, "runners/bin/Runner.Worker")
	docker := filepath.Join(dir, "bin/docker")
	copyFile(t, bash, worker)
	copyFile(t, bash, docker)
	sock := filepath.Join(dir, "run/docker.sock")
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	// As if nobody were in the docker group: without the gate it gets in.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	d := &fakeDockerd{}
	srv := &http.Server{Handler: d}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	var mu sync.Mutex
	var recs []event.Record
	emit := func(r event.Record) { mu.Lock(); recs = append(recs, r); mu.Unlock() }
	g, err := New(Config{Socket: sock, CLIs: []string{docker, filepath.Join(dir, "missing")}, Emit: emit, Process: proc.Info})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if got := g.Watched(); len(got) != 1 || got[0] != docker {
		t.Errorf("watched %v", got)
	}

	request := func(c string) string {
		return curl + " -s -o /dev/null -w %{http_code} --unix-socket " + sock + " http://docker/v1.41/containers/json?case=" + c
	}
	nobody := func(args ...string) *exec.Cmd {
		return exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, args...)...)
	}
	for _, tc := range []struct {
		name  string
		cmd   *exec.Cmd
		admit bool
	}{
		{"a step's process", nobody("sh", "-c", request("step")), false},
		{"the runner's docker CLI, its plugin connecting", nobody(worker, "-c", docker+" -c '"+request("runner-plugin")+"; true'; true"), true},
		{"the runner's docker CLI connecting itself", nobody(worker, "-c", docker+" -c 'exec "+request("runner-cli")+"'; true"), true},
		// A step's shell that execs docker is a child of the runner too,
		// but it ran the shell, not the runner, when it exec'd.
		{"a step's shell exec'ing docker", nobody(worker, "-c", bash+" -c \"exec "+docker+" -c 'exec "+request("exec-docker")+"'\"; true"), false},
		{"a docker CLI a step started", nobody(worker, "-c", bash+" -c \""+docker+" -c 'exec "+request("step-docker")+"'; true\"; true"), false},
		{"root", exec.Command("sh", "-c", request("root")), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := strings.SplitN(tc.cmd.Args[len(tc.cmd.Args)-1], "case=", 2)[1]
			c = strings.FieldsFunc(c, func(r rune) bool { return r == '\'' || r == ';' || r == '"' || r == ' ' })[0]
			out, err := tc.cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v %s", tc.cmd.Args, err, out)
			}
			want := map[bool]string{true: "200", false: "403"}[tc.admit]
			if string(out) != want {
				t.Errorf("status %s, want %s", out, want)
			}
			if d.reached(c) != tc.admit {
				t.Errorf("dockerd reached: %v, want %v", d.reached(c), tc.admit)
			}
		})
	}

	// The denial is readable: docker prints the message.
	out, _ := nobody("sh", "-c", curl+" -s --unix-socket "+sock+" http://docker/v1.41/version").Output()
	if !strings.Contains(string(out), "disable-sudo-and-containers") {
		t.Errorf("denied answer: %s", out)
	}

	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(sock), HiddenDir)); !os.IsNotExist(err) {
		t.Errorf("hidden dir left: %v", err)
	}
	if out, err := nobody("sh", "-c", request("after")).CombinedOutput(); err != nil || string(out) != "200" || !d.reached("after") {
		t.Errorf("after Close, dockerd's socket is not back: %v %s", err, out)
	}

	mu.Lock()
	defer mu.Unlock()
	var denied []string
	var stats *event.Stats
	for _, r := range recs {
		if r.Exec != nil {
			if r.Exec.Verdict != event.Blocked || r.Exec.Program != sock || r.Exec.Process.UID != 65534 {
				t.Errorf("exec record %+v", r.Exec)
			}
			denied = append(denied, r.Exec.Detail)
		}
		if r.Stats != nil {
			stats = r.Stats
		}
	}
	if len(denied) != 4 || denied[0] != "GET /v1.41/containers/json" {
		t.Errorf("denied records: %q", denied)
	}
	if stats == nil || stats.Component != "dockergate" || stats.Events != 4 {
		t.Errorf("stats %+v", stats)
	}
}

func TestStartWithoutSocketChangesNothing(t *testing.T) {
	dir := t.TempDir()
	g, err := New(Config{Socket: filepath.Join(dir, "docker.sock"), Emit: func(event.Record) {}, Process: proc.Info})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err == nil {
		t.Fatal("Start without a docker socket succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	// A file that is not a socket is refused too.
	if err := os.WriteFile(filepath.Join(dir, "docker.sock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Start on a regular file: %v", err)
	}
}

func TestParseStat(t *testing.T) {
	rest := " S 4242 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100"
	for _, tc := range []struct {
		in    string
		start uint64
		ppid  int
		ok    bool
	}{
		{"123 (docker)" + rest, 987654, 4242, true},
		// A command name that fakes the fields after it.
		{"123 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 0 0 1 0 5 5 5)" + rest, 987654, 4242, true},
		{"123 (a b)" + rest, 987654, 4242, true},
		{"123 docker" + rest, 0, 0, false},
		{"123 (x) S 1", 0, 0, false},
	} {
		start, ppid, err := parseStat([]byte(tc.in))
		if (err == nil) != tc.ok || start != tc.start || ppid != tc.ppid {
			t.Errorf("parseStat(%q) = %d, %d, %v", tc.in, start, ppid, err)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("123 (docker) S 4242 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100"))
	f.Add([]byte("1 ()) ) ("))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, ppid, err := parseStat(b); err == nil && strings.Count(string(b), ")") == 0 {
			t.Errorf("parsed without a command name: ppid %d", ppid)
		}
	})
}

// BenchmarkRequest is one docker API request on a new connection (as the
// CLI makes them), straight to a fake dockerd and through the gate: the
// price of the extra hop and the peer check. As root (uid 0 passes without
// reading /proc).
func BenchmarkRequest(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	dir := b.TempDir()
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: &fakeDockerd{}}
	go srv.Serve(ln)
	defer srv.Close()
	direct := filepath.Join(dir, "direct.sock")
	if err := os.Link(sock, direct); err != nil { // dockerd's own socket, kept reachable
		b.Fatal(err)
	}
	get := func(path string) {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			}}}
		resp, err := c.Get("http://docker/v1.41/version")
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			get(direct)
		}
	})
	g, err := New(Config{Socket: sock, CLIs: []string{filepath.Join(dir, "none")}, Emit: func(event.Record) {}, Process: proc.Info})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	b.Run("gate", func(b *testing.B) {
		for b.Loop() {
			get(sock)
		}
	})
	b.Run("admits-ancestry", func(b *testing.B) {
		// A non-root peer: the check walks the parents in /proc.
		pid := os.Getpid()
		for b.Loop() {
			g.admits(pid, 1000)
		}
	})
}
