package dockergate

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/fakerunner"
	"github.com/harden-runner/harden-runner/proc"
	"github.com/harden-runner/harden-runner/runnerid"
)

// fakeDockerd is the far end: an HTTP server on a unix socket that logs
// the "case" query parameter of every request that reaches it, and knows
// the containers in images (ID → image ID) and their inits' pids.
type fakeDockerd struct {
	mu     sync.Mutex
	seen   []string
	images map[string]string
	pids   map[string]int
}

func (d *fakeDockerd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if id, ok := strings.CutPrefix(r.URL.Path, "/containers/"); ok && strings.HasSuffix(id, "/json") {
		img, ok := d.images[strings.TrimSuffix(id, "/json")]
		if !ok {
			http.Error(w, `{"message":"no such container"}`, http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, `{"Id":%q,"Image":%q,"State":{"Pid":%d}}`, id, img, d.pids[strings.TrimSuffix(id, "/json")])
		return
	}
	d.seen = append(d.seen, r.URL.Query().Get("case"))
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

// gateTest is a gate in front of a fake dockerd in a temporary directory,
// with a stand-in runner (pinned) and a stand-in docker CLI (this test
// binary, copied).
type gateTest struct {
	dir, sock, docker string
	d                 *fakeDockerd
	r                 *fakerunner.Runner
	g                 *Gate
	mu                sync.Mutex
	recs              []event.Record
}

func startGate(t *testing.T, allow AllowFor) *gateTest {
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify permission events")
	}
	for _, tool := range []string{"bash", "curl", "setpriv", "unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	gt := &gateTest{dir: fakerunner.TempDir(t)}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	gt.docker = filepath.Join(gt.dir, "bin/docker")
	copyFile(t, self, gt.docker)
	// The runner runs as an unprivileged user, and was there first.
	gt.r = fakerunner.Start(t, filepath.Join(gt.dir, "runner"), fakerunner.Nobody)
	wpid, err := gt.r.Pid()
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := runnerid.FromAncestry(wpid)
	if err != nil {
		t.Fatal(err)
	}
	gt.sock = filepath.Join(gt.dir, "run/docker.sock")
	if err := os.MkdirAll(filepath.Dir(gt.sock), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", gt.sock)
	if err != nil {
		t.Fatal(err)
	}
	// As if nobody were in the docker group: without the gate it gets in.
	if err := os.Chmod(gt.sock, 0o666); err != nil {
		t.Fatal(err)
	}
	gt.d = &fakeDockerd{images: map[string]string{"0123456789ab": "sha256:ours", "ba9876543210": "sha256:theirs"},
		pids: map[string]int{"0123456789ab": containerInit(t), "ba9876543210": containerInit(t)}}
	srv := &http.Server{Handler: gt.d}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	emit := func(r event.Record) { gt.mu.Lock(); gt.recs = append(gt.recs, r); gt.mu.Unlock() }
	gt.g, err = New(Config{Socket: gt.sock, CLIs: []string{gt.docker, filepath.Join(gt.dir, "missing")}, Runner: pinned,
		AllowFor: allow, TrustedImage: "sha256:ours", Emit: emit, Process: proc.Info, Container: fakeContainer})
	if err != nil {
		t.Fatal(err)
	}
	if err := gt.g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gt.g.Close() })
	if got := gt.g.Watched(); len(got) != 1 || got[0] != gt.docker {
		t.Errorf("watched %v", got)
	}
	return gt
}

// fakeContainer stands in for the cgroup lookup: the test's "containers"
// are processes in their own PID namespace with HR_CONTAINER in their
// environment (the gate still checks the namespace and asks dockerd).
func fakeContainer(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, "HR_CONTAINER="); ok {
			return v
		}
	}
	return ""
}

// curl is a request for case c, for sh -c.
func (gt *gateTest) curl(c string) string {
	return "curl -s -o /dev/null -w %{http_code} --unix-socket " + gt.sock + " http://docker/v1.41/containers/json?case=" + c
}

// inContainer runs curl for case c as root as container id: in the PID
// namespace of its init, or of no container for id "". Either way with
// the id the stand-in cgroup lookup reads.
func (gt *gateTest) inContainer(id, c string) *exec.Cmd {
	if pid, ok := gt.d.pids[id]; ok {
		cmd := exec.Command("nsenter", "--target", strconv.Itoa(pid), "--pid", "--", "sh", "-c", gt.curl(c))
		cmd.Env = append(os.Environ(), "HR_CONTAINER="+id)
		return cmd
	}
	return gt.forged(id, c)
}

// forged runs curl for case c as root in a new PID namespace of its own,
// in a "cgroup" that names container id: what a step gets with unshare
// and a systemd user scope called docker-<ID>.scope.
func (gt *gateTest) forged(id, c string) *exec.Cmd {
	cmd := exec.Command("unshare", "--pid", "--fork", "sh", "-c", gt.curl(c))
	cmd.Env = append(os.Environ(), "HR_CONTAINER="+id)
	return cmd
}

// containerInit starts a stand-in container's init, the first process of
// a new PID namespace, and returns its pid.
func containerInit(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("unshare", "--pid", "--fork", "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := strconv.Itoa(cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile("/proc/" + p + "/task/" + p + "/children")
		if f := strings.Fields(string(b)); len(f) > 0 {
			pid, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatal("unshare started no child")
	return 0
}

// TestGate: only the pinned runner's own docker CLI and the trusted
// containers get through; every trick a step has to look like the runner
// is refused, judged by what reached the fake dockerd.
func TestGate(t *testing.T) {
	gt := startGate(t, AllowRunner)
	sock, docker, r := gt.sock, gt.docker, gt.r
	// A step's copy of the runner, started after the pin (with a
	// Runner.Listener copy beside it, so it looks the part).
	fake := fakerunner.Start(t, filepath.Join(gt.dir, "fake"), func(argv ...string) *exec.Cmd {
		return fakerunner.Nobody(argv...)
	})
	lone := filepath.Join(gt.dir, "lone/Runner.Worker")
	copyFile(t, "/bin/bash", lone)
	for _, tc := range []struct {
		name  string
		c     string
		run   func(c string) (string, error)
		admit bool
	}{
		{"the runner's docker CLI", "runner-cli", func(c string) (string, error) {
			return r.Run("exec " + docker + " get " + sock + " " + c)
		}, false}, // sh -c 'exec docker': the shell exec'd it, not the runner
		{"the runner's own fork of docker", "runner-fork", func(c string) (string, error) {
			return r.Exec("env", docker, "get", sock, c)
		}, false}, // env exec'd docker: env is not the runner either
		{"a step's process", "step", func(c string) (string, error) {
			return r.Run(gt.curl(c))
		}, false},
		{"a CLI plugin of the runner's docker", "plugin", func(c string) (string, error) {
			return runnerCLI(r, docker, "plugin", sock, c)
		}, false},
		{"a daemon the runner's docker left behind", "daemon", func(c string) (string, error) {
			if out, err := runnerCLI(r, docker, "daemon", sock, c, filepath.Join(gt.dir, "runner/io/daemon.out")); err != nil || out != "started" {
				return out, err
			}
			return waitFile(filepath.Join(gt.dir, "runner/io/daemon.out"))
		}, false},
		{"bash copied as Runner.Worker, forking docker", "copy-fork", func(c string) (string, error) {
			return runnerCLI(fake, docker, "get", sock, c)
		}, false},
		{"bash copied as Runner.Worker, exec'ing docker", "copy-exec", func(c string) (string, error) {
			b, err := fakerunner.Nobody(lone, "-c", "exec "+docker+" get "+sock+" "+c).CombinedOutput()
			return string(b), err
		}, false},
		{"exec -a Runner.Worker", "exec-a", func(c string) (string, error) {
			return r.Run("bash -c 'exec -a Runner.Worker " + docker + " get " + sock + " " + c + "'")
		}, false},
		{"root on the host", "root", func(c string) (string, error) {
			b, err := exec.Command("sh", "-c", gt.curl(c)).CombinedOutput()
			return string(b), err
		}, false},
		{"root in its own PID namespace, no container", "unshare", func(c string) (string, error) {
			b, err := gt.inContainer("", c).CombinedOutput()
			return string(b), err
		}, false},
		{"root in a container dockerd does not know", "unknown-container", func(c string) (string, error) {
			b, err := gt.inContainer("feedfeedfeed", c).CombinedOutput()
			return string(b), err
		}, false},
		{"root in another image's container", "their-container", func(c string) (string, error) {
			b, err := gt.inContainer("ba9876543210", c).CombinedOutput()
			return string(b), err
		}, false},
		{"root in this action's container", "our-container", func(c string) (string, error) {
			b, err := gt.inContainer("0123456789ab", c).CombinedOutput()
			return string(b), err
		}, true},
		{"root in its own PID namespace, in a cgroup named after this action's container", "forged-container", func(c string) (string, error) {
			b, err := gt.forged("0123456789ab", c).CombinedOutput()
			return string(b), err
		}, false},
		{"the runner's docker CLI, forked and exec'd by the runner itself", "runner-own", func(c string) (string, error) {
			return runnerCLI(r, docker, "get", sock, c)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.run(tc.c)
			if err != nil {
				t.Fatalf("%v %s", err, out)
			}
			want := map[bool]string{true: "200", false: "403"}[tc.admit]
			if out != want {
				t.Errorf("status %q, want %s", out, want)
			}
			if gt.d.reached(tc.c) != tc.admit {
				t.Errorf("dockerd reached: %v, want %v", gt.d.reached(tc.c), tc.admit)
			}
		})
	}

	// The denial is readable: docker prints the message.
	out, _ := fakerunner.Nobody("sh", "-c", "curl -s --unix-socket "+sock+" http://docker/v1.41/version").Output()
	if !strings.Contains(string(out), "disable-sudo-and-containers") {
		t.Errorf("denied answer: %s", out)
	}

	if err := gt.g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gt.g.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(sock), HiddenDir)); !os.IsNotExist(err) {
		t.Errorf("hidden dir left: %v", err)
	}
	if out, err := fakerunner.Nobody("sh", "-c", gt.curl("after")).CombinedOutput(); err != nil || string(out) != "200" || !gt.d.reached("after") {
		t.Errorf("after Close, dockerd's socket is not back: %v %s", err, out)
	}

	gt.mu.Lock()
	defer gt.mu.Unlock()
	var denied, allowed []string
	var stats *event.Stats
	for _, r := range gt.recs {
		if e := r.Exec; e != nil {
			if e.Program != sock {
				t.Errorf("exec record %+v", e)
			}
			switch e.Verdict {
			case event.Blocked:
				denied = append(denied, e.Detail)
			case event.Allowed:
				allowed = append(allowed, fmt.Sprintf("%s by %s in %q", e.Detail, filepath.Base(e.Process.Exe), e.Process.Container))
			}
		}
		if r.Stats != nil {
			stats = r.Stats
		}
	}
	slices.Sort(allowed)
	if want := []string{
		"GET /v1.41/containers/json ×1 by curl in \"0123456789ab\"",
		"GET /v1.41/containers/json ×1 by docker in \"\"",
	}; !slices.Equal(allowed, want) {
		t.Errorf("admitted requests journaled:\n%s\nwant\n%s", strings.Join(allowed, "\n"), strings.Join(want, "\n"))
	}
	if len(denied) != 14 || denied[0] != "GET /v1.41/containers/json" {
		t.Errorf("denied records: %d %q", len(denied), denied)
	}
	if stats == nil || stats.Component != "dockergate" || stats.Events != 16 {
		t.Errorf("stats %+v", stats)
	}
}

// runnerCLI has the runner fork and exec the stand-in docker CLI itself,
// as Runner.Worker runs its docker commands.
func runnerCLI(r *fakerunner.Runner, docker string, args ...string) (string, error) {
	return r.Exec(append([]string{docker}, args...)...)
}

// waitFile waits for a file to have content.
func waitFile(path string) (string, error) {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b), nil
		}
	}
	return "", fmt.Errorf("%s stayed empty", path)
}

// TestGateContainers: with allow-docker-for: containers, any container
// dockerd runs gets docker; a step's own PID namespace still does not.
func TestGateContainers(t *testing.T) {
	gt := startGate(t, AllowContainers)
	for _, tc := range []struct {
		id, c string
		admit bool
	}{
		{"ba9876543210", "their-container", true},
		{"0123456789ab", "our-container", true},
		{"", "unshare", false},
		{"feedfeedfeed", "unknown-container", false},
	} {
		out, err := gt.inContainer(tc.id, tc.c).CombinedOutput()
		if tc.id != "" && tc.admit {
			// The same container's ID, from a PID namespace of a step's own.
			forged, ferr := gt.forged(tc.id, tc.c+"-forged").CombinedOutput()
			if ferr != nil || string(forged) != "403" || gt.d.reached(tc.c+"-forged") {
				t.Errorf("%s from a step's own PID namespace: %v %s, reached %v; want 403", tc.c, ferr, forged, gt.d.reached(tc.c+"-forged"))
			}
		}
		if err != nil {
			t.Fatalf("%s: %v %s", tc.c, err, out)
		}
		if want := map[bool]string{true: "200", false: "403"}[tc.admit]; string(out) != want || gt.d.reached(tc.c) != tc.admit {
			t.Errorf("%s: status %s, reached %v; want admitted %v", tc.c, out, gt.d.reached(tc.c), tc.admit)
		}
	}
}

func TestStartWithoutSocketChangesNothing(t *testing.T) {
	dir := t.TempDir()
	g, err := New(Config{Socket: filepath.Join(dir, "docker.sock"), Emit: func(event.Record) {}, Process: proc.Info, Container: proc.ContainerID})
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

// BenchmarkRequest is one docker API request on a new connection (as the
// CLI makes them), straight to a fake dockerd and through the gate: the
// price of the extra hop, the peer check and the journal. The client is
// checked as the runner's docker CLI would be (its pid, start time and
// executable), not waved through as the agent.
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
		t0 := cpuTime()
		for b.Loop() {
			get(direct)
		}
		b.ReportMetric(float64((cpuTime()-t0).Microseconds())/float64(b.N), "cpu-µs/op")
	})
	g, err := New(Config{Socket: sock, CLIs: []string{filepath.Join(dir, "none")}, Emit: func(event.Record) {}, Process: proc.Info, Container: proc.ContainerID})
	if err != nil {
		b.Fatal(err)
	}
	g.self = -1
	start, _, err := runnerid.Stat(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		b.Fatal(err)
	}
	g.remember(os.Getpid(), cliProc{start: start, dev: uint64(st.Dev), ino: st.Ino})
	if err := g.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	b.Run("gate", func(b *testing.B) {
		t0 := cpuTime()
		for b.Loop() {
			get(sock)
		}
		b.ReportMetric(float64((cpuTime()-t0).Microseconds())/float64(b.N), "cpu-µs/op")
	})
	b.Run("admits", func(b *testing.B) {
		pid := os.Getpid()
		for b.Loop() {
			if why, _, _ := g.admits(pid); why != byRunnerCLI {
				b.Fatalf("admits: %q", why)
			}
		}
	})
}

func TestEndpoint(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ in, ep, ctr, image string }{
		{"/v1.41/containers/json", "/v1.41/containers/json", "", ""},
		{"/v1.41/containers/create", "/v1.41/containers/create", "", ""},
		{"/v1.41/containers/" + id + "/start", "/v1.41/containers/{id}/start", "0123456789ab", ""},
		{"/containers/abc/json", "/containers/{id}/json", "abc", ""},
		{"/v1.41/containers/job-container-long-name", "/v1.41/containers/{id}", "job-container-long-name", ""},
		{"/v1.41/exec/" + id + "/start", "/v1.41/exec/{id}/start", "", ""},
		{"/v1.41/images/ghcr.io/o/r:1/json", "/v1.41/images/{name}/json", "", "ghcr.io/o/r:1"},
		{"/v1.41/images/alpine", "/v1.41/images/{name}", "", "alpine"},
		{"/v1.41/images/create", "/v1.41/images/create", "", ""},
		{"/v1.41/images/json", "/v1.41/images/json", "", ""},
		{"/_ping", "/_ping", "", ""},
		{"", "", "", ""},
		{"/containers/", "/containers/", "", ""},
	} {
		ep, ctr, image := endpoint(tc.in)
		if ep != tc.ep || ctr != tc.ctr || image != tc.image {
			t.Errorf("endpoint(%q) = %q, %q, %q; want %q, %q, %q", tc.in, ep, ctr, image, tc.ep, tc.ctr, tc.image)
		}
	}
}

func FuzzEndpoint(f *testing.F) {
	f.Add("/v1.41/images/a/b/c/json")
	f.Add("/v1.41/containers/x/attach")
	f.Add("//images//")
	f.Fuzz(func(t *testing.T, path string) {
		ep, _, _ := endpoint(path)
		if strings.Count(ep, "/") > strings.Count(path, "/") {
			t.Errorf("endpoint(%q) = %q: more segments than the path", path, ep)
		}
	})
}

func TestExposed(t *testing.T) {
	var list []listed
	if err := json.Unmarshal([]byte(`[
	 {"Id":"aaaaaaaaaaaaaaaa","Names":["/job"],"Image":"node:20","ImageID":"sha256:node","State":"running",
	  "Mounts":[{"Type":"bind","Source":"/var/run/docker.sock","Destination":"/var/run/docker.sock"}]},
	 {"Id":"bbbbbbbbbbbbbbbb","Names":["/svc"],"Image":"redis","ImageID":"sha256:redis","State":"running",
	  "Mounts":[{"Type":"bind","Source":"/run/docker.sock","Destination":"/docker.sock"}]},
	 {"Id":"cccccccccccccccc","Names":["/ours"],"Image":"harden-runner","ImageID":"sha256:ours","State":"running",
	  "Mounts":[{"Type":"bind","Source":"/var/run/docker.sock","Destination":"/var/run/docker.sock"}]},
	 {"Id":"dddddddddddddddd","Names":["/plain"],"Image":"alpine","ImageID":"sha256:alpine","State":"exited",
	  "Mounts":[{"Type":"bind","Source":"/home/runner/work","Destination":"/w"},{"Type":"volume","Source":"/var/run/docker.sock"}]}
	]`), &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range exposed(list, "/var/run/docker.sock", "sha256:ours") {
		got = append(got, c.Names[0])
	}
	if !slices.Equal(got, []string{"/job", "/svc"}) {
		t.Errorf("exposed: %q", got)
	}
}

// cpuTime is this process's CPU time (user + system): client, gate and
// fake dockerd together, so a difference is the gate's own cost, which
// other load on the machine does not inflate as it does wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
