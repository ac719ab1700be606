package proc

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestJoinArgs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"\x00", ""},
		{"sleep\x0030\x00", "sleep 30"},
		{"sh\x00-c\x00sleep 30; true\x00\x00", "sh -c sleep 30; true "}, // an empty last argument
		{"no-nul", "no-nul"}, // a process that rewrote its argv
	}
	for _, tc := range tests {
		if got := joinArgs([]byte(tc.in)); got != tc.want {
			t.Errorf("joinArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFirstInt(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"\t123\t456", 123}, {" 0", 0}, {"", -1}, {"\tx", -1}, {"99999999999", -1},
	}
	for _, tc := range tests {
		if got := firstInt([]byte(tc.in)); got != tc.want {
			t.Errorf("firstInt(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestInfo checks Info on a real unprivileged process two levels below the
// test: sh (as uid 65534) running sleep.
func TestInfo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process as another user")
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"sh", "-c", "sleep 30; true", "arg0", "two words")
	if err := cmd.Start(); err != nil {
		t.Skipf("setpriv/sh: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sh := cmd.Process.Pid
	var sleep int
	for deadline := time.Now().Add(5 * time.Second); sleep == 0 && time.Now().Before(deadline); {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(sh) + "/task/" + strconv.Itoa(sh) + "/children")
		if f := strings.Fields(string(b)); len(f) > 0 {
			sleep, _ = strconv.Atoi(f[0])
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if sleep == 0 {
		t.Fatal("sh never started sleep")
	}
	defer exec.Command("kill", strconv.Itoa(sleep)).Run()
	// The child shows up at fork, still running sh until its exec of sleep
	// is done: wait for that (the product's exec-settle rule) before Info.
	if p := InfoAfterExec(context.Background(), sleep, exeOf(t, "sleep")); p.Exe != exeOf(t, "sleep") {
		t.Fatalf("child %d never became sleep: %+v", sleep, p)
	}

	got := Info(sleep)
	if got.PID != sleep || got.Unknown != "" {
		t.Fatalf("Info(%d) = %+v", sleep, got)
	}
	if got.Exe != exeOf(t, "sleep") || got.Cmdline != "sleep 30" || got.UID != 65534 {
		t.Errorf("Info(sleep) = exe %q cmdline %q uid %d, want %q, %q, 65534", got.Exe, got.Cmdline, got.UID, exeOf(t, "sleep"), "sleep 30")
	}
	if len(got.Parents) < 3 {
		t.Fatalf("Parents = %+v, want sh, the test, ... pid 1", got.Parents)
	}
	if p := got.Parents[0]; p.PID != sh || p.Exe != exeOf(t, "sh") || p.Cmdline != "sh -c sleep 30; true arg0 two words" {
		t.Errorf("Parents[0] = %+v, want sh %d with its arguments", p, sh)
	}
	if p := got.Parents[1]; p.PID != os.Getpid() {
		t.Errorf("Parents[1] = %+v, want the test %d", p, os.Getpid())
	}
	if last := got.Parents[len(got.Parents)-1]; last.PID != 1 {
		t.Errorf("chain ends at %+v, want pid 1", last)
	}
	for _, p := range got.Parents {
		if p.PID == 0 {
			t.Errorf("pid 0 in chain %+v", got.Parents)
		}
	}
}

func TestInfoExited(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	got := Info(cmd.Process.Pid)
	if got.PID != cmd.Process.Pid || got.Unknown != "exited" || got.Exe != "" {
		t.Errorf("Info(exited) = %+v, want PID set and Unknown=exited", got)
	}
	if got := Info(0); got.Unknown == "" {
		t.Errorf("Info(0) = %+v, want unknown", got)
	}
}

func TestInfoSelf(t *testing.T) {
	got := Info(os.Getpid())
	exe, _ := os.Executable()
	if got.Exe != exe || got.UID != os.Getuid() || !strings.HasPrefix(got.Cmdline, os.Args[0]) {
		t.Errorf("Info(self) = %+v, want exe %q uid %d", got, exe, os.Getuid())
	}
}

func TestParseStatPPid(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"123 (bash) S 45 123 123 0", 45, false},
		{"7 (a) b) c) R 1 7 7", 1, false},
		{"9 (x", 0, true},
		{"9 (x) S", 0, true},
		{"", 0, true},
	}
	for _, tc := range tests {
		got, err := parseStatPPid([]byte(tc.in))
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("parseStatPPid(%q) = %d, %v; want %d, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestInfoCache checks that the Finder's ancestor cache gives the same chain.
func TestInfoCache(t *testing.T) {
	var c ancestorCache
	want := Info(os.Getpid())
	for range 2 {
		got := info(os.Getpid(), &c)
		if len(got.Parents) != len(want.Parents) || len(got.Parents) == 0 {
			t.Fatalf("cached chain %+v, want %+v", got.Parents, want.Parents)
		}
		for i := range got.Parents {
			if got.Parents[i] != want.Parents[i] {
				t.Errorf("Parents[%d] = %+v, want %+v", i, got.Parents[i], want.Parents[i])
			}
		}
	}
	if len(c.m) != len(want.Parents) {
		t.Errorf("cache holds %d, want %d", len(c.m), len(want.Parents))
	}
}
