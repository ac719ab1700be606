package proc

import (
	"context"
	"io"
	"os/exec"
	"testing"
	"time"
)

// TestInfoAfterExec holds a shell just before it execs sleep, asks who it is
// as an exec event would (the event comes while the old image still runs),
// then lets the exec go: the answer must be sleep with its command line,
// never the shell. A process that never execs the program is returned as
// it is once the bound has passed.
func TestInfoAfterExec(t *testing.T) {
	sleepExe := exeOf(t, "sleep")
	tests := []struct {
		name    string
		script  string
		release bool
		wantExe string
		wantCmd string
	}{
		{"exec completes", "read x; exec sleep 30", true, sleepExe, "sleep 30"},
		{"never execs", "read x; exec sleep 30", false, exeOf(t, "sh"), "sh -c read x; exec sleep 30"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", tc.script)
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			// Wait until the shell itself runs (not the test binary's fork).
			for deadline := time.Now().Add(5 * time.Second); Info(cmd.Process.Pid).Exe != exeOf(t, "sh"); {
				if time.Now().After(deadline) {
					t.Fatal("sh never started")
				}
				time.Sleep(time.Millisecond)
			}
			done := make(chan struct{})
			var got struct{ exe, cmd string }
			start := time.Now()
			go func() {
				p := InfoAfterExec(context.Background(), cmd.Process.Pid, sleepExe)
				got.exe, got.cmd = p.Exe, p.Cmdline
				close(done)
			}()
			if tc.release {
				time.Sleep(20 * time.Millisecond) // the shell is read as itself meanwhile
				io.WriteString(in, "\n")
			}
			<-done
			if got.exe != tc.wantExe || got.cmd != tc.wantCmd {
				t.Errorf("InfoAfterExec = exe %q cmdline %q, want %q %q", got.exe, got.cmd, tc.wantExe, tc.wantCmd)
			}
			if !tc.release && time.Since(start) < execSettleMax {
				t.Errorf("returned after %v, before the %v bound", time.Since(start), execSettleMax)
			}
		})
	}
}

// TestInfoAfterExecGone: a process that is gone is answered at once.
func TestInfoAfterExecGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	start := time.Now()
	if p := InfoAfterExec(context.Background(), cmd.Process.Pid, "/bin/true"); p.Unknown != "exited" {
		t.Errorf("InfoAfterExec(exited) = %+v", p)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("took %v for a process that is gone", d)
	}
}
