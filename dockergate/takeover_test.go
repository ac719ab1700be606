package dockergate

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/proc"
)

// TestStartTakesOverFromDeadGate: the agent was killed with its gate in
// place (dockerd's socket hidden, the dead proxy's socket at the docker
// path), and its supervisor starts a new one. The new gate takes the
// docker path over and leaves dockerd's hidden socket alone: requests
// reach dockerd again through it, and Close puts dockerd's socket back.
// (A second swap used to move the dead socket over dockerd's, losing it.)
func TestStartTakesOverFromDeadGate(t *testing.T) {
	gt := startGate(t, AllowRunner)
	// The death: the listener is gone, nothing put back.
	gt.g.ln.Close()
	g2, err := New(Config{Socket: gt.sock, CLIs: []string{gt.docker}, Runner: gt.g.cfg.Runner, AllowFor: AllowRunner,
		TrustedImage: "sha256:ours", Emit: func(event.Record) {}, Process: proc.Info, Container: fakeContainer})
	if err != nil {
		t.Fatal(err)
	}
	if err := g2.Start(context.Background()); err != nil {
		t.Fatalf("Start after a dead gate: %v", err)
	}
	// The agent itself (this process) is admitted.
	get := func(c string) (int, error) {
		cl := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", gt.sock)
		}}}
		resp, err := cl.Get("http://docker/v1.41/containers/json?case=" + c)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get("after-takeover"); err != nil || code != 200 || !gt.d.reached("after-takeover") {
		t.Fatalf("through the new gate: %v %d; dockerd reached: %v", err, code, gt.d.reached("after-takeover"))
	}
	if err := g2.Close(); err != nil {
		t.Fatal(err)
	}
	if code, err := get("after-close"); err != nil || code != 200 || !gt.d.reached("after-close") {
		t.Errorf("dockerd's socket not back after Close: %v %d", err, code)
	}
}
