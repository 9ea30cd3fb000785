package e2e

import (
	"fmt"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/pgtest"
)

// postgresEnv starts a real PostgreSQL and an env whose config maps db.test
// to it with login offload: the agent holds the placeholder in PGPASSWORD,
// the real password is read from PG_REAL_PASSWORD (run with pgEnv). dbExtra
// adds keys to the db endpoint, endpoints adds endpoints (YAML lines); the
// policy is policy.rego, written by the test.
func postgresEnv(t testing.TB, dbExtra, endpoints string) (*env, *pgtest.Server) {
	t.Helper()
	srv, err := pgtest.Start()
	if err != nil {
		t.Fatalf("postgres test server: %v", err)
	}
	t.Cleanup(srv.Stop)
	e := newEnv(t)
	e.config(fmt.Sprintf(`
endpoints:
  db: {hosts: [db.test], protocol: postgres, upstream: "127.0.0.1:%d", credential: pg%s}
%s
credentials:
  pg: {from: {env: PG_REAL_PASSWORD}, username: %s, placeholder: {env: PGPASSWORD}}
policy:
  paths: [policy.rego]
`, srv.Port, dbExtra, endpoints, pgtest.User))
	return e, srv
}

// pgEnv is what `clawpatrol run` needs in its environment for postgresEnv.
var pgEnv = "PG_REAL_PASSWORD=" + pgtest.Password
