package tlsca

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SystemBundleFiles are the distributions' CA bundle paths, in the order Go
// and OpenSSL builds look for them. The first that exists holds the system
// roots; session/ mounts the agent's bundle over all that exist.
var SystemBundleFiles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Gentoo, Arch
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/tls/cacert.pem",                           // OpenELEC
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
	"/etc/ssl/cert.pem",                                 // Alpine
}

// SystemCertDirs hold one certificate per file when no bundle file exists.
var SystemCertDirs = []string{"/etc/ssl/certs", "/etc/pki/tls/certs"}

// Bundle returns a PEM bundle for the agent: the system roots, then the
// certificates in extra (files or directories the caller already trusted,
// e.g. through SSL_CERT_FILE or SSL_CERT_DIR), then this CA. Duplicates
// are dropped. An extra path that does not exist is skipped: a stale
// variable in the caller's environment should not stop a run.
func (ca *CA) Bundle(extra ...string) ([]byte, error) {
	b := &bundle{seen: map[[32]byte]bool{}}
	if err := b.addSystem(); err != nil {
		return nil, err
	}
	for _, p := range extra {
		if p == "" {
			continue
		}
		if err := b.addPath(p); err != nil {
			return nil, err
		}
	}
	b.addDER(ca.cert.Raw, ca.cert.Subject.CommonName)
	return b.out.Bytes(), nil
}

type bundle struct {
	out  bytes.Buffer
	seen map[[32]byte]bool
}

func (b *bundle) addSystem() error {
	for _, f := range SystemBundleFiles {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("system roots: %w", err)
		}
		b.addPEM(data)
		return nil
	}
	for _, d := range SystemCertDirs {
		if err := b.addDir(d); err != nil {
			return fmt.Errorf("system roots: %w", err)
		}
	}
	return nil
}

func (b *bundle) addPath(p string) error {
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("trusted roots %s: %w", p, err)
	}
	if st.IsDir() {
		return b.addDir(p)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("trusted roots %s: %w", p, err)
	}
	b.addPEM(data)
	return nil
}

// addDir reads every certificate file of a hashed directory such as
// SSL_CERT_DIR; files that are not PEM are ignored.
func (b *bundle) addDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // a dangling symlink in a hashed dir is common
		}
		b.addPEM(data)
	}
	return nil
}

// addPEM adds every parseable CERTIFICATE block of data.
func (b *bundle) addPEM(data []byte) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue
		}
		b.addDER(block.Bytes, c.Subject.CommonName)
	}
}

func (b *bundle) addDER(der []byte, name string) {
	sum := sha256.Sum256(der)
	if b.seen[sum] {
		return
	}
	b.seen[sum] = true
	if name != "" {
		fmt.Fprintf(&b.out, "# %s\n", strings.Map(printable, name))
	}
	pem.Encode(&b.out, &pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// printable keeps a subject name in a comment line from breaking the file.
func printable(r rune) rune {
	if r < 0x20 || r == 0x7f {
		return ' '
	}
	return r
}

// UpstreamRoots returns the pool that verifies real servers: the system
// roots plus the certificates in caFiles (an endpoint's upstream_ca). It
// never contains this CA.
func UpstreamRoots(caFiles ...string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, f := range caFiles {
		if f == "" {
			continue
		}
		if err := appendCAFile(pool, f); err != nil {
			return nil, err
		}
	}
	return pool, nil
}

// ParseCAFile reads a PEM file of CA certificates (an upstream_ca) into a
// pool of its own, failing when it holds none.
func ParseCAFile(f string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	return pool, appendCAFile(pool, f)
}

func appendCAFile(pool *x509.CertPool, f string) error {
	data, err := os.ReadFile(f)
	if err != nil {
		return fmt.Errorf("upstream_ca: %w", err)
	}
	if !pool.AppendCertsFromPEM(data) {
		return fmt.Errorf("upstream_ca %s: no certificates found", f)
	}
	return nil
}
