package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/pgtest"
)

// TestPostgresThroughRun: psql inside clawpatrol, holding only the
// placeholder, reads rows from a real PostgreSQL server; a statement the
// policy denies fails with 42501 and the session goes on.
func TestPostgresThroughRun(t *testing.T) {
	e, srv := postgresEnv(t, ", upstream_tls: require",
		fmt.Sprintf(`  down: {hosts: [down.test], protocol: postgres, upstream: "127.0.0.1:%d", credential: pg}`, closedPort(t)))
	e.write("policy.rego", `package clawpatrol

allow contains "reads" if {
	input.endpoint in {"db", "down"}
	every v in input.sql.verbs { v in {"select", "begin", "commit", "rollback"} }
}

deny contains {"rule": "no-file-reads", "reason": "pg_read_file reaches the server's filesystem"} if {
	"pg_read_file" in input.sql.functions
}
`)
	// psycopg2 (Debian's): a denied statement inside a transaction fails
	// with 42501; after a rollback the same connection goes on.
	e.write("client.py", `import psycopg2
c = psycopg2.connect(host="db.test", user="app", dbname="app", connect_timeout=20)
cur = c.cursor()
cur.execute("SELECT count(*) FROM t")
print("count", cur.fetchone()[0])
try:
    cur.execute("SELECT pg_read_file('/etc/passwd')")
    print("not denied")
except psycopg2.Error as err:
    print("denied", err.pgcode)
    c.rollback()
cur.execute("SELECT name FROM t WHERE id = 2")
print("after", cur.fetchone()[0])
`)
	py := e.command("run", "-c", e.cfg, "--audit", e.auditPath(), "--", "python3", "client.py")
	py.Env = append(py.Env, pgEnv)
	if r := e.exec(py); r.stdout != "count 2\ndenied 42501\nafter two\n" {
		t.Fatalf("psycopg2 through clawpatrol:\n%v", r)
	}

	cmd := e.command("run", "-c", e.cfg, "--audit", e.auditPath(), "--", "sh", "-c",
		`env | grep -c real-Secret; psql -X -A -t -h db.test -U app -d app -c "SELECT name FROM t ORDER BY id" -c "SELECT pg_read_file('/etc/passwd')" -c "SELECT 1; DROP TABLE t" -c "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d" -c "COPY t TO PROGRAM 'id'" -c "SELECT count(*) FROM t" 2>&1; `+
			`psql -X -h down.test -U app -d app -c "SELECT 1" 2>&1; echo "down=$?"`)
	cmd.Env = append(cmd.Env, pgEnv)
	r := e.exec(cmd)
	out := r.stdout
	if strings.Count(out, "(rule policy.default)") != 3 {
		t.Errorf("want the multi-statement, the DML in a CTE and COPY ... PROGRAM denied:\n%v", r)
	}
	for _, want := range []string{"0\n", "one\ntwo\n", "(rule no-file-reads)", "(rule policy.default)", "\n2\n", "down=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in psql's output:\n%v", want, r)
		}
	}
	if got, err := srv.Query("SELECT count(*) FROM t"); err != nil || got != "2" {
		t.Fatalf("table t after the denied DROP: %q %v", got, err)
	}
	audit, _ := os.ReadFile(e.auditPath())
	if strings.Contains(string(audit), pgtest.Password) {
		t.Fatal("the real password is in the audit log")
	}
	var sawDenied bool
	for _, a := range e.actions() {
		d := a["decision"].(map[string]any)
		if a["protocol"] == "sql" && d["rule"] == "no-file-reads" && strings.Contains(a["summary"].(string), "select") {
			sawDenied = true
		}
	}
	if !sawDenied {
		t.Fatalf("want the denied statement in the audit log: %v", e.actions())
	}
}

// closedPort returns a local port nothing listens on.
func closedPort(t *testing.T) int {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
