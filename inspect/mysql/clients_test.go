package mysql

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// cli runs the mariadb command-line client against the proxy with the
// placeholder password, statements on stdin, and returns its output.
func cli(t *testing.T, p *proxy, sql string, args ...string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(p.addr)
	base := []string{"--no-defaults", "-h", host, "-P", port, "-u", "agent", "-p" + placeholder, "--batch", "--skip-ssl"}
	c := exec.Command("mariadb", append(base, args...)...)
	c.Stdin = strings.NewReader(sql)
	out, err := c.CombinedOutput()
	return string(out), err
}

func TestCLI(t *testing.T) {
	p := startProxy(t, nil, Options{Login: offload()})

	t.Run("reads succeed", func(t *testing.T) {
		out, err := cli(t, p, "SELECT name FROM t ORDER BY id;", dbName)
		if err != nil || !strings.Contains(out, "one\ntwo") {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	t.Run("a denied statement gets 1142 and the next one runs", func(t *testing.T) {
		out, err := cli(t, p, "DELETE FROM t;\nSELECT count(*) AS n FROM t;", "--force", dbName)
		if !strings.Contains(out, "ERROR 1142 (42000)") || !strings.Contains(out, "(rule policy.default)") {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "n\n2") {
			t.Errorf("the statement after the denied one did not run:\n%s", out)
		}
		if got := testServer(t).query(t, "SELECT count(*) FROM t"); got != "2" {
			t.Errorf("rows after the denied DELETE: %s", got)
		}
	})
	t.Run("load_file is denied", func(t *testing.T) {
		out, err := cli(t, p, "SELECT load_file('/etc/passwd');", dbName)
		if err == nil || !strings.Contains(out, "ERROR 1142") || !strings.Contains(out, "server-files") {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	t.Run("LOAD DATA LOCAL INFILE is refused", func(t *testing.T) {
		out, err := cli(t, p, "LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE log (what);", "--local-infile=1", dbName)
		if err == nil || !strings.Contains(out, "ERROR 1142") || !strings.Contains(out, "local-file") {
			t.Fatalf("%v\n%s", err, out)
		}
		if got := testServer(t).query(t, "SELECT count(*) FROM log"); got != "0" {
			t.Errorf("rows loaded: %s", got)
		}
	})
	t.Run("use is an action and sets the database", func(t *testing.T) {
		out, err := cli(t, p, "use other\nSELECT count(*) AS n FROM o;\n")
		if err != nil || !strings.Contains(out, "n\n0") {
			t.Fatalf("%v\n%s", err, out)
		}
		f, ok := last(p.gate, "SELECT count(*) AS n FROM o")
		if !ok || f.A.SQL.Database != "other" || f.A.SQL.User != dbUser {
			t.Errorf("database %q user %q", f.A.SQL.Database, f.A.SQL.User)
		}
		if _, ok := last(p.gate, "USE `other`"); !ok {
			t.Errorf("no USE action: %+v", p.gate.Finished())
		}
	})
	t.Run("a wrong password is refused", func(t *testing.T) {
		host, port, _ := net.SplitHostPort(p.addr)
		out, err := exec.Command("mariadb", "--no-defaults", "-h", host, "-P", port, "-u", "agent", "-pwrong", "--skip-ssl", "-e", "SELECT 1").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "ERROR 1045") {
			t.Fatalf("%v\n%s", err, out)
		}
	})
}

// open returns a database handle through the proxy with one connection,
// so every statement of a test uses the same session.
func open(t *testing.T, p *proxy, user, password string, params string) *sql.DB {
	t.Helper()
	dsn := user + ":" + password + "@tcp(" + p.addr + ")/" + dbName + "?" + params
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func mysqlError(err error) *mysql.MySQLError {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me
	}
	return nil
}

func TestGoDriver(t *testing.T) {
	p := startProxy(t, nil, Options{Login: offload()})
	db := open(t, p, "agent", placeholder, "multiStatements=true")
	ctx := context.Background()

	var name string
	if err := db.QueryRowContext(ctx, "SELECT name FROM t WHERE id = 1").Scan(&name); err != nil || name != "one" {
		t.Fatalf("read: %v %q", err, name)
	}
	_, err := db.ExecContext(ctx, "UPDATE t SET name = 'x'")
	if me := mysqlError(err); me == nil || me.Number != 1142 || string(me.SQLState[:]) != "42000" ||
		!strings.Contains(me.Message, "(rule policy.default)") {
		t.Fatalf("denied update: %v", err)
	}
	// The session is still usable.
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("read after deny: %v %d", err, n)
	}
	// Prepared statements: decided at prepare, executed as often as wanted.
	stmt, err := db.PrepareContext(ctx, "SELECT name FROM t WHERE id = ?")
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int]string{1: "one", 2: "two"} {
		if err := stmt.QueryRowContext(ctx, id).Scan(&name); err != nil || name != want {
			t.Errorf("execute %d: %v %q", id, err, name)
		}
	}
	stmt.Close()
	if _, err := db.PrepareContext(ctx, "DELETE FROM t WHERE id = ?"); mysqlError(err) == nil || mysqlError(err).Number != 1142 {
		t.Fatalf("denied prepare: %v", err)
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM t WHERE id > ?", 0).Scan(&n); err != nil || n != 2 {
		t.Fatalf("prepared read after a denied prepare: %v %d", err, n)
	}
	// A multi-statement query is denied whole when one statement is.
	if _, err := db.ExecContext(ctx, "SELECT 1; DROP TABLE t"); mysqlError(err) == nil || mysqlError(err).Number != 1142 {
		t.Fatalf("multi-statement: %v", err)
	}
	rows, err := db.QueryContext(ctx, "SELECT 1; SELECT name FROM t ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		for rows.Next() {
			var v string
			rows.Scan(&v)
			got = append(got, v)
		}
		if !rows.NextResultSet() {
			break
		}
	}
	rows.Close()
	if !slices.Equal(got, []string{"1", "one", "two"}) {
		t.Errorf("multi-statement results %q", got)
	}
	// USE in a query changes the database the facts name.
	if _, err := db.ExecContext(ctx, "USE other"); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM o").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if f, ok := last(p.gate, "SELECT count(*) FROM o"); !ok || f.A.SQL.Database != "other" {
		t.Errorf("database after USE: %+v", f.A.SQL)
	}
	if f, ok := last(p.gate, "SELECT name FROM t WHERE id = 1"); !ok || f.A.SQL.Database != dbName || f.A.Endpoint != "db" ||
		f.A.Destination.Host != "db.internal.example.com" || f.O.BytesDown == 0 {
		t.Errorf("first read: %+v %+v", f.A, f.O)
	}
}

func TestGoDriverLocalInfile(t *testing.T) {
	// Even with a policy that allows it, the server never gets to read the
	// agent's file: clawpatrol never says the client would send one.
	gate := allowAll()
	p := startProxy(t, gate, Options{Login: offload()})
	file := filepath.Join(t.TempDir(), "rows.txt")
	os.WriteFile(file, []byte("secret-row\n"), 0o644)
	mysql.RegisterLocalFile(file)
	db := open(t, p, "agent", placeholder, "allowAllFiles=true")
	_, err := db.Exec("LOAD DATA LOCAL INFILE '" + file + "' INTO TABLE log (what)")
	if err == nil {
		t.Fatal("LOAD DATA LOCAL INFILE succeeded")
	}
	t.Logf("LOAD DATA LOCAL INFILE: %v", err)
	if got := testServer(t).query(t, "SELECT count(*) FROM log"); got != "0" {
		t.Errorf("rows loaded: %s", got)
	}
	if err := db.Ping(); err != nil {
		t.Errorf("session after the refusal: %v", err)
	}
}

func TestPassThroughLogin(t *testing.T) {
	p := startProxy(t, nil, Options{})
	db := open(t, p, dbUser, dbPassword, "")
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("%v %d", err, n)
	}
	bad := open(t, p, dbUser, "wrong", "")
	if err := bad.Ping(); mysqlError(err) == nil || mysqlError(err).Number != 1045 {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestUpstreamTLS(t *testing.T) {
	srv := testServer(t)
	for _, mode := range []string{"require", "verify-full"} {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, nil, Options{Login: offload(), UpstreamTLS: mode, UpstreamRoots: srv.ca, ServerName: "localhost"})
			db := open(t, p, "agent", placeholder, "")
			var cipher string
			if err := db.QueryRow("SELECT variable_value FROM information_schema.session_status WHERE variable_name = 'Ssl_cipher'").Scan(&cipher); err != nil || cipher == "" {
				t.Fatalf("cipher %q: %v", cipher, err)
			}
		})
	}
	t.Run("verify-full refuses a wrong name", func(t *testing.T) {
		p := startProxy(t, nil, Options{Login: offload(), UpstreamTLS: "verify-full", UpstreamRoots: srv.ca, ServerName: "db.example.com"})
		db := open(t, p, "agent", placeholder, "timeout=5s")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := db.PingContext(ctx)
		if me := mysqlError(err); me == nil || !strings.Contains(me.Message, "certificate") {
			t.Fatalf("ping: %v", err)
		}
	})
}

func TestAgentTLS(t *testing.T) {
	srv := testServer(t)
	cert, err := tls.LoadX509KeyPair(filepath.Join(srv.dir, "server.crt"), filepath.Join(srv.dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, nil, Options{Login: offload(), AgentTLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	mysql.RegisterTLSConfig("clawpatrol-test", &tls.Config{RootCAs: srv.ca, ServerName: "localhost"})
	db := open(t, p, "agent", placeholder, "tls=clawpatrol-test")
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("%v %d", err, n)
	}
	if f, ok := last(p.gate, "SELECT count(*) FROM t"); !ok || !f.A.Destination.TLS {
		t.Errorf("destination %+v", f.A.Destination)
	}
}
