package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/harden-runner/harden-runner/event"
)

// maxLineBytes bounds one journal line; longer lines are skipped as bad.
const maxLineBytes = 16 << 20

// Read parses a JSONL journal, one event.Record per line, in order.
// Lines that are not a JSON object (a torn last line from an agent killed
// mid-write, a damaged or over-long line) are skipped and counted in bad;
// blank lines are ignored. An object with no field this version knows is
// kept as an empty Record, which the report counts as an unknown record.
// The error is only ever the reader's.
func Read(r io.Reader) (recs []event.Record, bad int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, tooLong, rerr := readLine(br)
		if tooLong {
			bad++
		} else if t := bytes.TrimSpace(line); len(t) > 0 {
			var rec event.Record
			if t[0] != '{' || json.Unmarshal(t, &rec) != nil {
				bad++
			} else {
				recs = append(recs, rec)
			}
		}
		if rerr == io.EOF {
			return recs, bad, nil
		}
		if rerr != nil {
			return recs, bad, fmt.Errorf("journal: read: %w", rerr)
		}
	}
}

// readLine returns the next line without its newline. A line longer than
// maxLineBytes is consumed and reported as tooLong.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	for {
		frag, e := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > maxLineBytes+1 {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if errors.Is(e, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimSuffix(line, []byte("\n")), tooLong, e
	}
}
