package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
)

func frame(stream byte, s string) []byte {
	h := make([]byte, 8)
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
	return append(h, s...)
}

func TestDemux(t *testing.T) {
	var in bytes.Buffer
	in.Write(frame(1, "out1 "))
	in.Write(frame(2, "err1"))
	in.Write(frame(1, "out2"))
	var o, e bytes.Buffer
	if err := Demux(&in, &o, &e); err != nil {
		t.Fatal(err)
	}
	if o.String() != "out1 out2" || e.String() != "err1" {
		t.Errorf("stdout %q stderr %q", o.String(), e.String())
	}
	if err := Demux(bytes.NewReader(frame(1, "abc")[:9]), &o, &e); err == nil {
		t.Error("truncated frame accepted")
	}
}

func TestHostPath(t *testing.T) {
	c := &Container{Mounts: []Mount{
		{Source: "/home/runner/work/_temp/_github_home", Destination: "/github/home"},
		{Source: "/home/runner/work/r/r", Destination: "/github/workspace"},
		{Source: "/x", Destination: "/github/workspace/sub"},
	}}
	for in, want := range map[string]string{
		"/github/home/harden-runner-report": "/home/runner/work/_temp/_github_home/harden-runner-report",
		"/github/workspace":                 "/home/runner/work/r/r",
		"/github/workspace/sub/a":           "/x/a",
		"/github/workspacex":                "",
		"/etc":                              "",
	} {
		if got := c.HostPath(in); got != want {
			t.Errorf("HostPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestClient runs the client against a fake engine on a unix socket.
func TestClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var created CreateConfig
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.41/containers/create", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("name") != "n" {
			t.Errorf("name %q", r.URL.Query().Get("name"))
		}
		_ = json.NewDecoder(r.Body).Decode(&created)
		w.WriteHeader(201)
		io.WriteString(w, `{"Id":"abc"}`)
	})
	mux.HandleFunc("POST /v1.41/containers/abc/wait", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"StatusCode":3}`)
	})
	mux.HandleFunc("GET /v1.41/containers/abc/archive", func(w http.ResponseWriter, r *http.Request) {
		tw := tar.NewWriter(w)
		_ = tw.WriteHeader(&tar.Header{Name: "journal.jsonl", Typeflag: tar.TypeReg, Size: 5, Mode: 0o600})
		_, _ = tw.Write([]byte("hello"))
		_ = tw.Close()
	})
	var put struct {
		dir, name, body, ctype string
		mode                   int64
	}
	mux.HandleFunc("PUT /v1.41/containers/abc/archive", func(w http.ResponseWriter, r *http.Request) {
		put.dir, put.ctype = r.URL.Query().Get("path"), r.Header.Get("Content-Type")
		tr := tar.NewReader(r.Body)
		if h, err := tr.Next(); err == nil {
			b, _ := io.ReadAll(tr)
			put.name, put.body, put.mode = h.Name, string(b), h.Mode
		}
	})
	mux.HandleFunc("GET /v1.41/containers/missing/json", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		io.WriteString(w, `{"message":"No such container: missing"}`)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	c := New(sock)
	ctx := context.Background()
	id, err := c.Create(ctx, "n", CreateConfig{Image: "img", HostConfig: HostConfig{PidMode: "host", CapAdd: []string{"NET_ADMIN"}}})
	if err != nil || id != "abc" {
		t.Fatalf("create: %q %v", id, err)
	}
	if created.Image != "img" || created.HostConfig.PidMode != "host" || created.HostConfig.CapAdd[0] != "NET_ADMIN" {
		t.Errorf("create body %+v", created)
	}
	if code, err := c.Wait(ctx, id); err != nil || code != 3 {
		t.Errorf("wait: %d %v", code, err)
	}
	if b, err := c.CopyFile(ctx, id, "/x/journal.jsonl", 100); err != nil || string(b) != "hello" {
		t.Errorf("copy: %q %v", b, err)
	}
	if _, err := c.CopyFile(ctx, id, "/x/journal.jsonl", 4); err == nil {
		t.Error("copy over the limit succeeded")
	}
	if err := c.PutFile(ctx, id, "/", "config.json", []byte(`{"a":1}`)); err != nil {
		t.Errorf("put: %v", err)
	}
	if put.dir != "/" || put.name != "config.json" || put.body != `{"a":1}` || put.mode != 0o600 || put.ctype != "application/x-tar" {
		t.Errorf("put arrived as %+v", put)
	}
	_, err = c.Inspect(ctx, "missing")
	var ae *APIError
	if !asAPIError(err, &ae) || ae.Status != 404 || ae.Message != "No such container: missing" {
		t.Errorf("inspect missing: %v", err)
	}
}

func asAPIError(err error, target **APIError) bool {
	for err != nil {
		if e, ok := err.(*APIError); ok {
			*target = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
