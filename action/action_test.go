package action

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/escape"
	"github.com/harden-runner/harden-runner/internal/escape/mdtest"
)

// fakeRunner is a runner environment: INPUT_*, the GITHUB_* env files,
// STATE_* carried from one step to the next, an event payload.
type fakeRunner struct {
	t      *testing.T
	dir    string
	env    map[string]string
	stdout bytes.Buffer
}

func newRunner(t *testing.T, inputs map[string]string) *fakeRunner {
	t.Helper()
	r := &fakeRunner{t: t, dir: t.TempDir(), env: map[string]string{}}
	for _, f := range []string{"output", "state", "summary", "env"} {
		if err := os.WriteFile(filepath.Join(r.dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.env["GITHUB_OUTPUT"] = filepath.Join(r.dir, "output")
	r.env["GITHUB_STATE"] = filepath.Join(r.dir, "state")
	r.env["GITHUB_STEP_SUMMARY"] = filepath.Join(r.dir, "summary")
	r.env["GITHUB_ENV"] = filepath.Join(r.dir, "env")
	r.env["GITHUB_REPOSITORY"] = "octo/repo"
	r.env["GITHUB_SHA"] = strings.Repeat("a", 40)
	r.env["GITHUB_EVENT_NAME"] = "push"
	r.env["GITHUB_WORKFLOW_REF"] = "octo/repo/.github/workflows/ci.yml@refs/heads/main"
	for k, v := range inputs {
		// The runner upper-cases the name and keeps dashes.
		r.env["INPUT_"+strings.ToUpper(k)] = v
	}
	return r
}

func (r *fakeRunner) envFor() *Env {
	ws := filepath.Join(r.dir, "ws")
	_ = os.MkdirAll(ws, 0o755)
	return &Env{
		Getenv: func(k string) string { return r.env[k] }, Stdout: &r.stdout,
		Workspace: ws, HostWorkspace: "/home/runner/work/repo/repo",
		ReportDir: filepath.Join(r.dir, "report"), HostReportDir: "/home/runner/work/_temp/_github_home/harden-runner-report",
		SudoUser: "#1001",
	}
}

// fileValues parses an env file written with the multi-line syntax
// (name<<DELIM / value / DELIM).
func (r *fakeRunner) fileValues(name string) map[string]string {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]string{}
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		k, delim, ok := strings.Cut(lines[i], "<<")
		if !ok {
			continue
		}
		var v []string
		for i++; i < len(lines) && lines[i] != delim; i++ {
			v = append(v, lines[i])
		}
		out[k] = strings.Join(v, "\n")
	}
	return out
}

// nextStep carries the saved state into a new step, as the runner does.
func (r *fakeRunner) nextStep() {
	for k, v := range r.fileValues("state") {
		r.env["STATE_"+k] = v
	}
	r.stdout.Reset()
}

// commandLines returns stdout lines that the runner reads as workflow commands.
func (r *fakeRunner) commandLines() []string {
	var out []string
	for _, l := range strings.Split(r.stdout.String(), "\n") {
		if strings.HasPrefix(strings.TrimLeft(l, " \t"), "::") {
			out = append(out, l)
		}
	}
	return out
}

type fakeHost struct {
	mu       sync.Mutex
	starts   []StartRequest
	stops    int
	startErr error
	already  bool
	journal  []byte
	stopErr  error
	// unverified: the journal did not arrive over the trusted channel.
	unverified bool
	stopReqs   []StopRequest
}

func (h *fakeHost) Start(_ context.Context, req StartRequest) (*StartResult, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.starts = append(h.starts, req)
	if h.startErr != nil {
		return nil, h.startErr
	}
	return &StartResult{Already: h.already, Pid: 4242, How: "detached", SudoDisabled: []string{"/etc/sudoers.d/runner"}}, nil
}

func (h *fakeHost) Stop(_ context.Context, req StopRequest) (*Collected, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stops++
	h.stopReqs = append(h.stopReqs, req)
	if h.unverified {
		return nil, h.stopErr
	}
	return &Collected{Journal: h.journal, Verified: true, Snapshot: req.Keep}, h.stopErr
}

func TestMainStartsAgentOnce(t *testing.T) {
	r := newRunner(t, map[string]string{
		"egress-policy": "block", "allowed-endpoints": "github.com:443\n*.npmjs.org:443", "disable-sudo": "true",
		"disable-file-monitoring": "false", "disable-telemetry": "true", "token": "ghs_secret",
	})
	h := &fakeHost{}
	if err := Main(context.Background(), r.envFor(), h); err != nil {
		t.Fatalf("Main: %v\n%s", err, r.stdout.String())
	}
	if len(h.starts) != 1 {
		t.Fatalf("%d starts", len(h.starts))
	}
	d := h.starts[0].Daemon
	var eps []string
	for _, e := range d.Settings.Endpoints {
		eps = append(eps, e.String())
	}
	if d.Settings.Mode != "block" || strings.Join(eps, " ") != "github.com:443 *.npmjs.org:443" || !d.Settings.FileMonitoring ||
		d.Workspace != "/home/runner/work/repo/repo" || h.starts[0].SudoUser != "#1001" {
		t.Errorf("start request %+v", h.starts[0])
	}
	if got := r.fileValues("state")[stateStarted]; got != "true" {
		t.Errorf("state %s = %q", stateStarted, got)
	}
	// The default directory is saved too: the runner sets STATE_<key> only
	// for the keys saved, and any other STATE_ variable the post step sees
	// is one a step put in the job's environment (GITHUB_ENV).
	if got := r.fileValues("state")[StateDir]; got != "/opt/harden-runner" {
		t.Errorf("state %s = %q, want the default directory", StateDir, got)
	}
	if got := r.fileValues("output")[OutputReportPath]; got != "/home/runner/work/_temp/_github_home/harden-runner-report/report.json" {
		t.Errorf("report-path %q", got)
	}
	if !strings.Contains(r.stdout.String(), "::add-mask::ghs_secret") {
		t.Errorf("token not masked:\n%s", r.stdout.String())
	}

	// The main step after the pre step: a no-op.
	r.nextStep()
	if err := Main(context.Background(), r.envFor(), h); err != nil {
		t.Fatal(err)
	}
	if len(h.starts) != 1 {
		t.Errorf("second run started the agent again (%d starts)", len(h.starts))
	}
	if !strings.Contains(r.stdout.String(), "already enforcing") {
		t.Errorf("second run says: %s", r.stdout.String())
	}
}

func TestMainFailsLoudly(t *testing.T) {
	t.Run("bad inputs", func(t *testing.T) {
		r := newRunner(t, map[string]string{"egress-policy": "blocking", "allowed-endpoints": "ok.test:443 bad_host!:443", "disable-sudo": "maybe"})
		h := &fakeHost{}
		err := Main(context.Background(), r.envFor(), h)
		if err == nil {
			t.Fatal("no error")
		}
		if len(h.starts) != 0 {
			t.Error("agent started despite bad inputs")
		}
		cmds := r.commandLines()
		want := []string{
			`::error title=harden-runner input egress-policy::input egress-policy: "blocking": want "audit" or "block"`,
			`::error title=harden-runner input allowed-endpoints::input allowed-endpoints: "ok.test:443 bad_host!:443": `,
			`::error title=harden-runner input disable-sudo::input disable-sudo: "maybe": want true or false`,
		}
		if len(cmds) != len(want) {
			t.Fatalf("commands %q", cmds)
		}
		for i := range want {
			if !strings.HasPrefix(cmds[i], want[i]) {
				t.Errorf("command %d:\n got %s\nwant %s...", i, cmds[i], want[i])
			}
		}
	})
	t.Run("hostile input stays one line", func(t *testing.T) {
		r := newRunner(t, map[string]string{"egress-policy": "audit\n::add-mask::x\r\n::error::pwned"})
		if err := Main(context.Background(), r.envFor(), &fakeHost{}); err == nil {
			t.Fatal("no error")
		}
		cmds := r.commandLines()
		if len(cmds) != 1 || !strings.HasPrefix(cmds[0], "::error title=harden-runner input egress-policy::") {
			t.Fatalf("commands %q", cmds)
		}
	})
	t.Run("agent does not enforce", func(t *testing.T) {
		r := newRunner(t, nil)
		h := &fakeHost{startErr: errors.New("helper container exited with 1: host: PID 1 is not on the network")}
		err := Main(context.Background(), r.envFor(), h)
		if err == nil || !strings.Contains(err.Error(), "not enforcing") {
			t.Fatalf("err %v", err)
		}
		if cmds := r.commandLines(); len(cmds) != 1 || !strings.HasPrefix(cmds[0], "::error title=harden-runner::") {
			t.Errorf("commands %q", cmds)
		}
		if r.fileValues("state")[stateStarted] != "" {
			t.Error("state says started")
		}
	})
}

// journalOf builds a JSONL journal.
func journalOf(t *testing.T, recs ...event.Record) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func startStop(mode string, middle ...event.Record) []event.Record {
	recs := []event.Record{{Start: &event.Start{Time: t0, Mode: event.Mode(mode), AllowedEndpoints: []string{"github.com:443"},
		Workspace: "/home/runner/work/repo/repo", FileMonitoring: true}}}
	recs = append(recs, middle...)
	for _, c := range []event.Component{"flowlog", "resolver", "filemon", "journal", "gate"} {
		recs = append(recs, event.Record{Stats: &event.Stats{Component: c}})
	}
	return append(recs, event.Record{Stop: &event.Stop{Time: t0.Add(time.Minute)}})
}

const hostileName = "evil.test\n::add-mask::x\n::error::injected <script>alert(1)</script> [a](http://x.test) @octocat"

func hostileJournal(t *testing.T) []byte {
	p := event.Process{PID: 77, Exe: "/usr/bin/curl", Cmdline: "curl https://evil.test/%0A::warning::x"}
	return journalOf(t, startStop("block",
		event.Record{DNS: &event.DNS{Time: t0, Name: hostileName, Type: "A", Verdict: event.Blocked, Rcode: "NXDOMAIN", Process: p}},
		event.Record{DNS: &event.DNS{Time: t0, Name: "github.com", Type: "A", Verdict: event.Allowed, Answers: []string{"198.18.1.1"}, Process: p}},
		event.Record{Flow: &event.Flow{Time: t0, IP: "198.18.1.1", Port: 443, Protocol: "tcp", Verdict: event.Allowed, Process: p}},
		event.Record{Flow: &event.Flow{Time: t0, IP: "198.18.9.9", Port: 8443, Protocol: "tcp", Verdict: event.Blocked, Process: p}},
		event.Record{File: &event.File{Time: t0, Path: "src/a,b:c%0A\n::error::x.go", Event: event.Overwrite, Process: p}},
	)...)
}

// fakeGitHub is the Checks API: it records requests and answers like GitHub.
type fakeGitHub struct {
	mu       sync.Mutex
	t        *testing.T
	status   int // for create; 0 means 201
	requests []ghRequest
	// jobsStatus answers the jobs API when not 0; jobs are its pages
	// (JSON bodies), linked with a Link header.
	jobsStatus int
	jobs       []string
}

type ghRequest struct {
	Method, Path, Auth string
	Query              string
	Body               struct {
		Name       string `json:"name"`
		HeadSHA    string `json:"head_sha"`
		Status     string `json:"status"`
		Conclusion string `json:"conclusion"`
		Output     struct {
			Title       string `json:"title"`
			Summary     string `json:"summary"`
			Annotations []struct {
				Path    string `json:"path"`
				Start   int    `json:"start_line"`
				Level   string `json:"annotation_level"`
				Title   string `json:"title"`
				Message string `json:"message"`
			} `json:"annotations"`
		} `json:"output"`
	}
}

func (g *fakeGitHub) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var r ghRequest
	r.Method, r.Path, r.Auth, r.Query = req.Method, req.URL.Path, req.Header.Get("Authorization"), req.URL.RawQuery
	b, _ := io.ReadAll(req.Body)
	if err := json.Unmarshal(b, &r.Body); len(b) > 0 && err != nil {
		g.t.Errorf("request body: %v: %s", err, b)
	}
	g.requests = append(g.requests, r)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case req.Method == "POST" && req.URL.Path == "/api/v3/repos/octo/repo/check-runs":
		if g.status != 0 {
			w.WriteHeader(g.status)
			fmt.Fprint(w, `{"message":"Resource not accessible by integration"}`)
			return
		}
		w.WriteHeader(201)
		fmt.Fprint(w, `{"id":7,"html_url":"https://github.example/octo/repo/runs/7"}`)
	case req.Method == "PATCH" && req.URL.Path == "/api/v3/repos/octo/repo/check-runs/7":
		fmt.Fprint(w, `{"id":7}`)
	case req.Method == "GET" && strings.HasPrefix(req.URL.Path, "/api/v3/repos/octo/repo/actions/runs/") && g.jobsStatus != 0:
		if g.jobsStatus != http.StatusOK {
			w.WriteHeader(g.jobsStatus)
			fmt.Fprint(w, `{"message":"Resource not accessible by integration"}`)
			return
		}
		page := 1
		fmt.Sscan(req.URL.Query().Get("page"), &page)
		if page < 1 || page > len(g.jobs) {
			g.t.Errorf("jobs page %d of %d", page, len(g.jobs))
			w.WriteHeader(404)
			return
		}
		if page < len(g.jobs) {
			next := *req.URL
			q := next.Query()
			q.Set("page", fmt.Sprint(page+1))
			next.RawQuery = q.Encode()
			w.Header().Set("Link", fmt.Sprintf(`<http://%s%s>; rel="next"`, req.Host, next.String()))
		}
		fmt.Fprint(w, g.jobs[page-1])
	default:
		g.t.Errorf("unexpected request %s %s", req.Method, req.URL.Path)
		w.WriteHeader(404)
	}
}

func githubServer(t *testing.T, status int) (*fakeGitHub, string) {
	g := &fakeGitHub{t: t, status: status}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv.URL + "/api/v3"
}

func TestPostFallsBackToWorkflowCommands(t *testing.T) {
	r := newRunner(t, map[string]string{"token": "ghs_tok"})
	g, api := githubServer(t, http.StatusForbidden)
	r.env["GITHUB_API_URL"] = api
	r.env["STATE_"+stateStarted] = "true"
	h := &fakeHost{journal: hostileJournal(t)}
	env := r.envFor()
	if err := Post(context.Background(), env, h); err != nil {
		t.Fatalf("Post: %v\n%s", err, r.stdout.String())
	}
	if h.stops != 1 || len(g.requests) != 1 {
		t.Fatalf("stops %d, GitHub requests %d", h.stops, len(g.requests))
	}
	// Workflow commands: one per annotation, nothing injected.
	cmds := r.commandLines()
	if len(cmds) != 3 {
		t.Fatalf("want 3 annotations as commands, got %q", cmds)
	}
	for _, c := range cmds {
		if !strings.HasPrefix(c, "::error title=harden-runner%3A ") && !strings.HasPrefix(c, "::warning file=src/a%2Cb%3Ac%250A%0A%3A%3Aerror%3A%3Ax.go,title=") {
			t.Errorf("unexpected command line %q", c)
		}
	}
	if !strings.Contains(cmds[1], "evil.test%0A::add-mask::x%0A::error::injected") {
		t.Errorf("DNS annotation not escaped: %q", cmds[1])
	}
	// Outputs.
	out := r.fileValues("output")
	if out[OutputBlockedCount] != "2" || out[OutputReportPath] != env.HostReportDir+"/report.json" {
		t.Errorf("outputs %v", out)
	}
	for _, f := range []string{"report.json", "summary.md"} {
		if _, err := os.Stat(filepath.Join(env.ReportDir, f)); err != nil {
			t.Error(err)
		}
	}
	// The journal beside them, as the host gave it.
	if j, err := os.ReadFile(filepath.Join(env.ReportDir, "journal.jsonl")); err != nil || !bytes.Equal(j, h.journal) {
		t.Errorf("journal.jsonl in the report dir: %v (%d bytes, want %d)", err, len(j), len(h.journal))
	}
	// The summary as a user sees it.
	sum, _ := os.ReadFile(r.env["GITHUB_STEP_SUMMARY"])
	if len(sum) == 0 || len(sum) > 1<<20 {
		t.Fatalf("summary is %d bytes", len(sum))
	}
	doc := mdtest.Render(t, string(sum), false)
	var text strings.Builder
	mdtest.Walk(doc, func(n *html.Node) {
		switch {
		case n.Type == html.ElementNode && (n.Data == "script" || n.Data == "a" || n.Data == "img"):
			t.Errorf("summary renders a <%s> element", n.Data)
		case n.Type == html.TextNode:
			text.WriteString(n.Data)
		}
	})
	for _, want := range []string{"No check run was created", "checks: write", "evil.test␤::add-mask::x", "<script>alert(1)</script>", "198.18.9.9"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("rendered summary lacks %q", want)
		}
	}
}

func TestPostCreatesCheckRun(t *testing.T) {
	prHead := strings.Repeat("b", 40)
	var recs []event.Record
	for i := 0; i < 120; i++ {
		recs = append(recs, event.Record{Flow: &event.Flow{Time: t0, IP: fmt.Sprintf("198.18.%d.%d", 2+i/200, 1+i%200), Port: 443,
			Protocol: "tcp", Verdict: event.Blocked, Process: event.Process{PID: 9, Exe: "/bin/x"}}})
	}
	for _, tt := range []struct {
		event, sha string
		payload    string
	}{
		{"push", strings.Repeat("a", 40), `{}`},
		{"pull_request", prHead, `{"pull_request":{"head":{"sha":"` + prHead + `"}}}`},
		{"pull_request_target", prHead, `{"pull_request":{"head":{"sha":"` + prHead + `"}}}`},
	} {
		t.Run(tt.event, func(t *testing.T) {
			r := newRunner(t, map[string]string{"token": "ghs_tok"})
			g, api := githubServer(t, 0)
			r.env["GITHUB_API_URL"] = api
			r.env["GITHUB_EVENT_NAME"] = tt.event
			r.env["GITHUB_EVENT_PATH"] = filepath.Join(r.dir, "event.json")
			if err := os.WriteFile(r.env["GITHUB_EVENT_PATH"], []byte(tt.payload), 0o644); err != nil {
				t.Fatal(err)
			}
			// The pre step reads the payload before any step ran.
			if err := Main(context.Background(), r.envFor(), &fakeHost{}); err != nil {
				t.Fatal(err)
			}
			r.nextStep()
			// A step may rewrite the payload (the runner user's file):
			// the check run must still go to the commit the event named.
			forged := `{"pull_request":{"head":{"sha":"` + strings.Repeat("c", 40) + `"}}}`
			if err := os.WriteFile(r.env["GITHUB_EVENT_PATH"], []byte(forged), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Post(context.Background(), r.envFor(), &fakeHost{journal: journalOf(t, startStop("block", recs...)...)}); err != nil {
				t.Fatalf("Post: %v\n%s", err, r.stdout.String())
			}
			if len(g.requests) != 3 {
				t.Fatalf("%d requests, want 3 (50+50+20)", len(g.requests))
			}
			wantMethods := []string{"POST", "PATCH", "PATCH"}
			wantN := []int{50, 50, 20}
			seen := map[string]bool{}
			for i, req := range g.requests {
				if req.Method != wantMethods[i] || len(req.Body.Output.Annotations) != wantN[i] {
					t.Errorf("request %d: %s %s with %d annotations", i, req.Method, req.Path, len(req.Body.Output.Annotations))
				}
				if req.Auth != "Bearer ghs_tok" {
					t.Errorf("request %d: Authorization %q", i, req.Auth)
				}
				for _, a := range req.Body.Output.Annotations {
					if a.Path != ".github/workflows/ci.yml" || a.Start != 1 || a.Level != "failure" {
						t.Errorf("annotation %+v", a)
					}
					seen[a.Message] = true
				}
			}
			if len(seen) != 120 {
				t.Errorf("%d distinct annotations, want 120", len(seen))
			}
			first := g.requests[0].Body
			if first.HeadSHA != tt.sha || first.Name != "harden-runner" || first.Conclusion != "failure" || first.Status != "completed" {
				t.Errorf("create: head %s name %s conclusion %s status %s", first.HeadSHA, first.Name, first.Conclusion, first.Status)
			}
			if cmds := r.commandLines(); len(cmds) != 0 {
				t.Errorf("workflow commands written although the check run was created: %d", len(cmds))
			}
			if out := r.fileValues("output"); out[OutputBlockedCount] != "120" {
				t.Errorf("blocked-count %q", out[OutputBlockedCount])
			}
		})
	}
}

// TestPostEventPayloadFromStep: the event payload
// (GITHUB_EVENT_PATH, /github/workflow/event.json, a file in the runner
// user's $RUNNER_TEMP/_github_workflow) is the steps' to rewrite. A step
// that left it unparsable made go-githubactions' Context fail, and the
// post step then took GITHUB_REPOSITORY for unset: no check run, no jobs
// API, the annotations as workflow commands (at most 10 shown). One that
// put a FIFO there hung the post step in the read, before the summary,
// until the job's timeout. Neither may change what the post step does.
func TestPostEventPayloadFromStep(t *testing.T) {
	var recs []event.Record
	for i := 0; i < 20; i++ {
		recs = append(recs, event.Record{Flow: &event.Flow{Time: t0, IP: fmt.Sprintf("198.18.0.%d", 1+i), Port: 443,
			Protocol: "tcp", Verdict: event.Blocked, Process: event.Process{PID: 9, Exe: "/bin/x"}}})
	}
	for _, tc := range []string{"unparsable", "fifo"} {
		t.Run(tc, func(t *testing.T) {
			r := newRunner(t, map[string]string{"token": "ghs_tok"})
			g, api := githubServer(t, 0)
			r.env["GITHUB_API_URL"] = api
			r.env["GITHUB_EVENT_PATH"] = filepath.Join(r.dir, "event.json")
			if err := os.WriteFile(r.env["GITHUB_EVENT_PATH"], []byte(`{}`), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Main(context.Background(), r.envFor(), &fakeHost{}); err != nil {
				t.Fatal(err)
			}
			r.nextStep()
			os.Remove(r.env["GITHUB_EVENT_PATH"])
			if tc == "fifo" {
				if err := syscall.Mkfifo(r.env["GITHUB_EVENT_PATH"], 0o644); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(r.env["GITHUB_EVENT_PATH"], []byte(`{`), 0o644); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				done <- Post(context.Background(), r.envFor(), &fakeHost{journal: journalOf(t, startStop("block", recs...)...)})
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Post: %v\n%s", err, r.stdout.String())
				}
			case <-time.After(10 * time.Second):
				// Unblock every read of it so that the goroutine ends.
				for {
					if f, err := os.OpenFile(r.env["GITHUB_EVENT_PATH"], os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
						f.Close()
					}
					select {
					case <-done:
						t.Fatal("the post step hung on the event payload a step left")
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
			if len(g.requests) == 0 {
				t.Errorf("no check run: the step's payload decided\n%s", r.stdout.String())
			}
		})
	}
}

func TestPostAgentGone(t *testing.T) {
	r := newRunner(t, nil)
	r.env["STATE_"+stateStarted] = "true"
	h := &fakeHost{journal: journalOf(t, startStop("audit")[:1]...), stopErr: errors.New("host: the agent was not running at the end of the job (killed?)")}
	err := Post(context.Background(), r.envFor(), h)
	if err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("err %v", err)
	}
	sum, _ := os.ReadFile(r.env["GITHUB_STEP_SUMMARY"])
	if !strings.Contains(string(sum), "did not stop cleanly") {
		t.Errorf("summary lacks the warning:\n%s", sum)
	}
}

func TestPostWithoutStart(t *testing.T) {
	r := newRunner(t, nil)
	if err := Post(context.Background(), r.envFor(), &fakeHost{}); err != nil {
		t.Fatal(err)
	}
	if sum, _ := os.ReadFile(r.env["GITHUB_STEP_SUMMARY"]); len(sum) != 0 {
		t.Errorf("summary written: %s", sum)
	}
}

func TestHeadSHA(t *testing.T) {
	head := strings.Repeat("c", 40)
	for _, tt := range []struct{ ev, payload, want string }{
		{"push", `{"pull_request":{"head":{"sha":"` + head + `"}}}`, "merge"},
		{"pull_request", `{"pull_request":{"head":{"sha":"` + head + `"}}}`, head},
		{"pull_request", `{"pull_request":{"head":{"sha":"not-a-sha"}}}`, "merge"},
		{"pull_request", `garbage`, "merge"},
	} {
		if got := HeadSHA(tt.ev, []byte(tt.payload), "merge"); got != tt.want {
			t.Errorf("HeadSHA(%s, %s) = %s, want %s", tt.ev, tt.payload, got, tt.want)
		}
	}
}

// jobsPage is one page of the jobs API with the given jobs.
func jobsPage(jobs ...string) string {
	return `{"total_count":` + fmt.Sprint(len(jobs)) + `,"jobs":[` + strings.Join(jobs, ",") + `]}`
}

// jobJSON is a job with steps given as name, started_at, completed_at
// offsets from t0 in seconds ("" for null).
func jobJSON(name, runner, status string, steps ...[3]string) string {
	ts := func(s string) string {
		if s == "" {
			return "null"
		}
		var sec int
		fmt.Sscan(s, &sec)
		return `"` + t0.Add(time.Duration(sec)*time.Second).Format(time.RFC3339) + `"`
	}
	var ss []string
	for i, st := range steps {
		ss = append(ss, fmt.Sprintf(`{"name":%q,"number":%d,"started_at":%s,"completed_at":%s}`, st[0], i+1, ts(st[1]), ts(st[2])))
	}
	return fmt.Sprintf(`{"id":1,"name":%q,"runner_name":%q,"status":%q,"steps":[%s]}`, name, runner, status, strings.Join(ss, ","))
}

func TestPostLabelsSteps(t *testing.T) {
	p := event.Process{PID: 9, Exe: "/usr/bin/npm"}
	recs := startStop("block",
		event.Record{DNS: &event.DNS{Time: t0, Name: "early.test", Type: "A", Verdict: event.Blocked, Rcode: "NXDOMAIN", Process: p}},
		event.Record{Flow: &event.Flow{Time: t0.Add(5 * time.Second), IP: "198.18.1.1", Port: 443, Protocol: "tcp", Verdict: event.Blocked, Process: p}},
		event.Record{File: &event.File{Time: t0.Add(10 * time.Second), Path: "/home/runner/work/repo/repo/package.json", Event: event.Overwrite, Process: p}},
		event.Record{Flow: &event.Flow{Time: t0.Add(55 * time.Second), IP: "198.18.1.2", Port: 443, Protocol: "tcp", Verdict: event.Blocked, Process: p}},
	)
	ours := jobJSON("build (ubuntu)", "GitHub Actions 7", "in_progress",
		[3]string{"Set up job", "-10", "1"}, [3]string{"Run npm ci", "1", "20"},
		[3]string{"Skipped step", "", ""}, [3]string{"Post harden-runner", "50", ""})
	other := jobJSON("build (ubuntu)", "GitHub Actions 8", "in_progress", [3]string{"Other job's step", "-100", "100"})
	stale := jobJSON("lint", "GitHub Actions 7", "completed", [3]string{"Stale job's step", "-100", "100"})
	wantSteps := map[string]string{"198.18.1.1": "Run npm ci", "198.18.1.2": "Post harden-runner"}

	for _, tt := range []struct {
		name                    string
		attempt, runner, job    string
		pages                   []string
		wantPath, wantQueryPart string
	}{
		{"attempt, runner name, two pages", "2", "GitHub Actions 7", "build", []string{jobsPage(other, stale), jobsPage(ours)},
			"/api/v3/repos/octo/repo/actions/runs/123/attempts/2/jobs", "per_page=100"},
		{"no attempt, job name", "", "someone else", "build (ubuntu)", []string{jobsPage(ours, other)},
			"/api/v3/repos/octo/repo/actions/runs/123/jobs", "filter=latest"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRunner(t, map[string]string{"token": "ghs_tok"})
			g, api := githubServer(t, 0)
			g.jobsStatus, g.jobs = http.StatusOK, tt.pages
			r.env["GITHUB_API_URL"] = api
			r.env["GITHUB_RUN_ID"] = "123"
			r.env["GITHUB_RUN_ATTEMPT"] = tt.attempt
			r.env["RUNNER_NAME"] = tt.runner
			r.env["GITHUB_JOB"] = tt.job
			r.env["STATE_"+stateStarted] = "true"
			env := r.envFor()
			if err := Post(context.Background(), env, &fakeHost{journal: journalOf(t, recs...)}); err != nil {
				t.Fatalf("Post: %v\n%s", err, r.stdout.String())
			}
			var jobReqs []ghRequest
			for _, req := range g.requests {
				if req.Method == "GET" {
					jobReqs = append(jobReqs, req)
				}
			}
			if len(jobReqs) != len(tt.pages) {
				t.Fatalf("%d jobs requests, want %d", len(jobReqs), len(tt.pages))
			}
			for _, req := range jobReqs {
				if req.Path != tt.wantPath || !strings.Contains(req.Query, tt.wantQueryPart) || req.Auth != "Bearer ghs_tok" {
					t.Errorf("jobs request %s?%s auth %q, want %s?..%s..", req.Path, req.Query, req.Auth, tt.wantPath, tt.wantQueryPart)
				}
			}
			var rep struct {
				Egress []struct{ IP, Step string }
				DNS    []struct{ Name, Step string }
				Files  []struct{ Path, Step string }
			}
			b, err := os.ReadFile(filepath.Join(env.ReportDir, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Egress) != 2 {
				t.Fatalf("egress rows %+v", rep.Egress)
			}
			for _, e := range rep.Egress {
				if e.Step != wantSteps[e.IP] {
					t.Errorf("egress %s: step %q, want %q", e.IP, e.Step, wantSteps[e.IP])
				}
			}
			if len(rep.DNS) != 1 || rep.DNS[0].Step != "Set up job" {
				t.Errorf("DNS rows %+v", rep.DNS)
			}
			if len(rep.Files) != 1 || rep.Files[0].Step != "Run npm ci" {
				t.Errorf("file rows %+v", rep.Files)
			}
			sum, _ := os.ReadFile(r.env["GITHUB_STEP_SUMMARY"])
			for _, want := range []string{"| Count | Step |", "| Run npm ci |", "| Post harden\\-runner |"} {
				if !strings.Contains(string(sum), want) {
					t.Errorf("summary lacks %q:\n%s", want, sum)
				}
			}
			if strings.Contains(string(sum), "steps are unavailable") || strings.Contains(string(sum), "Stale job") || strings.Contains(string(sum), "Other job") {
				t.Errorf("summary:\n%s", sum)
			}
		})
	}

	for _, tt := range []struct {
		name   string
		status int
		runID  string
		want   string
	}{
		{"forbidden", http.StatusForbidden, "123", escape.Line("the token lacks `actions: read`")},
		{"not found", http.StatusNotFound, "123", escape.Line("the token lacks `actions: read`")},
		{"server error", http.StatusInternalServerError, "123", "500"},
		{"not in a run", http.StatusOK, "", "GITHUB\\_RUN\\_ID is not set"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRunner(t, map[string]string{"token": "ghs_tok"})
			g, api := githubServer(t, 0)
			g.jobsStatus = tt.status
			r.env["GITHUB_API_URL"] = api
			r.env["GITHUB_RUN_ID"] = tt.runID
			r.env["RUNNER_NAME"] = "GitHub Actions 7"
			r.env["STATE_"+stateStarted] = "true"
			env := r.envFor()
			if err := Post(context.Background(), env, &fakeHost{journal: journalOf(t, recs...)}); err != nil {
				t.Fatalf("Post failed because of the jobs API: %v", err)
			}
			sum, _ := os.ReadFile(r.env["GITHUB_STEP_SUMMARY"])
			if !strings.Contains(string(sum), "The jobs API is unavailable") || !strings.Contains(string(sum), tt.want) {
				t.Errorf("summary lacks the note with %q:\n%s", tt.want, sum)
			}
			if !strings.HasPrefix(string(sum), "## 🛡️ harden-runner (") {
				t.Errorf("the verdict is not the summary's first line:\n%s", sum)
			}
			if strings.Contains(string(sum), "| Step |") {
				t.Errorf("Step column without steps")
			}
			if b, _ := os.ReadFile(filepath.Join(env.ReportDir, "report.json")); !bytes.Contains(b, []byte(`"egress"`)) || bytes.Contains(b, []byte(`"step"`)) {
				t.Errorf("report.json: %s", b)
			}
			if out := r.fileValues("output"); out[OutputBlockedCount] != "3" {
				t.Errorf("blocked-count %q", out[OutputBlockedCount])
			}
		})
	}
}

// TestPostJournalTrust: a journal that did not arrive over the trusted
// channel, or arrived empty, fails the post step and says so at the top
// of the summary; report.json says whether the journal was verified, and
// the journal beside the report replaces whatever a step put there.
func TestPostJournalTrust(t *testing.T) {
	for _, tc := range []struct {
		name    string
		host    *fakeHost
		wantErr string
	}{
		{"unverified", &fakeHost{unverified: true, stopErr: errors.New("the journal did not arrive whole from the stop helper: export: the journal is truncated")}, "truncated"},
		{"unverified without an error", &fakeHost{unverified: true}, "trusted channel"},
		{"empty", &fakeHost{}, "journal is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(t, nil)
			r.env["STATE_"+stateStarted] = "true"
			err := Post(context.Background(), r.envFor(), tc.host)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want one with %q", err, tc.wantErr)
			}
			sum, _ := os.ReadFile(r.env["GITHUB_STEP_SUMMARY"])
			if !strings.HasPrefix(string(sum), "> [!CAUTION]") {
				t.Errorf("summary does not open with the caution:\n%s", sum)
			}
			if !strings.Contains(r.stdout.String(), "::error title=harden-runner::") {
				t.Errorf("no error annotation:\n%s", r.stdout.String())
			}
		})
	}
	t.Run("verified", func(t *testing.T) {
		r := newRunner(t, nil)
		r.env["STATE_"+stateStarted] = "true"
		env := r.envFor()
		if err := os.MkdirAll(env.ReportDir, 0o755); err != nil {
			t.Fatal(err)
		}
		planted := filepath.Join(env.ReportDir, "journal.jsonl")
		if err := os.WriteFile(planted, []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		j := hostileJournal(t)
		if err := Post(context.Background(), env, &fakeHost{journal: j}); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(planted); !bytes.Equal(b, j) {
			t.Errorf("the planted journal is left beside the report: %q", b)
		}
		var rep struct {
			Agent struct {
				Journal struct {
					Verified bool `json:"verified"`
					Bytes    int  `json:"bytes"`
				} `json:"journal"`
			} `json:"agent"`
		}
		b, _ := os.ReadFile(filepath.Join(env.ReportDir, "report.json"))
		if err := json.Unmarshal(b, &rep); err != nil || !rep.Agent.Journal.Verified || rep.Agent.Journal.Bytes != len(j) {
			t.Errorf("agent.journal %+v (%v)", rep.Agent.Journal, err)
		}
	})
}

// TestPostKeepEnforcement: on a GitHub-hosted runner the post step asks
// for a snapshot (the agent keeps enforcing) unless keep-enforcement is
// false; elsewhere it stops the agent unless the input says keep. The
// summary of a snapshot says that later events are not in it.
func TestPostKeepEnforcement(t *testing.T) {
	snapshot := func(t *testing.T) []byte {
		recs := startStop("block")
		recs[len(recs)-1] = event.Record{Snapshot: &event.Snapshot{Time: t0.Add(time.Minute)}}
		return journalOf(t, recs...)
	}
	for _, tc := range []struct {
		runnerEnv, input string
		keep             bool
	}{
		{"github-hosted", "", true},
		{"github-hosted", "false", false},
		{"self-hosted", "", false},
		{"", "", false},
		{"self-hosted", "true", true},
	} {
		t.Run(tc.runnerEnv+"/"+tc.input, func(t *testing.T) {
			r := newRunner(t, map[string]string{InputKeepEnforcement: tc.input})
			r.env["STATE_"+stateStarted] = "true"
			r.env["RUNNER_ENVIRONMENT"] = tc.runnerEnv
			h := &fakeHost{journal: journalOf(t, startStop("block")...)}
			if tc.keep {
				h.journal = snapshot(t)
			}
			if err := Post(context.Background(), r.envFor(), h); err != nil {
				t.Fatal(err)
			}
			if len(h.stopReqs) != 1 || h.stopReqs[0].Keep != tc.keep {
				t.Fatalf("stop requests %+v, want keep %v", h.stopReqs, tc.keep)
			}
			sum, _ := os.ReadFile(r.env["GITHUB_STEP_SUMMARY"])
			says := strings.Contains(string(sum), "events after the snapshot are not in it")
			if says != tc.keep || strings.Contains(string(sum), "did not stop cleanly") {
				t.Errorf("summary (keep %v):\n%s", tc.keep, sum)
			}
		})
	}
	t.Run("bad value", func(t *testing.T) {
		r := newRunner(t, map[string]string{InputKeepEnforcement: "maybe"})
		r.env["STATE_"+stateStarted] = "true"
		h := &fakeHost{journal: snapshot(t)}
		err := Post(context.Background(), r.envFor(), h)
		if err == nil || !strings.Contains(err.Error(), "keep-enforcement") || !strings.Contains(err.Error(), "maybe") {
			t.Fatalf("err %v", err)
		}
		if len(h.stopReqs) != 1 || !h.stopReqs[0].Keep {
			t.Errorf("a bad value did not keep enforcing: %+v", h.stopReqs)
		}
		if err := Main(context.Background(), newRunner(t, map[string]string{InputKeepEnforcement: "maybe"}).envFor(), &fakeHost{}); err == nil {
			t.Error("Main accepted keep-enforcement: maybe")
		}
	})
}

// TestPostFailsOnTamper: a journal with a tamper error (our table deleted
// by another process) fails the post step unless tamper-policy: report,
// and the error names the change either way.
func TestPostFailsOnTamper(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var j bytes.Buffer
	for _, rec := range []event.Record{
		{Start: &event.Start{Time: t0, Mode: "block"}},
		{Note: &event.Note{Time: t0.Add(time.Second), Component: "guard", Level: "error", Tamper: true,
			Message: "delete table inet harden_runner by nft (pid 42): restored", Process: &event.Process{PID: 42, Exe: "/usr/sbin/nft"}}},
		{Stop: &event.Stop{Time: t0.Add(2 * time.Second)}},
	} {
		b, _ := json.Marshal(rec)
		j.Write(append(b, '\n'))
	}
	for _, tc := range []struct {
		policy   string
		wantFail bool
	}{{"", true}, {"fail", true}, {"report", false}} {
		t.Run("tamper-policy="+tc.policy, func(t *testing.T) {
			r := newRunner(t, map[string]string{InputTamperPolicy: tc.policy})
			r.env["STATE_"+stateStarted] = "true"
			env := r.envFor()
			err := Post(context.Background(), env, &fakeHost{journal: j.Bytes()})
			if (err != nil) != tc.wantFail || (err != nil && !strings.Contains(err.Error(), "tampered")) {
				t.Fatalf("Post = %v, want failure %v", err, tc.wantFail)
			}
			b, _ := os.ReadFile(filepath.Join(env.ReportDir, "report.json"))
			if !bytes.Contains(b, []byte(`"tamper": true`)) && !bytes.Contains(b, []byte(`"tamper":true`)) {
				t.Errorf("report.json has no tamper error:\n%s", b)
			}
			// The counts are in the step log too, which no step can rewrite.
			if !strings.Contains(r.stdout.String(), "0 blocked destination(s), 0 blocked DNS name(s), 0 changed source file(s), 1 tamper error(s)") {
				t.Errorf("the step log has no counts:\n%s", r.stdout.String())
			}
		})
	}
	if _, err := TamperFails(func(string) string { return "maybe" }); err == nil || !strings.Contains(err.Error(), "tamper-policy") {
		t.Errorf("a bad tamper-policy gave %v", err)
	}
}
