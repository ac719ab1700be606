package report

import (
	"strings"

	"github.com/harden-runner/harden-runner/internal/escape"
)

// mdWriter: markdown within a byte budget, closing what it opened.

// mdWriter builds markdown within a byte limit, one atomic unit (a line, a
// table row) at a time. Constructs that must be closed (tables, <details>)
// reserve their closing text when opened, and room for the truncation note
// is always kept, so whatever fits is well-formed. Once a unit does not
// fit, the writer is full and drops everything after it.
type mdWriter struct {
	b       strings.Builder
	limit   int // < 0: unlimited
	reserve int // bytes kept for the truncation note
	closing int // bytes of closers owed to open constructs
	stack   []bool
	closers []string
	full    bool
	omitted int // table rows left out
}

func newMDWriter(limit int) *mdWriter {
	return &mdWriter{limit: limit, reserve: len(truncNote(1 << 62))}
}

func (w *mdWriter) fits(n int) bool {
	return w.limit < 0 || w.b.Len()+n+w.closing+w.reserve <= w.limit
}

// put writes s if it fits, and reports whether it did.
func (w *mdWriter) put(s string) bool {
	if w.full || !w.fits(len(s)) {
		w.full = true
		return false
	}
	w.b.WriteString(s)
	return true
}

// open writes s and owes closer, if both fit.
func (w *mdWriter) open(s, closer string) {
	ok := !w.full && w.fits(len(s)+len(closer))
	if ok {
		w.b.WriteString(s)
		w.closing += len(closer)
	} else {
		w.full = true
	}
	w.stack = append(w.stack, ok)
	w.closers = append(w.closers, closer)
}

// close writes the closer of the innermost open construct if it was opened.
func (w *mdWriter) close() {
	n := len(w.stack) - 1
	if w.stack[n] {
		w.b.WriteString(w.closers[n])
		w.closing -= len(w.closers[n])
	}
	w.stack, w.closers = w.stack[:n], w.closers[:n]
}

// table writes a table of n rows under header, folded into <details> when
// it has more than detailsRows rows.
func (w *mdWriter) table(header, what string, n int, row func(int) string) {
	folded := n > detailsRows
	if folded {
		w.open("<details><summary>"+escape.HTMLText(what)+"</summary>\n\n", "</details>\n\n")
	}
	w.open(header, "\n")
	for i := 0; i < n; i++ {
		if w.full {
			w.omitted += n - i
			break
		}
		if !w.put(row(i)) {
			w.omitted++
		}
	}
	w.close()
	if folded {
		w.close()
	}
}

func truncNote(omitted int) string {
	rows := ""
	if omitted > 0 {
		rows = " " + plural(omitted, "table row was", "table rows were") + " left out."
	}
	return "> ✂️ This summary was cut short to fit GitHub's size limit." + rows +
		" report.json has the full report.\n\n"
}

// finish closes what is still open and returns the markdown, with the
// truncation note when something was left out.
func (w *mdWriter) finish() string {
	for len(w.stack) > 0 {
		w.close()
	}
	if w.full || w.omitted > 0 {
		note := truncNote(w.omitted)
		if w.limit < 0 || w.b.Len()+len(note) <= w.limit {
			w.b.WriteString(note)
		}
	}
	return w.b.String()
}
