package action

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/google/go-github/v55/github"
)

// batchSize is the Checks API's limit of annotations per request.
const batchSize = 50

// CheckRun is what PublishCheckRun creates.
type CheckRun struct {
	Owner, Repo string
	HeadSHA     string
	Name        string
	Conclusion  string // success, neutral, failure
	Title       string
	Summary     string // markdown; cut to the API's 65535 characters
	// WorkflowPath is the repository path annotations without a file of
	// their own are attached to (the workflow file), line 1.
	WorkflowPath string
	Annotations  []Annotation
}

// ErrNoPermission means the token may not create check runs (it lacks
// `checks: write`, or it is a fork's read-only token).
var ErrNoPermission = errors.New("the token lacks checks: write")

// PublishCheckRun creates a completed check run carrying all annotations,
// in requests of at most 50: one create, then an update per further batch.
// It returns the run's HTML URL.
func PublishCheckRun(ctx context.Context, gh *github.Client, run CheckRun) (string, error) {
	anns := make([]*github.CheckRunAnnotation, 0, len(run.Annotations))
	for _, a := range run.Annotations {
		path := a.Path
		if path == "" {
			path = run.WorkflowPath
		}
		if path == "" {
			path = ".github"
		}
		anns = append(anns, &github.CheckRunAnnotation{
			Path: github.String(path), StartLine: github.Int(1), EndLine: github.Int(1),
			AnnotationLevel: github.String(a.Level), Title: github.String(cut(a.Title, 255)),
			Message: github.String(cut(a.Message, 64<<10-1)),
		})
	}
	output := func(batch []*github.CheckRunAnnotation) *github.CheckRunOutput {
		return &github.CheckRunOutput{Title: github.String(run.Title), Summary: github.String(cut(run.Summary, 65535)), Annotations: batch}
	}
	first := anns[:min(batchSize, len(anns))]
	cr, resp, err := gh.Checks.CreateCheckRun(ctx, run.Owner, run.Repo, github.CreateCheckRunOptions{
		Name: run.Name, HeadSHA: run.HeadSHA, Status: github.String("completed"),
		Conclusion: github.String(run.Conclusion), Output: output(first),
	})
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound) {
			return "", fmt.Errorf("create check run: %w (%v)", ErrNoPermission, err)
		}
		return "", fmt.Errorf("create check run: %w", err)
	}
	for i := len(first); i < len(anns); i += batchSize {
		batch := anns[i:min(i+batchSize, len(anns))]
		if _, _, err := gh.Checks.UpdateCheckRun(ctx, run.Owner, run.Repo, cr.GetID(), github.UpdateCheckRunOptions{
			Name: run.Name, Output: output(batch),
		}); err != nil {
			return cr.GetHTMLURL(), fmt.Errorf("add annotations %d-%d to check run %d: %w", i+1, i+len(batch), cr.GetID(), err)
		}
	}
	return cr.GetHTMLURL(), nil
}

// cut shortens s to at most n bytes at a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-3]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
