package postgres

import (
	"crypto/x509"
	"os"
	"sync"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/pgtest"
)

// A real PostgreSQL server (internal/pgtest), started once for the
// package's tests.

const (
	pgUser     = pgtest.User
	pgPassword = pgtest.Password // the secret the agent must never see
	pgDatabase = pgtest.Database
)

type pgServer struct {
	*pgtest.Server
	dir  string
	port int
	ca   *x509.CertPool
}

var (
	serverOnce sync.Once
	server     *pgServer
	serverErr  error
)

// testServer returns the shared server, starting it on first use.
func testServer(t testing.TB) *pgServer {
	t.Helper()
	serverOnce.Do(func() {
		var s *pgtest.Server
		s, serverErr = pgtest.Start()
		server = &pgServer{Server: s}
		if s != nil {
			server.dir, server.port, server.ca = s.Dir, s.Port, s.CA
		}
	})
	if serverErr != nil {
		t.Fatalf("postgres test server: %v (install Debian's postgresql package)", serverErr)
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
func (s *pgServer) query(t testing.TB, sql string) string {
	t.Helper()
	out, err := s.Query(sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func freePort() (int, error) { return pgtest.FreePort() }
