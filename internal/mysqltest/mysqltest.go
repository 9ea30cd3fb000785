// Package mysqltest starts a real MariaDB server (Debian's mariadb-server
// package) for tests: mariadb-install-db in a temp dir, a random port, TLS
// on, a user with a password. As root the server runs as the mysql user (or
// nobody). It serves the MySQL inspector's tests and the end-to-end tests.
package mysqltest

import (
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clawpatrol/clawpatrol/internal/inspecttest"
)

// The server's login and database.
const (
	User     = "app"
	Password = "real-Secret-4b3a2c" // the secret the agent must never see
	Database = "app"
)

// Server is a running test server.
type Server struct {
	Dir  string
	Port int
	CA   *x509.CertPool // verifies the server's certificate (name "localhost")
	cred *syscall.Credential
	cmd  *exec.Cmd
}

// Start starts a server in a new temp dir.
func Start() (*Server, error) {
	s := &Server{}
	return s, s.start()
}

func (s *Server) start() error {
	if _, err := exec.LookPath("mariadb-install-db"); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "clawpatrol-mariadb-")
	if err != nil {
		return err
	}
	s.Dir = dir
	if s.cred, err = inspecttest.ServerUser("mysql", "nobody"); err != nil {
		return err
	}
	if s.CA, err = inspecttest.WriteCert(dir); err != nil {
		return err
	}
	if err := inspecttest.Own(dir, s.cred); err != nil {
		return err
	}
	data := filepath.Join(dir, "data")
	if out, err := s.command("mariadb-install-db", "--no-defaults", "--datadir="+data, "--auth-root-authentication-method=normal",
		"--skip-test-db").CombinedOutput(); err != nil {
		return fmt.Errorf("mariadb-install-db: %v\n%s", err, out)
	}
	if s.Port, err = inspecttest.FreePort(); err != nil {
		return err
	}
	s.cmd = s.command("/usr/sbin/mariadbd", "--no-defaults", "--datadir="+data, "--port="+strconv.Itoa(s.Port),
		"--bind-address=127.0.0.1", "--socket="+s.socket(), "--pid-file="+filepath.Join(dir, "pid"),
		"--log-error="+filepath.Join(dir, "err.log"), "--innodb-buffer-pool-size=16M", "--skip-log-bin",
		"--ssl-cert="+filepath.Join(dir, "server.crt"), "--ssl-key="+filepath.Join(dir, "server.key"),
		"--secure-file-priv="+dir, "--local-infile=1", "--max-allowed-packet=64M")
	if err := s.cmd.Start(); err != nil {
		return err
	}
	go s.cmd.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := s.rootSQL("SELECT 1"); err == nil {
			break
		} else if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "err.log"))
			return fmt.Errorf("mariadbd did not start: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s.rootSQL(fmt.Sprintf(`
DELETE FROM mysql.global_priv WHERE User = '';
CREATE USER '%[1]s'@'%%' IDENTIFIED BY '%[2]s';
CREATE USER '%[1]s'@'localhost' IDENTIFIED BY '%[2]s';
GRANT ALL ON *.* TO '%[1]s'@'%%';
GRANT ALL ON *.* TO '%[1]s'@'localhost';
FLUSH PRIVILEGES;
CREATE DATABASE %[3]s;
CREATE DATABASE other;
CREATE TABLE %[3]s.t (id int PRIMARY KEY, name varchar(20));
INSERT INTO %[3]s.t VALUES (1, 'one'), (2, 'two');
CREATE TABLE %[3]s.log (id int AUTO_INCREMENT PRIMARY KEY, what varchar(200));
CREATE TABLE other.o (x int);
`, User, Password, Database))
}

func (s *Server) socket() string { return filepath.Join(s.Dir, "my.sock") }

// Stop stops the server and removes its files.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		for range 100 {
			if _, err := os.Stat(filepath.Join(s.Dir, "pid")); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		s.cmd.Process.Kill()
	}
	os.RemoveAll(s.Dir)
}

// command runs a server program, as the mysql user when the test runs as root.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Dir = s.Dir
	c.Env = append(os.Environ(), "HOME="+s.Dir)
	if s.cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return c
}

// rootSQL runs SQL as root over the server's socket.
func (s *Server) rootSQL(sql string) error {
	c := exec.Command("mariadb", "--no-defaults", "--socket="+s.socket(), "-uroot", "--batch")
	c.Stdin = strings.NewReader(sql)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("mariadb: %v\n%s", err, out)
	}
	return nil
}

// Query runs one query directly (not through clawpatrol) as root and
// returns its tab-separated output without headers.
func (s *Server) Query(sql string) (string, error) {
	out, err := exec.Command("mariadb", "--no-defaults", "--socket="+s.socket(), "-uroot", "--batch", "--skip-column-names", Database,
		"-e", sql).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("direct query %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}
