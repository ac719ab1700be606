package action

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func frame(stream byte, s string) []byte {
	h := make([]byte, 8)
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
	return append(h, s...)
}

func TestReadResult(t *testing.T) {
	for _, tc := range []struct {
		name    string
		frames  [][]byte
		pid     int
		stderr  string
		wantErr bool
	}{
		{name: "result in one frame", frames: [][]byte{frame(1, `{"pid":7,"how":"detached"}`+"\n")}, pid: 7},
		{name: "split across frames after a log line", frames: [][]byte{
			frame(2, "level=DEBUG msg=x\n"), frame(1, "installing\n{\"pi"), frame(1, `d":9}`+"\n"),
		}, pid: 9, stderr: "level=DEBUG msg=x\n"},
		// Lines after the result are not waited for: the step goes on.
		{name: "stops at the result", frames: [][]byte{frame(1, `{"pid":3}`+"\n"), frame(1, "x")[:5]}, pid: 3},
		{name: "exit without result", frames: [][]byte{frame(2, "host: PID 1 is not on the network\n"), frame(1, `{"pid":`)}, stderr: "host: PID 1 is not on the network\n"},
		{name: "truncated frame", frames: [][]byte{frame(2, "abc")[:6]}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, stderr, err := readResult(bytes.NewReader(bytes.Join(tc.frames, nil)))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if string(stderr) != tc.stderr {
				t.Errorf("stderr %q, want %q", stderr, tc.stderr)
			}
			switch {
			case tc.pid == 0 && res != nil:
				t.Errorf("result %+v, want none", res)
			case tc.pid != 0 && (res == nil || res.Pid != tc.pid):
				t.Errorf("result %+v, want pid %d", res, tc.pid)
			}
		})
	}
}
