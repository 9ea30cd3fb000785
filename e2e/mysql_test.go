package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawpatrol/clawpatrol/internal/mysqltest"
)

// TestMySQLThroughRun: the mariadb client inside clawpatrol, holding only
// the placeholder, reads from a real MariaDB; a denied statement fails with
// 1142 and the session goes on; LOAD DATA LOCAL INFILE is refused.
func TestMySQLThroughRun(t *testing.T) {
	srv, err := mysqltest.Start()
	if err != nil {
		t.Fatalf("mariadb test server: %v", err)
	}
	defer srv.Stop()
	e := newEnv(t)
	e.config(fmt.Sprintf(`
endpoints:
  db:
    hosts: [mysql.test]
    protocol: mysql
    upstream: 127.0.0.1:%d
    upstream_tls: require
    credential: my
credentials:
  my:
    from: {env: MY_REAL_PASSWORD}
    username: %s
    placeholder: {env: MYSQL_PWD}
policy:
  paths: [policy.rego]
`, srv.Port, mysqltest.User))
	e.write("policy.rego", `package clawpatrol

allow contains "reads" if {
	input.endpoint == "db"
	every v in input.sql.verbs { v in {"select", "show", "set", "use"} }
}
`)
	e.write("rows.csv", "9,nine\n")
	cmd := e.command("run", "-c", e.cfg, "--audit", e.auditPath(), "--", "sh", "-c",
		`printf '%s\n' "SELECT name FROM t ORDER BY id;" "DELETE FROM t;" "SELECT count(*) FROM t;" "LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE t FIELDS TERMINATED BY ',';" "SELECT count(*) FROM t;" |
		mariadb --no-defaults -h mysql.test -u app --skip-ssl --local-infile=1 --batch --skip-column-names --force app 2>&1`)
	cmd.Env = append(cmd.Env, "MY_REAL_PASSWORD="+mysqltest.Password)
	r := e.exec(cmd)
	for _, want := range []string{"one\ntwo\n", "ERROR 1142 (42000) at line 2", "ERROR 1142 (42000) at line 4", "(rule policy.default)\n2\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q in the client's output:\n%v", want, r)
		}
	}
	if got, err := srv.Query("SELECT count(*) FROM t"); err != nil || got != "2" {
		t.Fatalf("table t after the denied DELETE and LOAD DATA: %q %v", got, err)
	}
	// go-sql-driver/mysql: prepared statements, a denied prepare, and the
	// same connection after it.
	client := filepath.Join(root, "mysqlclient")
	if out, err := exec.Command("go", "build", "-o", client, "./testdata/mysqlclient").CombinedOutput(); err != nil {
		t.Fatalf("build mysqlclient: %v\n%s", err, out)
	}
	gocmd := e.command("run", "-c", e.cfg, "--audit", e.auditPath(), "--", client)
	gocmd.Env = append(gocmd.Env, "MY_REAL_PASSWORD="+mysqltest.Password, "MYSQL_HOST=mysql.test")
	if r := e.exec(gocmd); r.stdout != "prepared: two ok\ndenied prepare: 1142\nafter: 2 ok\n" {
		t.Fatalf("go-sql-driver/mysql through clawpatrol:\n%v", r)
	}
	audit, _ := os.ReadFile(e.auditPath())
	if strings.Contains(string(audit), mysqltest.Password) || strings.Contains(r.stdout, mysqltest.Password) {
		t.Fatal("the real password leaked")
	}
}
