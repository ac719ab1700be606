package dockergate

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestMain doubles as a stand-in docker CLI when copied to a file named
// docker: "get SOCK CASE" sends one request itself and prints the status;
// "plugin SOCK CASE" runs curl as its child (a CLI plugin or credential
// helper planted in ~/.docker); "daemon SOCK CASE OUT" leaves a detached
// copy of itself behind that sends the request once its parent has exited
// (a re-parented daemon) and writes the status to OUT.
func TestMain(m *testing.M) {
	if self, _ := os.Executable(); filepath.Base(self) != "docker" {
		os.Exit(m.Run())
	}
	args := os.Args[1:]
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: get|plugin|daemon SOCK CASE [OUT]")
		os.Exit(2)
	}
	sock, c := args[1], args[2]
	switch args[0] {
	case "get":
		fmt.Print(get(sock, c))
		if len(args) == 4 { // the daemon: done
			_ = os.Rename(args[3]+".tmp", args[3])
		}
	case "plugin":
		out, _ := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", sock,
			"http://docker/v1.41/containers/json?case="+c).Output()
		fmt.Print(string(out))
	case "daemon":
		self, _ := os.Executable()
		d := exec.Command(self, "get", sock, c)
		d.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		d.Env = append(os.Environ(), "HR_DAEMON_WAIT="+fmt.Sprint(os.Getpid()))
		out, err := os.Create(args[3] + ".tmp")
		if err != nil {
			os.Exit(1)
		}
		d.Stdout = out
		d.Args = append(d.Args, args[3])
		if err := d.Start(); err != nil {
			os.Exit(1)
		}
		fmt.Print("started")
	}
}

// get sends GET /containers/json?case=c; as a daemon, once its parent
// (HR_DAEMON_WAIT) is gone.
func get(sock, c string) string {
	if w := os.Getenv("HR_DAEMON_WAIT"); w != "" {
		for os.Getppid() == atoi(w) {
			// Re-parented when the parent exits.
			syscall.Select(0, nil, nil, nil, &syscall.Timeval{Usec: 5000})
		}
	}
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	resp, err := cl.Get("http://docker/v1.41/containers/json?case=" + c)
	if err != nil {
		return "error: " + err.Error()
	}
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}
