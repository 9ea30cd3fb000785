// Package pgtest starts a real PostgreSQL server (Debian's postgresql
// package) for tests: initdb in a temp dir, scram-sha-256 logins, TLS on, a
// random port. initdb refuses to run as root, so as root the server runs as
// nobody. It is test support shared by the Postgres inspector's tests and
// the end-to-end tests.
package pgtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The server's programs, login and database.
const (
	Bin      = "/usr/lib/postgresql/15/bin"
	User     = "app"
	Password = "real-Secret-9f8e7d" // the secret the agent must never see
	Database = "app"
)

// Server is a running test server.
type Server struct {
	Dir  string
	Port int
	CA   *x509.CertPool // verifies the server's certificate (name "localhost")
	cred *syscall.Credential
}

// Start starts a server in a new temp dir.
func Start() (*Server, error) {
	s := &Server{}
	return s, s.start()
}

func (s *Server) start() error {
	if _, err := os.Stat(filepath.Join(Bin, "initdb")); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "clawpatrol-pg-")
	if err != nil {
		return err
	}
	s.Dir = dir
	if os.Getuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	data := filepath.Join(dir, "data")
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(Password+"\n"), 0o600); err != nil {
		return err
	}
	if err := s.writeCerts(); err != nil {
		return err
	}
	if err := s.own(dir); err != nil {
		return err
	}
	if out, err := s.command("initdb", "-D", data, "-U", User, "--pwfile="+pw, "-A", "scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	hba := "local all all trust\n" +
		"host all md5user 127.0.0.1/32 md5\n" +
		"host all pwuser 127.0.0.1/32 password\n" +
		"host all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return err
	}
	conf := fmt.Sprintf("ssl = on\nssl_cert_file = '%s/server.crt'\nssl_key_file = '%s/server.key'\nfsync = off\nmax_connections = 60\n", dir, dir)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	f.WriteString(conf)
	f.Close()
	if err := s.own(dir); err != nil {
		return err
	}
	s.Port, err = FreePort()
	if err != nil {
		return err
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", s.Port, dir)
	if out, err := s.command("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "-o", opts, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	if err := s.PsqlLocal("postgres", "CREATE DATABASE "+Database); err != nil {
		return err
	}
	return s.PsqlLocal(Database, `
CREATE TABLE t (id int PRIMARY KEY, name text);
INSERT INTO t VALUES (1, 'one'), (2, 'two');
CREATE TABLE log (id serial, what text);
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5-Secret-1' SUPERUSER;
SET password_encryption = 'scram-sha-256';
CREATE ROLE pwuser LOGIN PASSWORD 'pw-Secret-2' SUPERUSER;
`)
}

// Stop stops the server and removes its files.
func (s *Server) Stop() {
	s.command("pg_ctl", "-D", filepath.Join(s.Dir, "data"), "-m", "immediate", "-w", "stop").Run()
	os.RemoveAll(s.Dir)
}

// command runs a server program, as nobody when the test runs as root.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(Bin, name), args...)
	c.Dir = s.Dir
	c.Env = append(os.Environ(), "LC_ALL=C", "HOME="+s.Dir)
	if s.cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return c
}

// PsqlLocal runs SQL as the superuser over the server's Unix socket.
func (s *Server) PsqlLocal(db, sql string) error {
	c := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.Dir, "-p", strconv.Itoa(s.Port), "-U", User, "-d", db)
	c.Stdin = strings.NewReader(sql)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("psql: %v\n%s", err, out)
	}
	return nil
}

// Query runs one query directly (not through clawpatrol) and returns its
// unaligned output.
func (s *Server) Query(sql string) (string, error) {
	out, err := exec.Command("psql", "-X", "-A", "-t", "-h", s.Dir, "-p", strconv.Itoa(s.Port), "-U", User, "-d", Database, "-c", sql).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("direct psql %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func (s *Server) own(dir string) error {
	os.Chmod(dir, 0o755)
	if s.cred == nil {
		return nil
	}
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(s.cred.Uid), int(s.cred.Gid))
	})
}

// writeCerts makes a CA and a server certificate for localhost/127.0.0.1.
func (s *Server) writeCerts() error {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clawpatrol test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	s.CA = x509.NewCertPool()
	s.CA.AddCert(ca)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	var crt, k bytes.Buffer
	pem.Encode(&crt, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&k, &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(filepath.Join(s.Dir, "server.crt"), crt.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, "server.key"), k.Bytes(), 0o600)
}

// FreePort returns a TCP port free on 127.0.0.1 right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
