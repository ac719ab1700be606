package journal

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The journal reaches the post step as an export stream: one header line
// (ExportHeader), exactly Bytes bytes of journal, and one trailer line
// (ExportTrailer) with the SHA-256 of those bytes. A short or damaged
// stream is an error, never a shorter journal. Where the stream is carried
// (and why no workflow step can write into it) is action/host's business.

// ExportFormat is ExportHeader.Format.
const ExportFormat = "harden-runner/journal-export/v1"

// maxExportLine bounds the header and trailer lines.
const maxExportLine = 64 << 10

// ExportHeader is the export stream's first line.
type ExportHeader struct {
	Format string `json:"format"`
	Bytes  int64  `json:"bytes"`
	// Snapshot: the agent goes on enforcing; the journal ends with its
	// Snapshot record.
	Snapshot bool `json:"snapshot,omitempty"`
}

// ExportTrailer is the line after the journal's bytes.
type ExportTrailer struct {
	SHA256 string `json:"sha256"`
	Error  string `json:"error,omitempty"` // what went wrong stopping or exporting
}

// Export is an export stream read back by ReadExport.
type Export struct {
	Journal  []byte
	Snapshot bool
	SHA256   string
	Error    string // the helper's error (stop, snapshot, journal checks), if any
}

// WriteExport writes an export stream to w: the header, the first size
// bytes of journal (which may be nil when size is 0), and the trailer with
// their SHA-256 and opErr's text, if any. If journal ends before size
// bytes, the stream is left short (the reader sees a truncated export)
// and the error says so.
func WriteExport(w io.Writer, journal io.Reader, size int64, snapshot bool, opErr error) error {
	bw := bufio.NewWriter(w)
	b, _ := json.Marshal(ExportHeader{Format: ExportFormat, Bytes: size, Snapshot: snapshot})
	if _, err := bw.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("journal: export: %w", err)
	}
	sum := sha256.New()
	if size > 0 {
		if _, err := io.CopyN(io.MultiWriter(bw, sum), journal, size); err != nil {
			return fmt.Errorf("journal: export the journal: %w", err)
		}
	}
	tr := ExportTrailer{SHA256: hex.EncodeToString(sum.Sum(nil))}
	if opErr != nil {
		tr.Error = opErr.Error()
	}
	b, _ = json.Marshal(tr)
	if _, err := bw.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("journal: export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("journal: export: %w", err)
	}
	return nil
}

// ReadExport reads an export stream (WriteExport's) of at most max
// journal bytes. A stream that ends early, has a bad header or trailer,
// more than max bytes, data after the trailer, or a journal whose SHA-256
// is not the trailer's is an error.
func ReadExport(r io.Reader, max int64) (*Export, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	line, err := readExportLine(br)
	if err != nil {
		return nil, fmt.Errorf("export header: %w", err)
	}
	var h ExportHeader
	if err := json.Unmarshal(line, &h); err != nil || h.Format != ExportFormat {
		return nil, fmt.Errorf("export header: not a %s header: %q", ExportFormat, truncate(line))
	}
	if h.Bytes < 0 || h.Bytes > max {
		return nil, fmt.Errorf("export header: journal of %d bytes (at most %d)", h.Bytes, max)
	}
	j := make([]byte, h.Bytes)
	if _, err := io.ReadFull(br, j); err != nil {
		return nil, fmt.Errorf("export: the journal is truncated: %w", err)
	}
	line, err = readExportLine(br)
	if err != nil {
		return nil, fmt.Errorf("export trailer (the journal may be truncated): %w", err)
	}
	var tr ExportTrailer
	if err := json.Unmarshal(line, &tr); err != nil || tr.SHA256 == "" {
		return nil, fmt.Errorf("export trailer: %q", truncate(line))
	}
	sum := sha256.Sum256(j)
	if got := hex.EncodeToString(sum[:]); got != tr.SHA256 {
		return nil, fmt.Errorf("export: the journal's SHA-256 is %s, the helper sent %s", got, truncate([]byte(tr.SHA256)))
	}
	if n, _ := br.Read(make([]byte, 1)); n > 0 {
		return nil, errors.New("export: data after the trailer")
	}
	return &Export{Journal: j, Snapshot: h.Snapshot, SHA256: tr.SHA256, Error: tr.Error}, nil
}

// readExportLine reads one line of at most maxExportLine bytes, without its newline.
func readExportLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxExportLine {
			return nil, fmt.Errorf("line longer than %d bytes", maxExportLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return bytes.TrimSuffix(line, []byte("\n")), nil
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
