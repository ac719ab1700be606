package host

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/agent"
)

// The journal reaches the post step as an export stream on the stdout of
// the helper container the post step itself created and attached to
// (host-stop --stream). No file in a directory the runner's user can
// write takes part, so a step cannot plant a journal or a stop result: it
// would have to write into that container's output, which takes root.
// The stream is one header line (ExportHeader), exactly Bytes bytes of
// journal, and one trailer line (ExportTrailer) with the SHA-256 of those
// bytes: a short or damaged stream is an error, never a shorter journal.

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

// Snapshot asks the agent for a journal snapshot and leaves it enforcing.
func Snapshot(ctx context.Context, root, dir string) (*agent.SnapshotResult, error) {
	root, dir = defaultPaths(root, dir)
	if err := CheckNamespaces(); err != nil {
		return nil, err
	}
	state := filepath.Join(root, dir, "state")
	res, err := agent.SnapshotDaemon(ctx, state)
	if errors.Is(err, agent.ErrNotRunning) && waitRestart(ctx, state) {
		res, err = agent.SnapshotDaemon(ctx, state)
	}
	return res, err
}

func defaultPaths(root, dir string) (string, string) {
	if root == "" {
		root = DefaultRoot
	}
	if dir == "" {
		dir = DefaultDir
	}
	return root, dir
}

// WriteExport writes the export stream of the agent's journal to w: the
// first snap.Bytes bytes of it for a snapshot, else all of it. opErr (the
// stop's or the snapshot's error) goes into the trailer. The journal is
// read only if it and its directories are root's and closed to others.
func WriteExport(w io.Writer, root, dir string, snap *agent.SnapshotResult, opErr error) error {
	root, dir = defaultPaths(root, dir)
	bw := bufio.NewWriter(w)
	errs := []error{opErr}
	f, size, err := openJournal(filepath.Join(root, dir))
	if err != nil {
		errs = append(errs, err)
		size = 0
	} else {
		defer f.Close()
		if snap != nil {
			if snap.Bytes > size || snap.Bytes < 0 {
				errs = append(errs, fmt.Errorf("host: the snapshot's length %d is not within the journal's %d bytes", snap.Bytes, size))
			} else {
				size = snap.Bytes
			}
		}
	}
	h := ExportHeader{Format: ExportFormat, Bytes: size, Snapshot: snap != nil}
	b, _ := json.Marshal(h)
	if _, err := bw.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("host: export: %w", err)
	}
	sum := sha256.New()
	if size > 0 {
		if _, err := io.CopyN(io.MultiWriter(bw, sum), f, size); err != nil {
			// The stream is short now: the reader sees a truncated export.
			return fmt.Errorf("host: export the journal: %w", err)
		}
	}
	tr := ExportTrailer{SHA256: hex.EncodeToString(sum.Sum(nil))}
	if err := errors.Join(errs...); err != nil {
		tr.Error = err.Error()
	}
	b, _ = json.Marshal(tr)
	if _, err := bw.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("host: export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("host: export: %w", err)
	}
	return nil
}

// openJournal opens hostDir/state/journal.jsonl, checking that hostDir
// and state are directories (no links) owned by root and writable by
// no one else (state: closed to others), and the journal a regular file
// of root's, mode 0600 or tighter. It returns the file and its size.
func openJournal(hostDir string) (*os.File, int64, error) {
	state := filepath.Join(hostDir, "state")
	for _, c := range []struct {
		path string
		deny os.FileMode
	}{{hostDir, 0o022}, {state, 0o077}} {
		st, err := os.Lstat(c.path)
		if err != nil {
			return nil, 0, fmt.Errorf("host: the agent's directory: %w", err)
		}
		if err := rootOnly(st, c.deny); err != nil {
			return nil, 0, fmt.Errorf("host: %s: %w", c.path, err)
		}
	}
	path := filepath.Join(state, agent.StateJournal)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, 0, fmt.Errorf("host: no journal at %s (the agent never ran?)", path)
		}
		return nil, 0, fmt.Errorf("host: open the journal %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := f.Stat()
	if err == nil {
		err = rootOnly(st, 0o077)
	}
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("host: the journal %s: %w", path, err)
	}
	return f, st.Size(), nil
}

// rootOnly checks that st is root's, not a link, and has none of deny's
// permission bits.
func rootOnly(st os.FileInfo, deny os.FileMode) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		return errors.New("is a symbolic link")
	case !ok || sys.Uid != 0:
		return fmt.Errorf("not owned by root (uid %v)", uidOf(sys))
	case st.Mode().Perm()&deny != 0:
		return fmt.Errorf("mode %v is open to others", st.Mode().Perm())
	}
	return nil
}

func uidOf(s *syscall.Stat_t) any {
	if s == nil {
		return "unknown"
	}
	return s.Uid
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
