package action

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestAPIClientIgnoresStepRoots: a step puts SSL_CERT_FILE (its own CA)
// in the job's environment and runs a TLS server with a certificate of
// that CA: the post step's GitHub client must not trust it. Run in a
// fresh process, since Go loads the system roots once per process.
func TestAPIClientIgnoresStepRoots(t *testing.T) {
	if os.Getenv("HR_TLSROOTS_CHILD") == "" {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) }))
		defer srv.Close()
		ca := filepath.Join(t.TempDir(), "step-ca.pem")
		pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		if err := os.WriteFile(ca, pemCert, 0o644); err != nil {
			t.Fatal(err)
		}
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		c := exec.Command(exe, "-test.run=^TestAPIClientIgnoresStepRoots$", "-test.v")
		c.Env = append(os.Environ(), "HR_TLSROOTS_CHILD="+srv.URL, "SSL_CERT_FILE="+ca, "SSL_CERT_DIR=/nonexistent")
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	url := os.Getenv("HR_TLSROOTS_CHILD")
	// The control: the system pool now is the step's CA, which trusts
	// the server.
	if _, err := (&http.Client{}).Get(url); err != nil {
		t.Fatalf("control: SSL_CERT_FILE did not take: %v", err)
	}
	_, err := defaultHTTPClient().Get(url)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("the API client trusted the step's CA (err %v)", err)
	}
}
