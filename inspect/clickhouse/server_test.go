package clickhouse

import (
	"os"
	"sync"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/chtest"
)

// A real ClickHouse server (internal/chtest), started once for the
// package's tests.

const (
	chUser     = chtest.User
	chPassword = chtest.Password // the secret the agent must never see
)

type chServer struct {
	*chtest.Server
	dir  string
	port int
}

var (
	serverOnce sync.Once
	server     *chServer
	serverErr  error
)

// testServer returns the shared server, starting it on first use.
func testServer(t testing.TB) *chServer {
	t.Helper()
	serverOnce.Do(func() {
		var s *chtest.Server
		s, serverErr = chtest.Start()
		server = &chServer{Server: s}
		if s != nil {
			server.dir, server.port = s.Dir, s.Port
		}
	})
	if serverErr != nil {
		t.Fatalf("clickhouse test server: %v (install Debian's clickhouse-server package)", serverErr)
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
func (s *chServer) query(q string) (string, error) { return s.Query(q) }
