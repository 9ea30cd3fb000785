package tlsca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
)

func critical(c *x509.Certificate, oid asn1.ObjectIdentifier) (present, crit bool) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return true, e.Critical
		}
	}
	return false, false
}

func TestLoadCreatesOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "clawpatrol")
	ca, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700}, {filepath.Join(dir, CertFile), 0o644}, {filepath.Join(dir, KeyFile), 0o600}} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %04o, want %04o", f.path, st.Mode().Perm(), f.mode)
		}
	}
	if ca.Path() != filepath.Join(dir, CertFile) {
		t.Errorf("Path() = %s", ca.Path())
	}
	again, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) {
		t.Fatal("second Load created a new CA")
	}
}

func TestLoadConcurrentCreatesOneCA(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	pems := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range pems {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ca, err := Load(dir)
			errs[i] = err
			if err == nil {
				pems[i] = ca.CertPEM()
			}
		}()
	}
	wg.Wait()
	for i := range pems {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(pems[i], pems[0]) {
			t.Fatal("concurrent loads created different CAs")
		}
	}
}

func TestLoadRefusesReadableKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, KeyFile)
	if err := os.Chmod(key, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	var km *KeyModeError
	if !errors.As(err, &km) {
		t.Fatalf("Load with a 0640 key: %v, want a KeyModeError", err)
	}
	if h := Hints(err); len(h) != 1 || h[0] != "fix it with: chmod 600 "+key {
		t.Errorf("hints = %q", h)
	}
}

func TestLoadRefusesMismatchedPair(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if _, err := Load(a); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(b); err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile(filepath.Join(b, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, CertFile), other, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(a); err == nil {
		t.Fatal("Load accepted a certificate of another key")
	}
}

func TestCAProfile(t *testing.T) {
	ca, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Certificate()
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Error("not a CA")
	}
	if p, crit := critical(c, oidBasicConstraints); !p || !crit {
		t.Error("basicConstraints missing or not critical")
	}
	if p, crit := critical(c, oidKeyUsage); !p || !crit {
		t.Error("keyUsage missing or not critical")
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("keyUsage %v, want certSign|cRLSign", c.KeyUsage)
	}
	if len(c.SubjectKeyId) == 0 {
		t.Error("no subject key id")
	}
	if c.Subject.CommonName == "" {
		t.Error("empty CN")
	}
	if c.NotAfter.Before(time.Now().Add(5 * 365 * 24 * time.Hour)) {
		t.Errorf("CA expires already on %v", c.NotAfter)
	}
}

func TestLeafProfile(t *testing.T) {
	ca, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"api.example.com", "Mixed.Example.COM.", "10.1.2.3", "::1", "[2001:db8::1]", "under_score.example"} {
		tc, err := ca.GetCertificate(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		leaf := tc.Leaf
		norm, _ := normalize(name)
		opts := x509.VerifyOptions{Roots: ca.Pool(), DNSName: norm, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := leaf.Verify(opts); err != nil {
			t.Errorf("%s: go verification: %v", name, err)
		}
		if leaf.Subject.CommonName == "" {
			t.Errorf("%s: empty CN", name)
		}
		if len(leaf.DNSNames)+len(leaf.IPAddresses) != 1 {
			t.Errorf("%s: SAN %v %v", name, leaf.DNSNames, leaf.IPAddresses)
		}
		if len(leaf.SubjectKeyId) == 0 || !bytes.Equal(leaf.AuthorityKeyId, ca.Certificate().SubjectKeyId) {
			t.Errorf("%s: SKI %x AKI %x", name, leaf.SubjectKeyId, leaf.AuthorityKeyId)
		}
		if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Errorf("%s: keyUsage %v", name, leaf.KeyUsage)
		}
		if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
			t.Errorf("%s: EKU %v", name, leaf.ExtKeyUsage)
		}
		if leaf.IsCA {
			t.Errorf("%s: leaf is a CA", name)
		}
		now := time.Now()
		if leaf.NotBefore.After(now.Add(-50*time.Minute)) || leaf.NotAfter.Before(now.Add(29*24*time.Hour)) ||
			leaf.NotAfter.After(now.Add(31*24*time.Hour)) || leaf.NotAfter.After(ca.Certificate().NotAfter) {
			t.Errorf("%s: validity %v .. %v", name, leaf.NotBefore, leaf.NotAfter)
		}
	}
}

func TestLeafLongNameKeepsCNShort(t *testing.T) {
	ca, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	name := "a-very-long-label-that-is-almost-sixty-three-characters-long-xx.example.com"
	tc, err := ca.GetCertificate(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Leaf.Subject.CommonName) > maxCN || tc.Leaf.Subject.CommonName == "" {
		t.Errorf("CN %q", tc.Leaf.Subject.CommonName)
	}
	if _, err := tc.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: name}); err != nil {
		t.Error(err)
	}
}

func TestLeafRefusesBadNames(t *testing.T) {
	ca, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "*.example.com", "a..b", "a b.com", "-a.com", "a-.com", "fe80::1%eth0", "x\x00y", "é.com"} {
		if _, err := ca.GetCertificate(name); err == nil {
			t.Errorf("GetCertificate(%q) minted a leaf", name)
		}
	}
}

func TestLeafCacheSharesAndBounds(t *testing.T) {
	ca, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([]any, 16)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ca.GetCertificate("same.example.com")
			if err != nil {
				t.Error(err)
			}
			got[i] = c
		}()
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] {
			t.Fatal("concurrent requests for one name minted more than one leaf")
		}
	}

	small := newLeafCache(2)
	mints := 0
	mint := func(name string) (c *tls.Certificate, err error) { mints++; return ca.mint(name) }
	for _, n := range []string{"a.test", "b.test", "a.test", "c.test", "a.test", "b.test"} {
		if _, err := small.get(n, mint); err != nil {
			t.Fatal(err)
		}
	}
	// a, b minted; a hit; c evicts b; a hit; b minted again.
	if mints != 4 || small.len() != 2 {
		t.Errorf("mints = %d, cached = %d; want 4 and 2", mints, small.len())
	}
}
