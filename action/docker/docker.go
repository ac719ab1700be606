// Package docker is the few Docker Engine API calls the Action needs,
// as plain HTTP over the daemon's unix socket: inspect a container, create,
// attach to, start, wait for, read the logs of, copy a file out of and
// remove one.
// API version 1.41 (Docker 20.10), which newer engines still serve.
package docker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// DefaultSocket is where the runner mounts the docker socket into a container action.
const DefaultSocket = "/var/run/docker.sock"

const apiPrefix = "http://docker/v1.41"

// Client talks to one docker daemon. Safe for concurrent use.
type Client struct {
	hc *http.Client
}

// New returns a client for the daemon listening on the unix socket path.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
	}
	return &Client{hc: &http.Client{Transport: tr}}
}

// Mount is one of a container's mounts.
type Mount struct {
	Type        string
	Source      string
	Destination string
}

// Container is the part of an inspect answer the Action uses.
type Container struct {
	ID     string
	Name   string // "/name", as dockerd has it
	Image  string // image ID (sha256:...)
	Mounts []Mount
	State  struct {
		Running  bool
		ExitCode int
	}
}

// HostPath maps a path inside the container to the host path of the bind
// mount that holds it, or "" when no bind mount does.
func (c *Container) HostPath(p string) string {
	best := -1
	for i, m := range c.Mounts {
		d := strings.TrimSuffix(m.Destination, "/")
		if (p == d || strings.HasPrefix(p, d+"/")) && (best < 0 || len(d) > len(c.Mounts[best].Destination)) {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	m := c.Mounts[best]
	return m.Source + strings.TrimPrefix(p, strings.TrimSuffix(m.Destination, "/"))
}

// Inspect returns container id's details.
func (c *Client) Inspect(ctx context.Context, id string) (*Container, error) {
	var out Container
	if err := c.do(ctx, "GET", "/containers/"+url.PathEscape(id)+"/json", nil, &out); err != nil {
		return nil, fmt.Errorf("docker: inspect %s: %w", id, err)
	}
	return &out, nil
}

// CreateConfig is the body of a create request (the fields used here).
type CreateConfig struct {
	Image      string
	Entrypoint []string          `json:",omitempty"`
	Cmd        []string          `json:",omitempty"`
	Env        []string          `json:",omitempty"`
	Labels     map[string]string `json:",omitempty"`
	HostConfig HostConfig
}

// HostConfig is the host part of a create request.
type HostConfig struct {
	Binds        []string `json:",omitempty"`
	NetworkMode  string   `json:",omitempty"`
	PidMode      string   `json:",omitempty"`
	CgroupnsMode string   `json:",omitempty"`
	CapAdd       []string `json:",omitempty"`
	CapDrop      []string `json:",omitempty"`
	SecurityOpt  []string `json:",omitempty"`
	AutoRemove   bool     `json:",omitempty"`
}

// Create creates a container (name may be empty) and returns its ID.
func (c *Client) Create(ctx context.Context, name string, cfg CreateConfig) (string, error) {
	path := "/containers/create"
	if name != "" {
		path += "?name=" + url.QueryEscape(name)
	}
	var out struct{ ID string }
	if err := c.do(ctx, "POST", path, cfg, &out); err != nil {
		return "", fmt.Errorf("docker: create: %w", err)
	}
	return out.ID, nil
}

// Start starts a created container.
func (c *Client) Start(ctx context.Context, id string) error {
	if err := c.do(ctx, "POST", "/containers/"+url.PathEscape(id)+"/start", nil, nil); err != nil {
		return fmt.Errorf("docker: start %s: %w", short(id), err)
	}
	return nil
}

// Wait blocks until the container exits and returns its exit code.
func (c *Client) Wait(ctx context.Context, id string) (int, error) {
	var out struct {
		StatusCode int
		Error      *struct{ Message string }
	}
	if err := c.do(ctx, "POST", "/containers/"+url.PathEscape(id)+"/wait", nil, &out); err != nil {
		return -1, fmt.Errorf("docker: wait %s: %w", short(id), err)
	}
	if out.Error != nil && out.Error.Message != "" {
		return out.StatusCode, fmt.Errorf("docker: wait %s: %s", short(id), out.Error.Message)
	}
	return out.StatusCode, nil
}

// Logs returns a (non-TTY) container's stdout and stderr.
func (c *Client) Logs(ctx context.Context, id string) (stdout, stderr []byte, err error) {
	resp, err := c.req(ctx, "GET", "/containers/"+url.PathEscape(id)+"/logs?stdout=1&stderr=1", nil)
	if err != nil {
		return nil, nil, fmt.Errorf("docker: logs %s: %w", short(id), err)
	}
	defer resp.Body.Close()
	var o, e bytes.Buffer
	if err := Demux(resp.Body, &o, &e); err != nil {
		return o.Bytes(), e.Bytes(), fmt.Errorf("docker: logs %s: %w", short(id), err)
	}
	return o.Bytes(), e.Bytes(), nil
}

// Attach attaches to a created container's stdout and stderr before it
// starts, and returns docker's multiplexed stream (read it with
// ReadFrame); it ends when the container exits. Close it when done.
func (c *Client) Attach(ctx context.Context, id string) (io.ReadCloser, error) {
	resp, err := c.req(ctx, "POST", "/containers/"+url.PathEscape(id)+"/attach?stream=1&stdout=1&stderr=1", nil)
	if err != nil {
		return nil, fmt.Errorf("docker: attach %s: %w", short(id), err)
	}
	return resp.Body, nil
}

// Demux splits docker's multiplexed stream (8-byte frame headers: stream
// 1 stdout, 2 stderr) into stdout and stderr.
func Demux(r io.Reader, stdout, stderr io.Writer) error {
	br := bufio.NewReader(r)
	for {
		stream, b, err := ReadFrame(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		w := stdout
		if stream == 2 {
			w = stderr
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
}

// maxFrame bounds one frame of a multiplexed stream.
const maxFrame = 16 << 20

// ReadFrame reads one frame of docker's multiplexed stream: the stream
// number (1 stdout, 2 stderr) and its bytes. io.EOF at a frame boundary.
func ReadFrame(r io.Reader) (stream byte, data []byte, err error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("docker: truncated frame header: %w", err)
		}
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("docker: frame of %d bytes", n)
	}
	data = make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, nil, fmt.Errorf("docker: truncated frame: %w", err)
	}
	return hdr[0], data, nil
}

// CopyFile returns the content of the regular file at path in the
// container (running or stopped; bind mounts included), at most max bytes.
func (c *Client) CopyFile(ctx context.Context, id, path string, max int64) ([]byte, error) {
	resp, err := c.req(ctx, "GET", "/containers/"+url.PathEscape(id)+"/archive?path="+url.QueryEscape(path), nil)
	if err != nil {
		return nil, fmt.Errorf("docker: copy %s from %s: %w", path, short(id), err)
	}
	defer resp.Body.Close()
	tr := tar.NewReader(resp.Body)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("docker: copy %s from %s: no regular file in the archive: %w", path, short(id), err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > max {
			return nil, fmt.Errorf("docker: copy %s from %s: %d bytes, more than %d", path, short(id), h.Size, max)
		}
		return io.ReadAll(tr)
	}
}

// PutFile writes data as the regular file dir/name (mode 0600, root's) in
// a created container, before it starts: what a helper needs that does not
// fit on its command line (one argument holds at most 128 KiB).
func (c *Client) PutFile(ctx context.Context, id, dir, name string, data []byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: int64(len(data)), Mode: 0o600}); err != nil {
		return fmt.Errorf("docker: put %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("docker: put %s: %w", name, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("docker: put %s: %w", name, err)
	}
	resp, err := c.send(ctx, "PUT", "/containers/"+url.PathEscape(id)+"/archive?path="+url.QueryEscape(dir), "application/x-tar", &buf)
	if err != nil {
		return fmt.Errorf("docker: put %s into %s:%s: %w", name, short(id), dir, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// Remove force-removes a container.
func (c *Client) Remove(ctx context.Context, id string) error {
	if err := c.do(ctx, "DELETE", "/containers/"+url.PathEscape(id)+"?force=1", nil, nil); err != nil {
		return fmt.Errorf("docker: remove %s: %w", short(id), err)
	}
	return nil
}

// APIError is a non-2xx answer.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message) }

func (c *Client) req(ctx context.Context, method, path string, body any) (*http.Response, error) {
	if body == nil {
		return c.send(ctx, method, path, "", nil)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return c.send(ctx, method, path, "application/json", bytes.NewReader(b))
}

// send makes one API request with a body of the given type (none if rd is
// nil); a non-2xx answer is an *APIError.
func (c *Client) send(ctx context.Context, method, path, contentType string, rd io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, apiPrefix+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var m struct{ Message string }
		if json.Unmarshal(b, &m) != nil || m.Message == "" {
			m.Message = strings.TrimSpace(string(b))
		}
		return nil, &APIError{Status: resp.StatusCode, Message: m.Message}
	}
	return resp, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.req(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
