package mysql

import (
	"crypto/x509"
	"os"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/inspecttest"
	"github.com/clawpatrol/clawpatrol/internal/mysqltest"
)

// A real server (internal/mysqltest), started once for the package's tests.

const (
	dbUser     = mysqltest.User
	dbPassword = mysqltest.Password // the secret the agent must never see
	dbName     = mysqltest.Database
)

// dbServer is the shared server, with the short names the tests use.
type dbServer struct {
	*mysqltest.Server
	dir  string
	port int
	ca   *x509.CertPool
}

var shared inspecttest.Shared[*mysqltest.Server]

// testServer returns the shared server, starting it on first use.
func testServer(t testing.TB) *dbServer {
	t.Helper()
	s := shared.Get(t, mysqltest.Start, "install Debian's mariadb-server and mariadb-client packages")
	return &dbServer{s, s.Dir, s.Port, s.CA}
}

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop()
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
