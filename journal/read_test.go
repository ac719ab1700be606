package journal

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestReadJournal(t *testing.T) {
	long := `{"note":{"component":"x","level":"info","message":"` + strings.Repeat("y", 200<<10) + `"}}`
	tests := []struct {
		name      string
		in        string
		recs, bad int
	}{
		{"empty", "", 0, 0},
		{"one", `{"stop":{"time":"2025-05-01T10:00:00Z"}}` + "\n", 1, 0},
		{"no final newline", `{"stop":{"time":"2025-05-01T10:00:00Z"}}`, 1, 0},
		{"torn last line", `{"stop":{"time":"2025-05-01T10:00:00Z"}}` + "\n" + `{"flow":{"ip":"198.`, 1, 1},
		{"bad middle line", `{"stop":{}}` + "\nnot json\n" + `{"stop":{}}` + "\n", 2, 1},
		{"blank lines", "\n\n  \r\n" + `{"stop":{}}` + "\r\n\n", 1, 0},
		{"not an object", "null\n[]\n\"x\"\n42\n", 0, 4},
		{"unknown record kept", `{"future":{"x":1}}` + "\n", 1, 0},
		{"wrong type", `{"flow":{"port":"443"}}` + "\n", 0, 1},
		{"long line", long + "\n" + `{"stop":{}}` + "\n", 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, bad, err := Read(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != tt.recs || bad != tt.bad {
				t.Errorf("got %d records, %d bad; want %d, %d", len(recs), bad, tt.recs, tt.bad)
			}
		})
	}
}

func TestReadJournalTooLong(t *testing.T) {
	in := `{"stop":{}}` + "\n" + `{"note":{"message":"` + strings.Repeat("y", maxLineBytes) + `"}}` + "\n" + `{"stop":{}}`
	recs, bad, err := Read(strings.NewReader(in))
	if err != nil || len(recs) != 2 || bad != 1 {
		t.Errorf("got %d records, %d bad, %v; want 2, 1, nil", len(recs), bad, err)
	}
}

type failReader struct{ n int }

func (f *failReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	f.n = 0
	return copy(p, `{"stop":{}}`+"\n"), nil
}

func TestReadJournalReadError(t *testing.T) {
	recs, _, err := Read(&failReader{n: 1})
	if err == nil || !strings.Contains(err.Error(), "journal: read") || len(recs) != 1 {
		t.Errorf("got %d records, err %v; want 1 and a wrapped read error", len(recs), err)
	}
}

// FuzzRead: any input reads without an error or a panic, and every
// non-blank line is either a record or counted as bad.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"flow":{"ip":"198.18.0.1","port":443,"protocol":"tcp","verdict":"blocked"}}` + "\n" + `{"dns":{"name":"a","ty`))
	f.Add([]byte("\n\r\n{}\nnull\n{\"stop\":{\"time\":\"9999-12-31T23:59:59-23:59\"}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, bad, err := Read(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		nonblank := 0
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 {
				nonblank++
			}
		}
		if len(recs)+bad != nonblank {
			t.Fatalf("%d records + %d bad != %d non-blank lines", len(recs), bad, nonblank)
		}
	})
}
