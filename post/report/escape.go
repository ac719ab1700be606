package report

import "github.com/harden-runner/harden-runner/internal/escape"

// cell renders untrusted data for a GFM table cell or a line of prose.
func cell(s string) string { return escape.Cell(s) }

// WorkflowCommand formats one workflow command line, e.g.
// WorkflowCommand("error", map[string]string{"title": t}, msg) →
// "::error title=...::msg". See escape.Command.
func WorkflowCommand(cmd string, props map[string]string, message string) string {
	return escape.Command(cmd, props, message)
}
