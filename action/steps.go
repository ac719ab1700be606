package action

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-github/v55/github"

	"github.com/harden-runner/harden-runner/post/report"
)

// JobQuery names the job whose steps JobSteps fetches.
type JobQuery struct {
	Owner, Repo string
	RunID       int64
	RunAttempt  int64  // 0: the run's latest attempt
	RunnerName  string // RUNNER_NAME; the job is the one that ran on this runner
	Job         string // GITHUB_JOB; used when no job ran on RunnerName
}

// ErrNoActionsRead means the token may not read the run's jobs (it lacks
// `actions: read`).
var ErrNoActionsRead = errors.New("the token lacks actions: read")

// maxJobPages bounds the jobs API pages read (100 jobs each).
const maxJobPages = 10

// JobSteps returns the time windows of the steps of the job q names, from
// the jobs API. A step that has not started has zero times; one still
// running has a zero End.
func JobSteps(ctx context.Context, gh *github.Client, q JobQuery) ([]report.Step, error) {
	var jobs []*github.WorkflowJob
	opt := github.ListOptions{PerPage: 100}
	for page := 0; page < maxJobPages; page++ {
		var (
			js   *github.Jobs
			resp *github.Response
			err  error
		)
		if q.RunAttempt > 0 {
			// go-github v55 has no wrapper for the per-attempt endpoint.
			u := fmt.Sprintf("repos/%s/%s/actions/runs/%d/attempts/%d/jobs?per_page=%d&page=%d",
				q.Owner, q.Repo, q.RunID, q.RunAttempt, opt.PerPage, max(opt.Page, 1))
			var req *http.Request
			req, err = gh.NewRequest(http.MethodGet, u, nil)
			if err != nil {
				return nil, fmt.Errorf("list jobs of run %d: %w", q.RunID, err)
			}
			js = new(github.Jobs)
			resp, err = gh.Do(ctx, req, js)
		} else {
			js, resp, err = gh.Actions.ListWorkflowJobs(ctx, q.Owner, q.Repo, q.RunID,
				&github.ListWorkflowJobsOptions{Filter: "latest", ListOptions: opt})
		}
		if err != nil {
			if resp != nil && (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound) {
				return nil, fmt.Errorf("list jobs of run %d: %w (%v)", q.RunID, ErrNoActionsRead, err)
			}
			return nil, fmt.Errorf("list jobs of run %d: %w", q.RunID, err)
		}
		jobs = append(jobs, js.Jobs...)
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	job := pickJob(jobs, q)
	if job == nil {
		return nil, fmt.Errorf("list jobs of run %d: no job ran on runner %q or is named %q", q.RunID, q.RunnerName, q.Job)
	}
	steps := make([]report.Step, 0, len(job.Steps))
	for _, s := range job.Steps {
		st := report.Step{Name: s.GetName()}
		if s.StartedAt != nil {
			st.Start = s.StartedAt.Time
		}
		if s.CompletedAt != nil {
			st.End = s.CompletedAt.Time
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// pickJob finds this job: the one that ran on this runner (an unfinished
// one first), else the first named q.Job.
func pickJob(jobs []*github.WorkflowJob, q JobQuery) *github.WorkflowJob {
	var byRunner, byName *github.WorkflowJob
	for _, j := range jobs {
		if q.RunnerName != "" && j.GetRunnerName() == q.RunnerName {
			if byRunner == nil || byRunner.GetStatus() == "completed" && j.GetStatus() != "completed" {
				byRunner = j
			}
		}
		if byName == nil && q.Job != "" && j.GetName() == q.Job {
			byName = j
		}
	}
	if byRunner != nil {
		return byRunner
	}
	return byName
}
