package report

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// Table cells and the summary tables' optional Step column.

// stepTable is a summary table whose rows end with the workflow step they
// happened in when the report knows steps at all (hasSteps): its Step
// column is there for every row or for none.
type stepTable struct {
	cols  []string // headings; a trailing ':' right-aligns the column (numbers)
	steps bool
}

func (r *Report) stepTable(cols ...string) stepTable {
	return stepTable{cols: cols, steps: r.hasSteps()}
}

// header is the table's heading row and alignment row.
func (t stepTable) header() string {
	var names, align strings.Builder
	for _, c := range t.cols {
		name, right := strings.CutSuffix(c, ":")
		names.WriteString("| " + name + " ")
		if right {
			align.WriteString("| ---: ")
		} else {
			align.WriteString("| --- ")
		}
	}
	if t.steps {
		names.WriteString("| Step ")
		align.WriteString("| --- ")
	}
	return names.String() + "|\n" + align.String() + "|\n"
}

// row is one table row of cells (each already escaped) and, when the
// table has a Step column, the step cell (stepCell, stepList).
func (t stepTable) row(step string, cells ...string) string {
	var b strings.Builder
	for _, c := range cells {
		b.WriteString("| " + c + " ")
	}
	if t.steps {
		b.WriteString("| " + step + " ")
	}
	b.WriteString("|\n")
	return b.String()
}

// stepList is the Step cell of a destination row: at most a few escaped
// step names, "—" when none is known.
func stepList(steps []string) string {
	if len(steps) == 0 {
		return "—"
	}
	return cellList(steps, 3)
}

// stepCell is the Step cell of one row.
func stepCell(s string) string {
	if s == "" {
		return "—"
	}
	return cell(s)
}

func addrList(addrs []string) string { return cellList(addrs, 4) }

// cellList is the first show items, escaped, and how many more there are.
func cellList(items []string, show int) string {
	var parts []string
	for i, s := range items {
		if i == show {
			parts = append(parts, fmt.Sprintf("+%d more", len(items)-show))
			break
		}
		parts = append(parts, cell(s))
	}
	return strings.Join(parts, ", ")
}

func verdictCell(v event.Verdict) string {
	switch v {
	case event.Blocked:
		return "⛔ blocked"
	case event.Audit:
		return "⚠️ audit"
	case event.Allowed:
		return "✅ allowed"
	}
	return cell(string(v))
}

func processCell(p event.Process) string {
	s := p.Exe
	if s == "" {
		s = "unknown"
	}
	if p.PID != 0 {
		s += " (pid " + strconv.Itoa(p.PID)
		if p.Container != "" {
			s += ", container " + p.Container
		}
		s += ")"
	}
	return cell(s)
}

func timeCell(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return cell(t.UTC().Format("15:04:05.000Z"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
