package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// documentedEscapes are the probes that get through by design, each with
// the place docs/security.md explains it.
var documentedEscapes = map[string]string{
	"unmasked-unix-socket": "docs/security.md, inherent limits: unix sockets",
}

// TestAdversarialSuite runs internal/adversary — a hostile agent trying
// every known way out — inside clawpatrol as an ordinary user on a
// terminal, and fails on any escape that is not documented. `make
// adversarial` runs it with -v so the report is in the CI log.
func TestAdversarialSuite(t *testing.T) {
	adv := filepath.Join(root, "adversary")
	if out, err := exec.Command("go", "build", "-o", adv, "../internal/adversary").CombinedOutput(); err != nil {
		t.Fatalf("build adversary: %v\n%s", err, out)
	}
	e := newEnv(t)
	caPEM, cert := testCA(t, "allowed.test")
	e.write("upstream-ca.pem", string(caPEM))
	upstreamHits := make(chan string, 100)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHits <- r.Method + " " + r.URL.Path
		fmt.Fprintln(w, "upstream")
	}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })

	secretFile := e.write("secret.txt", "adversary-real-secret-0123456789\n")
	os.Chmod(secretFile, 0o600)
	masked, open := unixListener(t, e, "masked.sock"), unixListener(t, e, "open.sock")
	e.config(fmt.Sprintf(`
endpoints:
  allowed:
    hosts: [allowed.test]
    protocol: https
    upstream: %s
    upstream_ca: upstream-ca.pem
    credential: tok
credentials:
  tok:
    from: {file: secret.txt}
    placeholder: {env: ADV_TOKEN}
mask: [masked.sock]
policy:
  paths: [policy.rego]
`, ln.Addr()))
	e.write("policy.rego", "package clawpatrol\n\nallow contains \"allowed\" if input.endpoint == \"allowed\"\n")

	cmd := e.command("run", "-c", e.cfg, "--audit", e.auditPath(), "--", adv)
	cmd.Env = append(cmd.Env, "ADV_SECRET_FILE="+secretFile, "ADV_AUDIT="+e.auditPath(), "ADV_PLACEHOLDER_ENV=ADV_TOKEN",
		"ADV_ALLOWED=allowed.test", "ADV_HOST_IP="+hostAddress(t), "ADV_MASKED_SOCK="+masked, "ADV_OPEN_SOCK="+open)
	tm := startTerm(t, cmd)
	report := strings.ReplaceAll(tm.output(), "\r\n", "\n")
	tm.wait()
	t.Logf("adversary report:\n%s", report)

	probes, escapes := 0, 0
	for _, line := range strings.Split(report, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "held" && f[0] != "escaped") {
			continue
		}
		probes++
		if f[0] == "escaped" {
			if doc, ok := documentedEscapes[f[1]]; ok {
				t.Logf("documented escape %s (%s)", f[1], doc)
				continue
			}
			escapes++
			t.Errorf("unexpected escape: %s", line)
		}
	}
	if probes < 40 {
		t.Fatalf("the adversary reported %d probes, want all 40", probes)
	}
	// Nothing the agent sent may have reached the upstream except through
	// the allowed endpoint's own checks: the smuggled request never.
	close(upstreamHits)
	for hit := range upstreamHits {
		if strings.Contains(hit, "smuggled") {
			t.Errorf("a smuggled request reached the upstream: %s", hit)
		}
	}
	// The daemon it left behind did not outlive it.
	if out, err := exec.Command("pgrep", "-f", "sleep 987").Output(); err == nil {
		t.Errorf("a daemon outlived the agent: pids %s", out)
	}
	if escapes > 0 {
		t.Fatalf("%d unexpected escapes", escapes)
	}
}

// unixListener listens on a unix socket in the env's directory that the
// agent user may connect to, accepting and closing connections.
func unixListener(t *testing.T, e *env, name string) string {
	path := filepath.Join(e.dir, name)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o777)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return path
}

// testCA makes a CA and a server certificate for name signed by it.
func testCA(t *testing.T, name string) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
