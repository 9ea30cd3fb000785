package mysql

import (
	"crypto/x509"
	"os"
	"sync"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/mysqltest"
)

// A real MariaDB server (internal/mysqltest), started once for the
// package's tests.

const (
	dbUser     = mysqltest.User
	dbPassword = mysqltest.Password // the secret the agent must never see
	dbName     = mysqltest.Database
)

type dbServer struct {
	*mysqltest.Server
	dir  string
	port int
	ca   *x509.CertPool
}

var (
	serverOnce sync.Once
	server     *dbServer
	serverErr  error
)

// testServer returns the shared server, starting it on first use.
func testServer(t testing.TB) *dbServer {
	t.Helper()
	serverOnce.Do(func() {
		var s *mysqltest.Server
		s, serverErr = mysqltest.Start()
		server = &dbServer{Server: s}
		if s != nil {
			server.dir, server.port, server.ca = s.Dir, s.Port, s.CA
		}
	})
	if serverErr != nil {
		t.Fatalf("mariadb test server: %v (install Debian's mariadb-server and mariadb-client packages)", serverErr)
	}
	return server
}

func TestMain(m *testing.M) {
	code := m.Run()
	if server != nil && server.Server != nil && server.dir != "" {
		server.Stop()
	}
	os.Exit(code)
}

// query runs one query directly (not through clawpatrol).
func (s *dbServer) query(t testing.TB, sql string) string {
	t.Helper()
	out, err := s.Query(sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
