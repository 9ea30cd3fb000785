package tlsca

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// certs parses every certificate of a PEM bundle.
func certs(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func systemRoots(t *testing.T) []*x509.Certificate {
	t.Helper()
	b := &bundle{seen: map[[32]byte]bool{}}
	if err := b.addSystem(); err != nil {
		t.Fatal(err)
	}
	return certs(t, b.out.Bytes())
}

func TestBundle(t *testing.T) {
	ca, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sys := systemRoots(t)
	if len(sys) == 0 {
		t.Fatal("no system roots found; install ca-certificates")
	}
	other, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A corporate root the caller trusted through SSL_CERT_FILE, in a file
	// that also repeats a system root and our own CA.
	dir := t.TempDir()
	extra := filepath.Join(dir, "corp.pem")
	data := append(other.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sys[0].Raw})...)
	data = append(data, ca.CertPEM()...)
	if err := os.WriteFile(extra, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// And an SSL_CERT_DIR holding the same corporate root again.
	certDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certDir, "abcd1234.0"), other.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := ca.Bundle(extra, certDir, filepath.Join(dir, "missing.pem"), "")
	if err != nil {
		t.Fatal(err)
	}
	got := certs(t, out)
	if len(got) != len(sys)+2 {
		t.Fatalf("bundle has %d certificates, want %d system + corporate + ours", len(got), len(sys))
	}
	seen := map[string]bool{}
	for _, c := range got {
		if seen[string(c.Raw)] {
			t.Fatalf("duplicate %s", c.Subject)
		}
		seen[string(c.Raw)] = true
	}
	if !seen[string(other.Certificate().Raw)] {
		t.Error("the caller's extra root is missing")
	}
	if !bytes.Equal(got[len(got)-1].Raw, ca.Certificate().Raw) {
		t.Error("our CA is not last")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(out) {
		t.Fatal("bundle does not load into a pool")
	}
	leaf, err := ca.GetCertificate("bundle.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "bundle.example"}); err != nil {
		t.Errorf("a leaf does not verify against the bundle: %v", err)
	}
}

func TestUpstreamRoots(t *testing.T) {
	ca, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pool, err := UpstreamRoots(ca.Path())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.GetCertificate("upstream.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "upstream.example"}); err != nil {
		t.Error(err)
	}
	if _, err := UpstreamRoots(filepath.Join(t.TempDir(), "nope.pem")); err == nil {
		t.Error("a missing upstream_ca was accepted")
	}
}
