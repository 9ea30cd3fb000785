// Package tlsca owns clawpatrol's local certificate authority: one per user,
// created on first use under $XDG_DATA_HOME/clawpatrol, never installed
// system-wide. It mints leaf certificates per host name (cached) and builds
// the trust bundle handed to the agent.
package tlsca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawpatrol/clawpatrol/config"
)

// File names inside the CA directory.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca-key.pem"
	lockFile = ".ca.lock"
)

// caValidity is how long a new CA lives. Leaves are short-lived; the CA is
// what users may have copied somewhere, so it should not expire under them.
const caValidity = 10 * 365 * 24 * time.Hour

// CA is the local certificate authority.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	dir     string
	leaves  *leafCache
}

// KeyModeError is a CA key file that others may read.
type KeyModeError struct {
	Path string
	Mode fs.FileMode
}

func (e *KeyModeError) Error() string {
	return fmt.Sprintf("ca key %s has mode %04o: it must not be readable by group or others", e.Path, e.Mode.Perm())
}

// Hints says what to do about an error from Load.
func Hints(err error) []string {
	var km *KeyModeError
	if errors.As(err, &km) {
		return []string{"fix it with: chmod 600 " + km.Path}
	}
	return nil
}

// DefaultDir is $XDG_DATA_HOME/clawpatrol (default ~/.local/share/clawpatrol).
func DefaultDir() string {
	return filepath.Join(config.XDGDir("XDG_DATA_HOME", ".local/share"), "clawpatrol")
}

// Load reads the CA from dir (DefaultDir when empty), creating it on first
// use: the directory 0700, ca.pem 0644, ca-key.pem 0600. A key file that
// group or others may read is refused.
func Load(dir string) (*CA, error) {
	if dir == "" {
		dir = DefaultDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca directory: %w", err)
	}
	// Two sessions starting at once must not both create a CA: the second
	// would overwrite the key the first one's agent already trusts.
	unlock, err := lock(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, err
	}
	defer unlock()

	ca := &CA{dir: dir, leaves: newLeafCache(leafCacheSize)}
	keyPath := filepath.Join(dir, KeyFile)
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		if err := ca.create(); err != nil {
			return nil, err
		}
		return ca, nil
	}
	if err := ca.read(); err != nil {
		return nil, err
	}
	return ca, nil
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ca lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("ca lock: %w", err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// read loads an existing CA and checks that the pair belongs together.
func (ca *CA) read() error {
	keyPath := filepath.Join(ca.dir, KeyFile)
	st, err := os.Stat(keyPath)
	if err != nil {
		return fmt.Errorf("ca key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return &KeyModeError{Path: keyPath, Mode: st.Mode()}
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return fmt.Errorf("ca key: %w", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return fmt.Errorf("ca key %s: no PRIVATE KEY block", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("ca key %s: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return fmt.Errorf("ca key %s: not a signing key", keyPath)
	}
	certPath := filepath.Join(ca.dir, CertFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return fmt.Errorf("ca certificate: %w", err)
	}
	block, _ = pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("ca certificate %s: no CERTIFICATE block", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("ca certificate %s: %w", certPath, err)
	}
	if !cert.IsCA {
		return fmt.Errorf("ca certificate %s is not a CA", certPath)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(signer.Public()) {
		return fmt.Errorf("ca certificate %s does not belong to key %s", certPath, keyPath)
	}
	if time.Now().After(cert.NotAfter) {
		return fmt.Errorf("ca certificate %s expired on %s; remove %s and %s to create a new one",
			certPath, cert.NotAfter.Format(time.DateOnly), certPath, keyPath)
	}
	ca.cert, ca.certPEM, ca.key = cert, certPEM, signer
	return nil
}

// create makes a new CA and writes it; each file appears complete or not at all.
func (ca *CA) create() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("ca key: %w", err)
	}
	ski, err := keyID(key.Public())
	if err != nil {
		return err
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"clawpatrol"}, CommonName: "clawpatrol local CA (" + owner() + ")"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(caValidity),
		// Go marks keyUsage critical; strict verifiers (Python 3.13) want
		// certSign here, a critical basicConstraints and an SKI.
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("ca certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("ca key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := writeFile(filepath.Join(ca.dir, KeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("ca key: %w", err)
	}
	if err := writeFile(filepath.Join(ca.dir, CertFile), certPEM, 0o644); err != nil {
		return fmt.Errorf("ca certificate: %w", err)
	}
	ca.cert, ca.certPEM, ca.key = cert, certPEM, key
	return nil
}

// writeFile writes through a temporary file and a rename, with mode set
// before any byte is written.
func writeFile(path string, data []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func owner() string {
	name := "user"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}

// keyID is the RFC 5280 §4.2.1.2 method (1) key identifier: the SHA-1 of
// the subjectPublicKey bits.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:], nil
}

// randomSerial is a positive 127-bit serial: at most 16 bytes when DER
// encoded, well under the 20-byte limit strict verifiers enforce.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// CertPEM returns the CA certificate, PEM encoded.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// Certificate returns the parsed CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Path returns the path of the CA certificate file (ca.pem).
func (ca *CA) Path() string { return filepath.Join(ca.dir, CertFile) }

// Pool returns a pool holding only the CA: what a client inside the agent's
// namespace needs to trust intercepted connections.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}
