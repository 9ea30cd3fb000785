package postgres

import (
	"bytes"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestPsqlSelect(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))
	out, err := p.psql(t, "", "-c", "SELECT id, name FROM t ORDER BY id")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if strings.TrimSpace(out) != "1|one\n2|two" {
		t.Errorf("rows = %q", out)
	}
	got := p.gate.statements("allow")
	if len(got) != 1 || got[0] != "SELECT id, name FROM t ORDER BY id" {
		t.Errorf("allowed statements = %q", got)
	}
	a := p.gate.finished[0].a
	if a.Protocol != "sql" || a.Endpoint != "prod-db" || a.Credential != "prod-db" || a.SQL.Dialect != "postgres" ||
		a.SQL.Database != pgDatabase || a.SQL.User != pgUser || a.Destination.Host != "db.internal.test" {
		t.Errorf("action = %+v, sql %+v", a, a.SQL)
	}
}

func TestPsqlDenied(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))

	t.Run("pg_read_file, then the session goes on", func(t *testing.T) {
		out, err := p.psql(t, "SELECT pg_read_file('/etc/passwd');\nSELECT 40 + 2;\n")
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		contains(t, out, "ERROR:  42501: clawpatrol: pg_read_file reaches the database server's filesystem (rule pg-server-files)", "\n42\n")
		if strings.Contains(out, "root:") {
			t.Errorf("the file was read:\n%s", out)
		}
	})
	t.Run("a multi-statement query is denied as a whole", func(t *testing.T) {
		out, _ := p.psql(t, "", "-c", "SELECT 1; DROP TABLE t")
		contains(t, out, "42501", "rule pg-destructive")
		if got := srv.query(t, "SELECT count(*) FROM t"); got != "2" {
			t.Errorf("t has %s rows", got)
		}
	})
	t.Run("DML hidden in a CTE", func(t *testing.T) {
		out, _ := p.psql(t, "", "-c", "WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone")
		contains(t, out, "42501", "DELETE destroys data")
		if got := srv.query(t, "SELECT count(*) FROM t"); got != "2" {
			t.Errorf("t has %s rows", got)
		}
	})
	t.Run("COPY TO PROGRAM", func(t *testing.T) {
		out, _ := p.psql(t, "", "-c", "COPY t TO PROGRAM 'touch /tmp/clawpatrol-pwned'")
		contains(t, out, "42501", "rule pg-copy-program")
	})
	t.Run("a denial inside a transaction aborts it, as a server's error does", func(t *testing.T) {
		out, err := p.psql(t, "BEGIN;\nINSERT INTO log (what) VALUES ('in tx');\nSELECT lo_get(1);\nSELECT 1;\nROLLBACK;\nSELECT count(*) FROM log WHERE what = 'in tx';\n")
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		contains(t, out, "rule pg-server-files", "25P02", "\n0\n")
	})
	denied := p.gate.statements("deny")
	for _, want := range []string{"SELECT pg_read_file('/etc/passwd');", "SELECT 1; DROP TABLE t", "COPY t TO PROGRAM 'touch /tmp/clawpatrol-pwned'"} {
		found := false
		for _, d := range denied {
			found = found || d == want
		}
		if !found {
			t.Errorf("no denied action for %q in %q", want, denied)
		}
	}
}

func TestPsqlCopy(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))
	out, err := p.psql(t, "CREATE TABLE copied (a int, b text);\n\\copy copied FROM STDIN\n1\tx\n2\ty\n\\.\n\\copy copied TO STDOUT\nSELECT count(*) FROM copied;\n")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	contains(t, out, "1\tx\n2\ty\n", "\n2\n")
}

func TestPsqlLogin(t *testing.T) {
	srv := testServer(t)
	t.Run("wrong placeholder", func(t *testing.T) {
		p := startProxy(t, srv, proxyOptions(srv))
		c := exec.Command("psql", "-X", "-c", "SELECT 1", p.dsn())
		c.Env = append(os.Environ(), "PGPASSWORD=not-the-placeholder")
		out, err := c.CombinedOutput()
		if err == nil {
			t.Fatalf("psql logged in:\n%s", out)
		}
		contains(t, string(out), `password authentication failed for user "app"`)
	})
	t.Run("the real password does not work either", func(t *testing.T) {
		p := startProxy(t, srv, proxyOptions(srv))
		c := exec.Command("psql", "-X", "-c", "SELECT 1", p.dsn())
		c.Env = append(os.Environ(), "PGPASSWORD="+pgPassword)
		if out, err := c.CombinedOutput(); err == nil {
			t.Fatalf("psql logged in:\n%s", out)
		}
	})
	modes := map[string]Options{
		"cleartext to the agent": {Login: &Login{Username: pgUser, Password: pgPassword, Placeholder: placeholder, Method: "password"}, UpstreamTLS: "require"},
		"no TLS upstream":        {Login: &Login{Username: pgUser, Password: pgPassword, Placeholder: placeholder}, UpstreamTLS: "disable"},
		"prefer":                 {Login: &Login{Username: pgUser, Password: pgPassword, Placeholder: placeholder}},
		"verify-full":            {Login: &Login{Username: pgUser, Password: pgPassword, Placeholder: placeholder}, UpstreamTLS: "verify-full", UpstreamRoots: srv.ca, ServerName: "localhost"},
		"md5 upstream":           {Login: &Login{Username: "md5user", Password: "md5-Secret-1", Placeholder: placeholder}, UpstreamTLS: "require"},
		"cleartext upstream":     {Login: &Login{Username: "pwuser", Password: "pw-Secret-2", Placeholder: placeholder}, UpstreamTLS: "require"},
	}
	for name, opts := range modes {
		t.Run(name, func(t *testing.T) {
			p := startProxy(t, srv, opts)
			out, err := p.psql(t, "", "-c", "SELECT current_user || ' ' || coalesce((SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()), '?')")
			if err != nil {
				t.Fatalf("psql: %v\n%s", err, out)
			}
			wantTLS := opts.UpstreamTLS != "disable"
			if want := opts.Login.Username + " " + strconv.FormatBool(wantTLS); strings.TrimSpace(out) != want {
				t.Errorf("got %q, want %q", out, want)
			}
			p.mu.Lock()
			leaked := bytes.Contains(p.seen.Bytes(), []byte(opts.Login.Password))
			p.mu.Unlock()
			if leaked {
				t.Error("the real password was sent to the agent")
			}
		})
	}
	t.Run("verify-full refuses the wrong name", func(t *testing.T) {
		p := startProxy(t, srv, Options{Login: &Login{Username: pgUser, Password: pgPassword, Placeholder: placeholder},
			UpstreamTLS: "verify-full", UpstreamRoots: srv.ca, ServerName: "db.example.com"})
		out, err := p.psql(t, "", "-c", "SELECT 1")
		if err == nil {
			t.Fatalf("psql connected:\n%s", out)
		}
		contains(t, out, "clawpatrol: cannot connect to the database", "certificate")
	})
	t.Run("relayed login", func(t *testing.T) {
		p := startProxy(t, srv, Options{UpstreamTLS: "require"})
		c := exec.Command("psql", "-X", "-A", "-t", "-c", "SELECT 7", p.dsn())
		c.Env = append(os.Environ(), "PGPASSWORD="+pgPassword)
		out, err := c.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "7" {
			t.Fatalf("psql: %v\n%s", err, out)
		}
	})
}

func TestUnreachableUpstream(t *testing.T) {
	port, err := freePort() // nothing listens there now
	if err != nil {
		t.Fatal(err)
	}
	p := startProxyTo(t, "127.0.0.1:"+strconv.Itoa(port), Options{Login: &Login{Username: pgUser, Password: pgPassword, Placeholder: placeholder}})
	out, err := p.psql(t, "", "-c", "SELECT 1")
	if err == nil {
		t.Fatalf("psql connected:\n%s", out)
	}
	contains(t, out, "FATAL:  clawpatrol: cannot connect to the database", "connection refused")
}

func TestAgentTLS(t *testing.T) {
	srv := testServer(t)
	cert, err := tls.LoadX509KeyPair(filepath.Join(srv.dir, "server.crt"), filepath.Join(srv.dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	opts := proxyOptions(srv)
	opts.AgentTLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	p := startProxy(t, srv, opts)
	c := exec.Command("psql", "-X", "-A", "-t", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
		strings.Replace(p.dsn(), "sslmode=disable", "sslmode=require", 1))
	c.Env = append(os.Environ(), "PGPASSWORD="+placeholder)
	out, err := c.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "t" {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if a := p.gate.finished[0].a; !a.Destination.TLS {
		t.Errorf("destination %+v", a.Destination)
	}
}
