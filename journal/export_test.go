package journal

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
)

const testJournal = `{"start":{}}` + "\n" + `{"snapshot":{}}` + "\n" + `{"stop":{}}` + "\n"

// export is WriteExport's stream of j.
func export(t testing.TB, j string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteExport(&buf, strings.NewReader(j), int64(len(j)), false, nil); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestWriteExportRoundTrip: the journal, or a prefix of it, the snapshot
// flag and the operation's error come back out of the stream as they
// went in; a source shorter than the size leaves the stream short.
func TestWriteExportRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		size     int
		snapshot bool
		opErr    error
	}{
		{"whole", len(testJournal), false, errors.New("agent: daemon stopped with: x")},
		{"snapshot prefix", strings.Index(testJournal, `{"stop"`), true, nil},
		{"empty", 0, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteExport(&buf, strings.NewReader(testJournal), int64(tc.size), tc.snapshot, tc.opErr); err != nil {
				t.Fatal(err)
			}
			ex, err := ReadExport(&buf, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			wantErr := ""
			if tc.opErr != nil {
				wantErr = tc.opErr.Error()
			}
			if string(ex.Journal) != testJournal[:tc.size] || ex.Snapshot != tc.snapshot || ex.Error != wantErr {
				t.Errorf("export %+v", ex)
			}
		})
	}
	var buf bytes.Buffer
	if err := WriteExport(&buf, strings.NewReader(testJournal), int64(len(testJournal)+1), false, nil); err == nil {
		t.Error("a source shorter than the size was exported without an error")
	}
	if _, err := ReadExport(&buf, 1<<20); err == nil {
		t.Error("the short stream was read back")
	}
}

// TestReadExportRejects: every way a stream can be short or damaged is
// an error, never a shorter journal.
func TestReadExportRejects(t *testing.T) {
	good := export(t, testJournal)
	hdrEnd := strings.Index(good, "\n") + 1
	for name, s := range map[string]string{
		"empty":              "",
		"header only":        good[:hdrEnd],
		"truncated journal":  good[:hdrEnd+10],
		"no trailer":         good[:hdrEnd+len(testJournal)],
		"torn trailer":       good[:len(good)-5],
		"changed journal":    good[:hdrEnd] + strings.Replace(testJournal, "stop", "stoq", 1) + good[hdrEnd+len(testJournal):],
		"trailing data":      good + "{}\n",
		"not an export":      testJournal,
		"over the cap":       strings.Replace(good, `"bytes":`+strconv.Itoa(len(testJournal)), `"bytes":99999999`, 1),
		"negative length":    strings.Replace(good, `"bytes":`+strconv.Itoa(len(testJournal)), `"bytes":-1`, 1),
		"other format":       strings.Replace(good, ExportFormat, "x/v9", 1),
		"empty sha":          good[:hdrEnd+len(testJournal)] + `{"sha256":""}` + "\n",
		"journal no newline": strings.Replace(good, `"bytes":`+strconv.Itoa(len(testJournal)), `"bytes":`+strconv.Itoa(len(testJournal)+1), 1),
	} {
		if _, err := ReadExport(strings.NewReader(s), 1<<20); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ReadExport(strings.NewReader(good), 1<<20); err != nil {
		t.Errorf("the good stream: %v", err)
	}
}

// FuzzReadExport: any stream is read or refused without a panic, and a
// stream read back writes the same journal.
func FuzzReadExport(f *testing.F) {
	f.Add([]byte(export(f, testJournal)))
	f.Add([]byte(`{"format":"` + ExportFormat + `","bytes":0}` + "\n" + `{"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ex, err := ReadExport(bytes.NewReader(b), 1<<16)
		if err != nil {
			return
		}
		if int64(len(ex.Journal)) > 1<<16 {
			t.Fatalf("journal of %d bytes over the cap", len(ex.Journal))
		}
	})
}
