package main

// End-to-end tests of the name-checking relay (egress/relay): names that
// share an allowed name's address, over TLS and HTTP, IPv4 and IPv6.

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// relayClient runs the Go clients of the relay tests:
//
//	silent ADDR: connect, send nothing, succeed if the far side closes within 15 s
//	many ADDR NAME N: hold N TLS connections for NAME open at once, then
//	        make one request on each; succeed if all N answer
func relayClient(mode string, args []string) int {
	switch mode {
	case "silent":
		c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer c.Close()
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		n, err := c.Read(make([]byte, 1))
		if n != 0 || err == nil || os.IsTimeout(err) {
			fmt.Fprintln(os.Stderr, "not closed:", n, err)
			return 1
		}
		fmt.Printf("closed after %v\n", time.Since(start).Round(time.Millisecond))
		return 0
	case "many":
		n, _ := strconv.Atoi(args[2])
		conns := make([]*tls.Conn, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := &net.Dialer{Timeout: 20 * time.Second}
				c, err := tls.DialWithDialer(d, "tcp", args[0], &tls.Config{ServerName: args[1], InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
				if err != nil {
					errs <- err
					return
				}
				conns[i] = c
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err, len(errs)+1, "failed")
			return 1
		}
		fmt.Println("open at once:", n)
		var fails sync.WaitGroup
		var mu sync.Mutex
		bad := 0
		for _, c := range conns {
			fails.Add(1)
			go func() {
				defer fails.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", args[1])
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
					mu.Lock()
					bad++
					mu.Unlock()
				}
			}()
		}
		fails.Wait()
		if bad > 0 {
			fmt.Fprintln(os.Stderr, bad, "requests failed")
			return 1
		}
		return 0
	}
	return 2
}

func TestRunRelayChecksNames(t *testing.T) {
	w := newWorld(t)
	const size = 64 << 20
	sum := sha256.New()
	_, _ = io.Copy(sum, io.LimitReader(testnet.Pattern(), size))
	wantSum := hex.EncodeToString(sum.Sum(nil))
	got := filepath.Join(w.tmp, "download.sha256")
	const tls4, tls6 = "--resolve evil.test:443:198.18.1.10", "--resolve 'evil.test:443:[2001:db8:1::a]'"
	wl := workload{
		// The allowed name first: its answer puts the shared address in the allow set.
		{"allowed-v4", "curl -sk -4 --max-time 5 https://allowed.test/"},
		{"allowed-v6", "curl -sk -6 --max-time 5 https://allowed.test/"},
		{"allowed-http-v4", "curl -s -4 --max-time 5 http://allowed.test/"},
		{"allowed-http-v6", "curl -s -6 --max-time 5 http://allowed.test/"},
		{"allowed-h2", "curl -sk --http2 --max-time 5 -o /dev/null -w '%{http_version}' https://allowed.test/ | grep -qx 2"},
		{"allowed-http11", "curl -sk --http1.1 --max-time 5 -o /dev/null -w '%{http_version}' https://allowed.test/ | grep -qx 1.1"},
		{"download", fmt.Sprintf("curl -sk --max-time 60 https://allowed.test/bytes/%d | sha256sum | cut -d' ' -f1 > %s", size, got)},
		// Another name on the very same addresses.
		{"evil-tls-v4", "curl -sk -4 --max-time 5 " + tls4 + " https://evil.test/"},
		{"evil-tls-v6", "curl -sk -6 --max-time 5 " + tls6 + " https://evil.test/"},
		{"evil-http-v4", "curl -s -4 --max-time 5 -H 'Host: evil.test' http://allowed.test/ | grep -q ok"},
		{"evil-http-v6", "curl -s -6 --max-time 5 -H 'Host: evil.test' http://allowed.test/ | grep -q ok"},
		{"evil-http-403", "curl -s -4 --max-time 5 -o /dev/null -w '%{http_code}' -H 'Host: evil.test' http://allowed.test/ | grep -qx 403"},
		// What a lenient server (Go's, here) serves: a made-up method, an empty line first.
		{"evil-http-odd-method", `printf 'SSH-2.0-x / HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n' | socat -T2 - TCP:198.18.1.10:80 | grep -q '^ok'`},
		{"evil-http-empty-line", `printf '\r\nGET / HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n' | socat -T2 - TCP:198.18.1.10:80 | grep -q '^ok'`},
		{"evil-hello", "echo | openssl s_client -connect 198.18.1.10:443 -servername evil.test 2>&1 | grep -q 'BEGIN CERTIFICATE'"},
		{"no-sni", "curl -sk --max-time 5 https://198.18.1.10/"},
		{"silent", "HR_GOCLIENT=silent " + w.self + " 198.18.1.10:443"},
		{"many", "HR_GOCLIENT=many " + w.self + " 198.18.1.10:443 allowed.test 1000"},
		// QUIC to a name's address is refused (the relay cannot check its
		// name): rejected, so the client hears of it rather than times out.
		{"quic", "echo x | timeout 10 socat -T5 - UDP4:allowed.test:443 2>&1 | grep -q 'No route to host'"},
	}
	status, rep := w.run(t, []string{"--egress-policy", "block", "--allowed-endpoints", "allowed.test:443 allowed.test:80", "--upstream", "198.18.0.2"}, wl)
	want := map[string]bool{"allowed-v4": true, "allowed-v6": true, "allowed-http-v4": true, "allowed-http-v6": true,
		"allowed-h2": true, "allowed-http11": true, "download": true, "evil-http-403": true, "silent": true, "many": true,
		"quic": true}
	for _, c := range wl {
		if ok := status[c.name] == 0; ok != want[c.name] {
			t.Errorf("%s: exit status %d, want success=%v", c.name, status[c.name], want[c.name])
		}
	}
	if b, _ := os.ReadFile(got); strings.TrimSpace(string(b)) != wantSum {
		t.Errorf("download: sha256 %q, want %s", b, wantSum)
	}
	// The far end decides: no request for evil.test arrived, by SNI or Host;
	// allowed.test's did, on both families and both ports.
	var reached = map[string]int{}
	for _, h := range w.Hits() {
		if strings.Contains(h.Detail, "evil.test") {
			t.Errorf("evil.test reached the server: %+v", h)
		}
		if h.Kind == "https" || h.Kind == "http" {
			fam := "v4"
			if strings.HasPrefix(h.Local, "[") {
				fam = "v6"
			}
			reached[h.Kind+" "+fam]++
		}
	}
	for _, k := range []string{"https v4", "https v6", "http v4", "http v6"} {
		if reached[k] == 0 {
			t.Errorf("no %s request for allowed.test reached the server (%v)", k, reached)
		}
	}
	if reached["https v4"] < 1000 {
		t.Errorf("%d https requests over IPv4 reached the server, want the 1,000 concurrent ones and more", reached["https v4"])
	}
	// The report names the refused name, the address and the process.
	var evil, relayed, silent, quic bool
	for _, e := range rep.Egress {
		quic = quic || e.Protocol == "udp" && e.IP == "198.18.1.10" && e.Port == 443 && e.Verdict == "blocked" && filepath.Base(e.Process.Exe) == "socat"
		// The relay, not the server, closed the client that said nothing.
		silent = silent || strings.Contains(e.Reason, "sent nothing within 5s") && filepath.Base(e.Process.Exe) == "goclient"
		if e.Domain == "evil.test" && e.IP == "198.18.1.10" && e.Port == 443 && e.Verdict == "blocked" && filepath.Base(e.Process.Exe) == "curl" {
			evil = true
		}
		relayed = relayed || e.Domain == "allowed.test" && e.Verdict == "allowed"
	}
	if !silent {
		t.Error("report: no flow of the silent client closed by the relay")
	}
	if !quic {
		t.Error("report: no blocked QUIC flow of socat to 198.18.1.10:443")
	}
	if !evil || !relayed {
		t.Errorf("report: blocked evil.test by curl %v, allowed allowed.test %v: %+v", evil, relayed, rep.Egress)
	}
}
