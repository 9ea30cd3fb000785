package tlsca

import (
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// python is Debian's interpreter: its ssl module has VERIFY_X509_STRICT,
// which Python 3.13 turns on by default in create_default_context().
const python = "/usr/bin/python3"

// strictClient connects with the flags Python 3.13 uses by default and
// prints the negotiated peer's subject CN.
const strictClient = `
import socket, ssl, sys
host, port, name, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
assert ctx.verify_flags & ssl.VERIFY_X509_STRICT
with socket.create_connection((host, port)) as s:
    with ctx.wrap_socket(s, server_hostname=name) as t:
        cert = t.getpeercert()
        print(dict(x[0] for x in cert["subject"])["commonName"])
`

// TestPythonStrictAcceptsLeaves runs the real verifier the issue names:
// OpenSSL's X509_STRICT through Python's ssl module, against the bundle.
func TestPythonStrictAcceptsLeaves(t *testing.T) {
	if _, err := exec.LookPath(python); err != nil {
		t.Fatalf("%s is required: %v (apt-get install python3)", python, err)
	}
	ca, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := ca.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	cafile := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(cafile, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hello.ServerName
			if name == "" {
				name = "127.0.0.1"
			}
			return ca.GetCertificate(name)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				c.Read(make([]byte, 1))
			}()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	for _, name := range []string{"api.example.com", "127.0.0.1"} {
		out, err := exec.Command(python, "-c", strictClient, "127.0.0.1", port, name, cafile).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: python strict verification failed: %v\n%s", name, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != name {
			t.Errorf("%s: peer CN %q", name, got)
		}
	}
	// The same client must refuse a leaf of a CA it does not trust, or the
	// check above proves nothing.
	other, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "-c", strictClient, "127.0.0.1", port, "api.example.com", other.Path()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CERTIFICATE_VERIFY_FAILED") {
		t.Fatalf("python did not refuse an untrusted leaf: %v\n%s", err, out)
	}
}
