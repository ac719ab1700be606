package lineage

import (
	"testing"
	"unsafe"
)

// execRecord encodes an exec event as on_exec sends it: cut after its
// arguments unless full.
func execRecord(pid int, filename, args string, full bool) []byte {
	var e lineageLinExec
	e.Task.Kind = 1
	e.Task.Tgid = uint32(pid)
	e.Task.Start = 7
	e.FilenameLen = uint32(copy(unsafe.Slice((*byte)(unsafe.Pointer(&e.Filename[0])), len(e.Filename)), filename))
	e.ArgsLen = uint32(copy(unsafe.Slice((*byte)(unsafe.Pointer(&e.Args[0])), len(e.Args)), args))
	b := unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))
	if !full {
		b = b[:execHead+int(e.ArgsLen)]
	}
	return append([]byte(nil), b...)
}

func TestHandleExec(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rec      []byte
		cmdline  string
		readable bool
	}{
		{"cut after args", execRecord(4242, "/nonexistent/cc", "cc\x00-c\x00a.c", false), "cc -c a.c", true},
		{"full size", execRecord(4242, "/nonexistent/cc", "cc\x00-c\x00a.c", true), "cc -c a.c", true},
		{"no args", execRecord(4242, "/nonexistent/cc", "", false), "", true},
		{"shorter than its args", execRecord(4242, "/nonexistent/cc", "cc\x00-c\x00a.c", false)[:execHead+3], "", false},
		{"shorter than the head", execRecord(4242, "/nonexistent/cc", "cc", false)[:execHead-1], "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &Tracker{table: newTable()}
			tr.handle(tc.rec)
			if got := tr.unreadable.Load() == 0; got != tc.readable {
				t.Fatalf("readable = %v, want %v", got, tc.readable)
			}
			p, ok, _ := tr.table.get(4242, 7)
			if ok != tc.readable {
				t.Fatalf("in table = %v, want %v", ok, tc.readable)
			}
			if ok && (p.Exe != "/nonexistent/cc" || p.Cmdline != tc.cmdline) {
				t.Fatalf("got exe %q cmdline %q, want /nonexistent/cc %q", p.Exe, p.Cmdline, tc.cmdline)
			}
		})
	}
}

// FuzzHandle feeds the event decoder records of any length and content:
// the arguments and file name in them are a process's to choose.
func FuzzHandle(f *testing.F) {
	f.Add(execRecord(1, "/bin/sh", "sh\x00-c\x00x", false))
	f.Add(execRecord(1, "/bin/sh", "sh", true))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr := &Tracker{table: newTable()}
		tr.handle(b)
		if tr.events.Load()+tr.unreadable.Load() == 0 {
			t.Fatal("a record was neither read nor counted unreadable")
		}
	})
}
