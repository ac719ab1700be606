package testnet

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Hit is one contact with a fake internet server. A TLS server logs a "tls"
// hit per connection and an "https" hit per HTTP request on it.
type Hit struct {
	Time   time.Time `json:"time"`
	Proto  string    `json:"proto"` // tcp, udp, icmp
	Kind   string    `json:"kind"`  // tcp, tls, http, udp, icmp
	Local  string    `json:"local"` // the address the client reached
	Remote string    `json:"remote"`
	Detail string    `json:"detail,omitempty"` // SNI, Host, payload size, first bytes
}

// ServeMain runs the fake internet's servers as a process of its own: the
// test binary calls it from TestMain when HR_FAKEINET (the hit log path) is
// set. Each argument is KIND:ADDR, KIND one of tcp, tls, http, udp, icmp
// (ADDR ignored), or echo (line echo, connection kept open), e.g. "tls::443", "udp:198.18.1.53:53". It never returns.
func ServeMain(logPath string, specs []string) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeinet:", err)
		os.Exit(2)
	}
	s := &server{enc: json.NewEncoder(f)}
	cert, err := selfSigned()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeinet:", err)
		os.Exit(2)
	}
	for _, spec := range specs {
		kind, addr, _ := strings.Cut(spec, ":")
		if err := s.listen(kind, addr, cert); err != nil {
			fmt.Fprintf(os.Stderr, "fakeinet: %s: %v\n", spec, err)
			os.Exit(2)
		}
	}
	fmt.Println("fakeinet: ready")
	select {}
}

type server struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (s *server) hit(h Hit) {
	h.Time = time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.enc.Encode(h)
}

func (s *server) listen(kind, addr string, cert tls.Certificate) error {
	switch kind {
	case "tcp", "tls", "http", "echo":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		switch kind {
		case "tcp":
			go s.serveTCP(l)
		case "echo":
			go s.serveEcho(l)
		case "http":
			go s.serveHTTP(l, "http")
		case "tls":
			tl := tls.NewListener(&loggingListener{l, s}, &tls.Config{Certificates: []tls.Certificate{cert},
				NextProtos: []string{"h2", "http/1.1"}}) // HTTP/2 by ALPN, as real servers offer
			go s.serveHTTP(tl, "https")
		}
	case "udp":
		// udp4 for IPv4 addresses: Go would open a dual-stack IPv6 socket
		// for 0.0.0.0, which ignores IPv4 control messages.
		nw := "udp6"
		if h, _, _ := net.SplitHostPort(addr); net.ParseIP(h).To4() != nil {
			nw = "udp4"
		}
		pc, err := net.ListenPacket(nw, addr)
		if err != nil {
			return err
		}
		go s.serveUDP(pc)
	case "icmp":
		for _, nw := range []string{"ip4:icmp", "ip6:ipv6-icmp"} {
			pc, err := net.ListenPacket(nw, "")
			if err != nil {
				return err
			}
			go s.serveICMP(pc, nw)
		}
	default:
		return fmt.Errorf("unknown kind %q", kind)
	}
	return nil
}

// serveEcho logs every line a client sends (Detail) and echoes it back,
// for as long as the client keeps the connection open.
func (s *server) serveEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				s.hit(Hit{Proto: "tcp", Kind: "echo", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), Detail: sc.Text()})
				if _, err := c.Write(append(sc.Bytes(), '\n')); err != nil {
					return
				}
			}
		}()
	}
}

// loggingListener logs every accepted connection as a "tls" hit, before any
// handshake, so clients that never speak HTTP are seen too.
type loggingListener struct {
	net.Listener
	s *server
}

func (l *loggingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.hit(Hit{Proto: "tcp", Kind: "tls", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()})
	}
	return c, err
}

func (s *server) serveTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
			_, _ = c.Write([]byte("hello\n"))
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			s.hit(Hit{Proto: "tcp", Kind: "tcp", Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), Detail: fmt.Sprintf("%q", buf[:n])})
		}()
	}
}

func (s *server) serveHTTP(l net.Listener, kind string) {
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local := ""
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			local = a.String()
		}
		detail := "host=" + r.Host
		if r.TLS != nil {
			detail += " sni=" + r.TLS.ServerName
		}
		s.hit(Hit{Proto: "tcp", Kind: kind, Local: local, Remote: r.RemoteAddr, Detail: detail})
		if n, err := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/bytes/"), 10, 64); err == nil && strings.HasPrefix(r.URL.Path, "/bytes/") {
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			_, _ = io.Copy(w, io.LimitReader(Pattern(), n))
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})}
	_ = srv.Serve(l)
}

// serveUDP logs each datagram with the address it was sent to (from
// IP_PKTINFO: a wildcard socket's own address says nothing) and echoes it.
func (s *server) serveUDP(pc net.PacketConn) {
	buf := make([]byte, 65536)
	local := pc.LocalAddr().(*net.UDPAddr)
	var p4 *ipv4.PacketConn
	var p6 *ipv6.PacketConn
	if local.IP.To4() != nil {
		p4 = ipv4.NewPacketConn(pc)
		_ = p4.SetControlMessage(ipv4.FlagDst, true)
	} else {
		p6 = ipv6.NewPacketConn(pc)
		_ = p6.SetControlMessage(ipv6.FlagDst, true)
	}
	for {
		var n int
		var from net.Addr
		var dst net.IP
		var err error
		if p4 != nil {
			var cm *ipv4.ControlMessage
			n, cm, from, err = p4.ReadFrom(buf)
			if cm != nil {
				dst = cm.Dst
			}
		} else {
			var cm *ipv6.ControlMessage
			n, cm, from, err = p6.ReadFrom(buf)
			if cm != nil {
				dst = cm.Dst
			}
		}
		if err != nil {
			return
		}
		to := local.String()
		if dst != nil {
			to = (&net.UDPAddr{IP: dst, Port: local.Port}).String()
		}
		s.hit(Hit{Proto: "udp", Kind: "udp", Local: to, Remote: from.String(), Detail: fmt.Sprintf("%d bytes", n)})
		// Answer from the address the client asked, as a real host would.
		var werr error
		if p4 != nil {
			_, werr = p4.WriteTo(buf[:n], &ipv4.ControlMessage{Src: dst}, from)
		} else {
			_, werr = p6.WriteTo(buf[:n], &ipv6.ControlMessage{Src: dst}, from)
		}
		if werr != nil {
			fmt.Fprintln(os.Stderr, "fakeinet: udp reply:", werr)
		}
	}
}

// serveICMP logs echo requests; the kernel answers them itself.
func (s *server) serveICMP(pc net.PacketConn, nw string) {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 8 {
			continue
		}
		// ICMP echo request: type 8 (v4) or 128 (v6). The local address
		// is not available on a raw socket; Local names the family.
		if (nw == "ip4:icmp" && buf[0] == 8) || (nw == "ip6:ipv6-icmp" && buf[0] == 128) {
			s.hit(Hit{Proto: "icmp", Kind: "icmp", Local: nw, Remote: from.String(), Detail: fmt.Sprintf("%d bytes", n-8)})
		}
	}
}

// Pattern returns an endless reader of the bytes the servers send for
// GET /bytes/N (the first N of them): a hash chain, so a byte lost,
// duplicated or reordered on the way changes the digest of what arrived.
func Pattern() io.Reader { return &pattern{} }

type pattern struct {
	block [sha256.Size]byte
	off   int
	n     uint64
}

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		if p.off == 0 {
			var seed [8]byte
			binary.BigEndian.PutUint64(seed[:], p.n)
			p.block = sha256.Sum256(seed[:])
			p.n++
		}
		b[i] = p.block[p.off]
		p.off = (p.off + 1) % sha256.Size
	}
	return len(b), nil
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"*.test"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// MaybeServe turns the current process into the fake internet's servers
// when HR_FAKEINET is set (see Net.StartServers). Call it first in TestMain.
func MaybeServe() {
	if p := os.Getenv("HR_FAKEINET"); p != "" {
		ServeMain(p, os.Args[1:])
	}
}
