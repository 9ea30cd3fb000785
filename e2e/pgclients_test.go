package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/pgtest"
)

// pgClientsPolicy is the inspector tests' policy in Rego: server files
// and destructive verbs denied, the rest of endpoint db allowed.
const pgClientsPolicy = `package clawpatrol

allow contains "db" if input.endpoint == "db"

deny contains {"rule": "pg-server-files", "reason": "reaches the database server's filesystem"} if {
	some f in input.sql.functions
	startswith(f, "pg_read")
}

deny contains {"rule": "pg-server-files", "reason": "reaches the database server's filesystem"} if {
	some f in input.sql.functions
	startswith(f, "lo_")
}

deny contains {"rule": "pg-destructive", "reason": "destroys data"} if {
	some v in input.sql.verbs
	v in {"drop", "delete", "truncate"}
}
`

// TestPostgresDriversThroughRun: pgx and node-postgres inside clawpatrol,
// with a denied statement mid-pipeline and mid-transaction, keep their
// connection usable.
func TestPostgresDriversThroughRun(t *testing.T) {
	e, _ := postgresEnv(t, "", "")
	e.write("policy.rego", pgClientsPolicy)

	pgx := filepath.Join(root, "pgxclient")
	if out, err := exec.Command("go", "build", "-o", pgx, "./testdata/pgxclient").CombinedOutput(); err != nil {
		t.Fatalf("build pgxclient: %v\n%s", err, out)
	}
	node := nodePostgres(t, e)
	run := func(args ...string) result {
		cmd := e.command(append([]string{"run", "-c", e.cfg, "--audit", e.auditPath(), "--"}, args...)...)
		cmd.Env = append(cmd.Env, pgEnv, "PGHOST=db.test", "PGUSER="+pgtest.User,
			"PGDATABASE="+pgtest.Database, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=20")
		return e.exec(cmd)
	}

	r := run(pgx)
	// pgx prepares a whole batch first, so a denied statement fails the
	// batch as a server-side syntax error there would; what matters is that
	// the connection goes on.
	for _, want := range []string{" 42501 ", "insert: ok\n", "truncate: 42501\n", "kept: 0 ok\n", "after: 42 ok\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("pgx: want %q:\n%v", want, r)
		}
	}
	r = run("node", filepath.Join(node, "client.js"))
	for _, want := range []string{"read-file: 42501 ", "answer: 42\n", "lo_get: 42501\n", "param: 42\n", "truncate: 42501\n", "kept: 0\n", "queued: 1 42501 3\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("node-postgres: want %q:\n%v", want, r)
		}
	}
}

// nodePostgres installs `pg` from npm (once) in the Postgres inspector's
// testdata and copies it where the agent user can read it.
func nodePostgres(t *testing.T, e *env) string {
	t.Helper()
	src := filepath.Join("..", "inspect", "postgres", "testdata", "node")
	if _, err := os.Stat(filepath.Join(src, "node_modules", "pg")); err != nil {
		install := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		install.Dir = src
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", src, err, out)
		}
	}
	dst := filepath.Join(e.dir, "node")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(dst, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, agentUID, agentGID) })
	return dst
}
