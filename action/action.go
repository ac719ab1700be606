// Package action is the GitHub Action around the engine: it parses the
// inputs, has the agent started on the VM before the job's other steps
// (Main), and at the end of the job stops it and turns its journal into
// the report, the job summary, annotations and a check run (Post).
//
// The VM is reached through a Host (DockerHost in the container action:
// helper containers with the VM's PID and network namespaces, see package
// host); tests pass a fake. All runner I/O goes through Env, so a test
// drives Main and Post with a fake runner environment.
package action

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-github/v55/github"
	"github.com/sethvargo/go-githubactions"
	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/harden-runner/harden-runner/action/host"
	"github.com/harden-runner/harden-runner/agent"
	"github.com/harden-runner/harden-runner/egress/policyfile"
	"github.com/harden-runner/harden-runner/internal/escape"
	"github.com/harden-runner/harden-runner/journal"
	"github.com/harden-runner/harden-runner/post/report"
)

// State keys saved between the Action's steps (STATE_<key> in later steps).
const (
	stateStarted = "harden_runner_started"
	// StateDir is the state (STATE_harden_runner_dir in the post step)
	// that holds Env.HostDir.
	StateDir = "harden_runner_dir"
	// stateHeadSHA is the commit the check run goes to, read by the main
	// step from the event payload before any step could rewrite it.
	stateHeadSHA = "harden_runner_head_sha"
)

// Outputs.
const (
	OutputReportPath   = "report-path"
	OutputBlockedCount = "blocked-count"
)

// StartRequest is what the Host is asked to enforce.
type StartRequest struct {
	Daemon   agent.DaemonConfig
	SudoUser string // lose sudo rights; "" keeps them
}

// StartResult is what the Host did.
type StartResult struct {
	Already      bool // the agent was already enforcing; nothing changed
	Pid          int
	How          string
	SudoDisabled []string
	Warnings     []string
	Errors       []string // what the agent could not enforce (shown as errors at once)
}

// StopRequest says how the post step ends the job's enforcement.
type StopRequest struct {
	// Keep leaves the agent enforcing (the nftables table, the DNS
	// redirect, the docker gate) and takes a snapshot of its journal:
	// a GitHub-hosted VM is discarded after the job, so nothing a step
	// left running gets out after the post step.
	Keep bool
}

// Collected is the agent's journal as the post step received it.
type Collected struct {
	Journal []byte
	// Verified: the journal came whole (its length and SHA-256 checked)
	// over a channel no step can write to.
	Verified bool
	// Snapshot: the agent goes on enforcing; the journal ends with its
	// Snapshot record.
	Snapshot bool
	SHA256   string
}

// Host runs the agent on the VM.
type Host interface {
	// Start returns once the agent enforces req on the VM, or an error.
	Start(ctx context.Context, req StartRequest) (*StartResult, error)
	// Stop stops the agent (final journal flush), or with req.Keep takes
	// a snapshot of its journal, and returns the journal. The error says
	// what went wrong; the journal is returned whenever it arrived whole,
	// even with an error.
	Stop(ctx context.Context, req StopRequest) (*Collected, error)
}

// Env is the runner environment of one step.
type Env struct {
	Getenv func(string) string // os.Getenv in a real step
	Stdout io.Writer           // workflow commands go here
	// Workspace is the workspace as this process sees it (policy files are
	// read from it); HostWorkspace is the same directory on the VM.
	Workspace, HostWorkspace string
	// ReportDir is where Post writes report.json and summary.md;
	// HostReportDir is the same directory on the VM (the report-path output).
	ReportDir, HostReportDir string
	// SudoUser is the runner's user on the VM (for disable-sudo).
	SudoUser string
	// HostDockerSocket is the VM's path of the docker socket this
	// container was given (for disable-sudo-and-containers); "" means
	// dockergate's default.
	HostDockerSocket string
	// DockerImage is this action's image ID: its containers (the post
	// step, the helpers) keep docker under disable-sudo-and-containers.
	DockerImage string
	// DockerName is this action's container's name: the runner is the
	// parent of the docker CLI that runs it.
	DockerName string
	// HostDir is the agent's directory on the VM that the main step used
	// ("" for host.DefaultDir). Main saves it in the step's state (StateDir)
	// and the post step takes it from there, never from the environment:
	// a later step can add to the job's environment (GITHUB_ENV), not to
	// this action's state, and a post step pointed at a directory of the
	// step's choosing would report a journal the step wrote.
	HostDir string
	// HTTPClient is used for the GitHub API; nil means http.DefaultClient.
	HTTPClient *http.Client
	Log        *slog.Logger
}

func (e *Env) action() *githubactions.Action {
	return githubactions.New(githubactions.WithGetenv(e.Getenv), githubactions.WithWriter(e.Stdout))
}

func (e *Env) hostReportPath() string {
	return filepath.Join(e.HostReportDir, "report.json")
}

// fileCommand runs f (which writes an env file such as GITHUB_OUTPUT)
// and turns go-githubactions' panic on a missing or unwritable file into an error.
func fileCommand(name string, f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("write %s: %v", name, r)
		}
	}()
	f()
	return nil
}

// Main is the pre and main step: parse the inputs and make sure the agent
// enforces them on the VM. It is idempotent: a second run in the same job
// changes nothing. Any error fails the step (no silent fail-open).
func Main(ctx context.Context, env *Env, h Host) error {
	a := env.action()
	if env.Getenv("STATE_"+stateStarted) == "true" {
		fmt.Fprintln(env.Stdout, "harden-runner: the agent is already enforcing (started by the pre step)")
		return fileCommand("GITHUB_OUTPUT", func() { a.SetOutput(OutputReportPath, env.hostReportPath()) })
	}
	in, err := ParseInputs(a.GetInput, workspaceReader(env.Workspace))
	if err != nil {
		reportInputErrors(a, err)
		return err
	}
	if in.Token != "" {
		a.AddMask(in.Token)
	}
	// Steps lose docker under disable-sudo-and-containers; the runner
	// keeps it (its container actions and services, and this action's
	// post step).
	req := StartRequest{Daemon: agent.DaemonConfig{
		Settings:           in.Settings,
		Workspace:          env.HostWorkspace,
		DockerSocket:       env.HostDockerSocket,
		DockerTrustedImage: env.DockerImage,
		ActionContainer:    env.DockerName,
	}}
	req.Daemon.Settings.FileMonitoring = in.FileMonitoring && env.HostWorkspace != ""
	if in.DisableSudo {
		if env.SudoUser == "" {
			err := errors.New("disable-sudo: cannot tell the runner's user")
			a.Errorf("harden-runner: %v", err)
			return err
		}
		req.SudoUser = env.SudoUser
	}
	t0 := time.Now()
	res, err := h.Start(ctx, req)
	if err != nil {
		err = fmt.Errorf("the agent is not enforcing, failing the step rather than leaving the job unprotected: %w", err)
		a.WithFieldsMap(map[string]string{"title": "harden-runner"}).Errorf("%s", err)
		return err
	}
	if res.Already {
		fmt.Fprintf(env.Stdout, "harden-runner: the agent is already enforcing (pid %d); nothing changed\n", res.Pid)
	} else {
		fmt.Fprintf(env.Stdout, "harden-runner: egress-policy %s, %d allowed endpoint(s), file monitoring %v: enforcing after %d ms (agent pid %d, %s)\n",
			in.Mode, len(in.Endpoints), req.Daemon.Settings.FileMonitoring, time.Since(t0).Milliseconds(), res.Pid, res.How)
	}
	for _, f := range res.SudoDisabled {
		fmt.Fprintf(env.Stdout, "harden-runner: disable-sudo: moved %s away\n", f)
	}
	for _, w := range res.Warnings {
		a.Warningf("harden-runner: %s", w)
	}
	// What is not enforced is said now, as an error, not only in the
	// summary at the end of the job (which shows it as an error too).
	for _, e := range res.Errors {
		a.WithFieldsMap(map[string]string{"title": "harden-runner: not enforced"}).Errorf("%s", e)
	}
	if in.DisableContainers {
		fmt.Fprintln(env.Stdout, "harden-runner: disable-sudo-and-containers: docker now serves only the runner's own docker commands and containers; steps' docker commands are refused")
	}
	return errors.Join(
		fileCommand("GITHUB_STATE", func() {
			a.SaveState(stateStarted, "true")
			// Always, the default too: the runner overrides a STATE_
			// variable of the job's environment only with a key the
			// action saved, so an unsaved one is the steps' (GITHUB_ENV).
			dir := env.HostDir
			if dir == "" {
				dir = host.DefaultDir
			}
			a.SaveState(StateDir, dir)
			if gctx, _ := a.Context(); gctx != nil {
				a.SaveState(stateHeadSHA, HeadSHA(gctx.EventName, eventPayload(env.Getenv("GITHUB_EVENT_PATH")), gctx.SHA))
			}
		}),
		fileCommand("GITHUB_OUTPUT", func() { a.SetOutput(OutputReportPath, env.hostReportPath()) }),
	)
}

// eventPayload reads the event payload at path: a regular file, at most
// 16 MiB, opened without waiting on a FIFO. nil when it cannot.
func eventPayload(path string) []byte {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(f, 16<<20))
	return b
}

// reportInputErrors writes one ::error:: per bad input.
func reportInputErrors(a *githubactions.Action, err error) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		title := "harden-runner input"
		var ie *InputError
		if errors.As(e, &ie) {
			title = "harden-runner input " + ie.Input
		}
		a.WithFieldsMap(map[string]string{"title": title}).Errorf("%s", e.Error())
	}
}

// workspaceReader reads files under dir without following links out of it.
func workspaceReader(dir string) func(string) ([]byte, error) {
	if dir == "" {
		return nil
	}
	return func(name string) ([]byte, error) {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		f, err := root.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return io.ReadAll(io.LimitReader(f, policyfile.MaxSize+1))
	}
}

// Post is the post step: stop the agent (or, on a GitHub-hosted runner,
// take a snapshot of its journal and leave it enforcing until the VM
// goes; see KeepEnforcement), build the report, write it to ReportDir,
// the job summary, annotations and (with checks: write) a check run. It
// fails when the agent was not running at the end of a job it had been
// started for (something took it down), and when the journal did not
// arrive whole over the Host's trusted channel: a report without the
// agent's word is an error, never a clean report.
func Post(ctx context.Context, env *Env, h Host) error {
	// The event payload (GITHUB_EVENT_PATH) is a file of the runner user's:
	// by now a step may have rewritten it, made it unparsable (then
	// go-githubactions' Context fails whole) or a FIFO (the read blocks).
	// The post step does not read it; the main step kept what it needs.
	penv, getenv := *env, env.Getenv
	penv.Getenv = func(k string) string {
		if k == "GITHUB_EVENT_PATH" {
			return ""
		}
		return getenv(k)
	}
	env = &penv
	a := env.action()
	started := env.Getenv("STATE_"+stateStarted) == "true"
	keep, keepErr := KeepEnforcement(a.GetInput, env.Getenv)
	if keepErr != nil {
		keep = true // the safer reading of a bad value; the error fails the step
	}
	got, stopErr := h.Stop(ctx, StopRequest{Keep: keep})
	if got == nil {
		got = &Collected{}
	}
	if !started && len(got.Journal) == 0 {
		fmt.Fprintln(env.Stdout, "harden-runner: the agent was not started in this job; no report")
		return nil
	}
	// cautions say the report itself cannot be trusted: they come before
	// the verdict, which they qualify. Other notes come after it.
	var notes, cautions []string
	var errs []error
	fail := func(err error, note string) {
		a.WithFieldsMap(map[string]string{"title": "harden-runner"}).Errorf("%s", err.Error())
		cautions = append(cautions, "> [!CAUTION]\n> "+note+inlineText(err.Error())+"\n\n")
		errs = append(errs, err)
	}
	if keepErr != nil {
		fail(keepErr, "")
	}
	if stopErr != nil {
		fail(stopErr, "The agent did not stop cleanly: ")
	}
	switch {
	case !got.Verified:
		if stopErr == nil {
			fail(errors.New("the agent's journal did not arrive over the trusted channel"), "")
		}
		cautions = append(cautions, "> [!CAUTION]\n> This report has no verified journal: it does not show what happened in this job.\n\n")
	case len(got.Journal) == 0:
		fail(errors.New("the agent's journal is empty"), "")
	}
	recs, bad, err := journal.Read(bytes.NewReader(got.Journal))
	if err != nil {
		errs = append(errs, fmt.Errorf("read journal: %w", err))
	}
	steps, stepsNote := jobSteps(ctx, env, a)
	if stepsNote != "" {
		notes = append(notes, stepsNote)
	}
	how := ""
	if got.Verified {
		how = "the stop helper container's output stream (length and SHA-256 checked)"
	}
	rep := report.Build(recs, report.Options{Workspace: env.HostWorkspace, JournalBadLines: bad, Steps: steps,
		Journal: report.JournalInfo{Verified: got.Verified, Via: how, Bytes: len(got.Journal), SHA256: got.SHA256, Snapshot: got.Snapshot}})
	if root, err := report.OpenDir(env.ReportDir); err != nil {
		errs = append(errs, err)
	} else {
		if err := report.WriteRoot(root, rep); err != nil {
			errs = append(errs, err)
		}
		// The journal beside the report, for `harden-runner report`;
		// written over whatever a step may have put there.
		if len(got.Journal) > 0 {
			if err := report.WriteFile(root, "journal.jsonl", got.Journal, 0o644); err != nil {
				errs = append(errs, fmt.Errorf("write the journal: %w", err))
			}
		}
		root.Close()
	}
	// Tampering with our enforcement is an error of the job unless the
	// workflow said to only report it (tamper-policy: report).
	if t := rep.Tampering(); len(t) > 0 {
		if fails, _ := TamperFails(a.GetInput); fails {
			fail(fmt.Errorf("enforcement was tampered with %d time(s) during the job (restored where possible; first: %s); tamper-policy: report only records it",
				len(t), t[0].Message), "")
		}
	}
	anns := Annotations(rep)
	notes = append(notes, publish(ctx, env, a, rep, anns)...)
	head := strings.Join(cautions, "")
	summary := head + rep.SummaryNotes(report.DefaultSummaryMax-len(head), notes) // verdict first, notes after
	blocked := rep.Counts.DestinationsBlocked + rep.Counts.DNSBlockedNames
	errs = append(errs,
		fileCommand("GITHUB_STEP_SUMMARY", func() { a.AddStepSummary(summary) }),
		fileCommand("GITHUB_OUTPUT", func() {
			a.SetOutput(OutputReportPath, env.hostReportPath())
			a.SetOutput(OutputBlockedCount, strconv.Itoa(blocked))
		}))
	if got.Snapshot {
		fmt.Fprintln(env.Stdout, "harden-runner: the agent keeps enforcing until the VM is discarded (keep-enforcement); the report is a snapshot of its journal")
	}
	// The counts in the step log too: the summary and GITHUB_OUTPUT are
	// files a process a step left running can rewrite before the runner
	// reads them; the log is not (action/README, "The report is evidence").
	fmt.Fprintf(env.Stdout, "harden-runner: %s, %d tamper error(s)\n", checkTitle(rep), len(rep.Tampering()))
	fmt.Fprintf(env.Stdout, "harden-runner: report written to %s (%d blocked)\n", env.hostReportPath(), blocked)
	return errors.Join(errs...)
}

// jobsTimeout bounds the jobs API calls: the report must not wait on them.
const jobsTimeout = 30 * time.Second

// jobSteps fetches this job's step windows from the jobs API. When it
// cannot, it returns a note for the top of the summary saying why.
func jobSteps(ctx context.Context, env *Env, a *githubactions.Action) ([]report.Step, string) {
	gctx, _ := a.Context()
	owner, repo := gctx.Repo()
	token := a.GetInput(InputToken)
	var reason string
	switch {
	case token == "":
		reason = "no token was given"
	case owner == "" || repo == "":
		reason = "GITHUB_REPOSITORY is not set"
	case gctx.RunID == 0:
		reason = "GITHUB_RUN_ID is not set"
	default:
		gh, err := apiClient(env, gctx.APIURL, token)
		if err == nil {
			ctx, cancel := context.WithTimeout(ctx, jobsTimeout)
			defer cancel()
			var steps []report.Step
			steps, err = JobSteps(ctx, gh, JobQuery{Owner: owner, Repo: repo, RunID: gctx.RunID,
				RunAttempt: gctx.RunAttempt, RunnerName: env.Getenv("RUNNER_NAME"), Job: gctx.Job})
			if err == nil {
				return steps, ""
			}
		}
		reason = err.Error()
		if errors.Is(err, ErrNoActionsRead) {
			reason = "the token lacks `actions: read`; add `permissions: actions: read` to the job"
		}
		if env.Log != nil {
			env.Log.Warn("workflow steps unavailable", "err", err)
		}
	}
	return nil, fmt.Sprintf("> [!NOTE]\n> The jobs API is unavailable (%s): steps are named from their processes as the runner names a step without `name:` (\"Run npm ci\"), and events of processes outside any step have none.\n",
		inlineText(reason))
}

// publish creates the check run, or writes the annotations as workflow
// commands when it cannot; it returns notes for the top of the summary.
func publish(ctx context.Context, env *Env, a *githubactions.Action, rep *report.Report, anns []Annotation) []string {
	if len(anns) == 0 {
		return nil
	}
	gctx, _ := a.Context()
	owner, repo := gctx.Repo()
	in := a.GetInput(InputToken)
	var reason string
	switch {
	case in == "":
		reason = "no token was given"
	case owner == "" || repo == "":
		reason = "GITHUB_REPOSITORY is not set"
	default:
		head := env.Getenv("STATE_" + stateHeadSHA)
		if !isHexSHA(head) {
			head = gctx.SHA
		}
		gh, err := apiClient(env, gctx.APIURL, in)
		if err == nil {
			var link string
			link, err = PublishCheckRun(ctx, gh, CheckRun{
				Owner: owner, Repo: repo, HeadSHA: head,
				Name: "harden-runner", Conclusion: conclusion(rep), Title: checkTitle(rep),
				Summary:      "See the job summary of the run for the full report.",
				WorkflowPath: workflowPath(env.Getenv("GITHUB_WORKFLOW_REF")), Annotations: anns,
			})
			if err == nil {
				fmt.Fprintf(env.Stdout, "harden-runner: check run with %d annotation(s): %s\n", len(anns), link)
				return nil
			}
		}
		reason = err.Error()
		if errors.Is(err, ErrNoPermission) {
			reason = "the token lacks `checks: write` (add `permissions: checks: write` to the job for annotations on the pull request)"
		}
	}
	for _, an := range anns {
		fmt.Fprintln(env.Stdout, an.WorkflowCommand())
	}
	note := fmt.Sprintf("> [!NOTE]\n> No check run was created (%s), so the %d annotation(s) were written as workflow commands; GitHub shows at most 10 per step.\n",
		inlineText(reason), len(anns))
	return []string{note}
}

func apiClient(env *Env, apiURL, token string) (*github.Client, error) {
	hc := env.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient()
	}
	gh := github.NewClient(hc).WithAuthToken(token)
	if apiURL != "" && apiURL != "https://api.github.com" {
		u, err := url.Parse(strings.TrimSuffix(apiURL, "/") + "/")
		if err != nil {
			return nil, fmt.Errorf("GITHUB_API_URL: %w", err)
		}
		gh.BaseURL = u
	}
	return gh, nil
}

// defaultHTTPClient is the GitHub API's client: TLS roots of its own (the
// NSS bundle, golang.org/x/crypto/x509roots/fallback), never the system's.
// The image has no CA bundle, so system roots were none and every API call
// failed; and SSL_CERT_FILE/SSL_CERT_DIR from the job's environment (a step
// can set them through GITHUB_ENV) would otherwise be the trust roots, with
// HTTPS_PROXY a man in the middle holding the token. A proxy is still
// honoured (self-hosted runners need one): with fixed roots it can only
// block, which the summary reports.
func defaultHTTPClient() *http.Client {
	pool := x509.NewCertPool()
	for r := range bundle.Roots() {
		c, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			continue
		}
		if r.Constraint == nil {
			pool.AddCert(c)
		} else {
			pool.AddCertWithConstraint(c, r.Constraint)
		}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t, Timeout: time.Minute}
}

func conclusion(r *report.Report) string {
	switch {
	case r.Counts.DestinationsBlocked+r.Counts.DNSBlockedNames > 0:
		return "failure"
	case r.Counts.Files > 0:
		return "neutral"
	}
	return "success"
}

func checkTitle(r *report.Report) string {
	return fmt.Sprintf("%d blocked destination(s), %d blocked DNS name(s), %d changed source file(s)",
		r.Counts.DestinationsBlocked, r.Counts.DNSBlockedNames, r.Counts.Files)
}

// workflowPath turns GITHUB_WORKFLOW_REF (owner/repo/.github/workflows/x.yml@ref)
// into the repository path of the workflow file.
func workflowPath(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	parts := strings.SplitN(ref, "/", 3)
	if len(parts) == 3 && strings.HasPrefix(parts[2], ".github/") {
		return parts[2]
	}
	return ""
}

// inlineText makes an error message one inert line of markdown.
func inlineText(s string) string { return escape.Line(s) }
