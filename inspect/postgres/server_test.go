package postgres

import (
	"crypto/x509"
	"os"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/inspecttest"
	"github.com/clawpatrol/clawpatrol/internal/pgtest"
)

// A real server (internal/pgtest), started once for the package's tests.

const (
	pgUser     = pgtest.User
	pgPassword = pgtest.Password // the secret the agent must never see
	pgDatabase = pgtest.Database
)

// pgServer is the shared server, with the short names the tests use.
type pgServer struct {
	*pgtest.Server
	dir  string
	port int
	ca   *x509.CertPool
}

var shared inspecttest.Shared[*pgtest.Server]

// testServer returns the shared server, starting it on first use.
func testServer(t testing.TB) *pgServer {
	t.Helper()
	s := shared.Get(t, pgtest.Start, "install Debian's postgresql package")
	return &pgServer{s, s.Dir, s.Port, s.CA}
}

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop()
	os.Exit(code)
}

// query runs one query directly (not through clawpatrol).
func (s *pgServer) query(t testing.TB, sql string) string {
	t.Helper()
	out, err := s.Query(sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func freePort() (int, error) { return pgtest.FreePort() }
