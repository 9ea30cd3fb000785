package postgres

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// clientEnv points libpq and node-postgres at the proxy with the placeholder.
func clientEnv(p *proxy) []string {
	return append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(p.port), "PGUSER="+pgUser,
		"PGPASSWORD="+placeholder, "PGDATABASE="+pgDatabase, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=20")
}

func TestPsycopg2(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))
	// Debian's python3-psycopg2 is for Debian's python3, whatever else is on PATH.
	c := exec.Command("/usr/bin/python3", "testdata/psycopg2_client.py")
	c.Env = clientEnv(p)
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	contains(t, string(out),
		"read-file: 42501 ERROR:  clawpatrol: pg_read_file reaches the database server's filesystem (rule pg-server-files)\n",
		"answer: 42\n", "delete: 42501\n", "kept: 0\n", "lobject: None ERROR:  clawpatrol: fast-path function calls name a function by number only and are not allowed (rule function-call)\n", "after: 7\n")
}

func TestNodePostgres(t *testing.T) {
	srv := testServer(t)
	dir := filepath.Join("testdata", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pg")); err != nil {
		install := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		install.Dir = dir
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	p := startProxy(t, srv, proxyOptions(srv))
	c := exec.Command("node", "client.js")
	c.Dir = dir
	c.Env = clientEnv(p)
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	contains(t, string(out),
		"read-file: 42501 clawpatrol: pg_read_file reaches the database server's filesystem (rule pg-server-files)\n",
		"answer: 42\n", "lo_get: 42501\n", "param: 42\n", "truncate: 42501\n", "kept: 0\n", "queued: 1 42501 3\n")
}
