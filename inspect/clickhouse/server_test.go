package clickhouse

import (
	"os"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/chtest"
	"github.com/clawpatrol/clawpatrol/internal/inspecttest"
)

// A real server (internal/chtest), started once for the package's tests.

const (
	chUser     = chtest.User
	chPassword = chtest.Password // the secret the agent must never see
)

// chServer is the shared server, with the short names the tests use.
type chServer struct {
	*chtest.Server
	dir  string
	port int
}

var shared inspecttest.Shared[*chtest.Server]

// testServer returns the shared server, starting it on first use.
func testServer(t testing.TB) *chServer {
	t.Helper()
	s := shared.Get(t, chtest.Start, "install Debian's clickhouse-server package")
	return &chServer{s, s.Dir, s.Port}
}

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop()
	os.Exit(code)
}

// query runs one query directly (not through clawpatrol).
func (s *chServer) query(q string) (string, error) { return s.Query(q) }
