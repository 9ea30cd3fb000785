package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

const placeholder = "placeholder-7c1e" // what the agent holds instead of pgPassword

// testGate decides with a func and records every call.
type testGate struct {
	decide func(a *action.Action) action.Decision

	mu       sync.Mutex
	decided  []*action.Action
	finished []finished
}

type finished struct {
	a *action.Action
	d action.Decision
	o action.Outcome
}

func (g *testGate) Decide(ctx context.Context, a *action.Action) action.Decision {
	g.mu.Lock()
	g.decided = append(g.decided, a)
	g.mu.Unlock()
	if g.decide == nil {
		return policy(a)
	}
	return g.decide(a)
}

func (g *testGate) Finish(a *action.Action, d action.Decision, o action.Outcome) {
	g.mu.Lock()
	g.finished = append(g.finished, finished{a, d, o})
	g.mu.Unlock()
}

// statements returns the statement text of every finished action with verdict v.
func (g *testGate) statements(v action.Verdict) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, f := range g.finished {
		if f.d.Verdict == v {
			out = append(out, f.a.SQL.Statement)
		}
	}
	return out
}

// policy is the tests' stand-in for the example Rego policy.
func policy(a *action.Action) action.Decision {
	q := a.SQL
	if q == nil {
		return action.Denied("no-sql", "not a query")
	}
	if q.Unparseable {
		return action.Denied("unparseable", "the statement could not be parsed")
	}
	for _, f := range q.Functions {
		if strings.HasPrefix(f, "pg_read") || strings.HasPrefix(f, "lo_") {
			return action.Denied("pg-server-files", f+" reaches the database server's filesystem")
		}
		if strings.HasPrefix(f, "dblink") {
			return action.Denied("pg-dblink", f+" connects to another server")
		}
	}
	for _, s := range q.Statements {
		if s.Program {
			return action.Denied("pg-copy-program", "COPY ... PROGRAM runs a shell command on the database server")
		}
	}
	for _, v := range q.Verbs {
		if v == "drop" || v == "delete" || v == "truncate" {
			return action.Denied("pg-destructive", strings.ToUpper(v)+" destroys data")
		}
	}
	return action.Decision{Verdict: action.Allow, Rule: "test-allow", Reasons: []action.Reason{{Rule: "test-allow", Reason: "allowed by the test"}}}
}

// proxy serves Handle on a local listener, standing in for the Router.
type proxy struct {
	addr    string
	port    int
	gate    *testGate
	cancels *Cancels

	mu    sync.Mutex
	seen  bytes.Buffer     // every byte the agent side was sent
	conns []*recordingConn // every connection, in the order accepted
}

// proxyOptions returns the default options: login offload with the
// placeholder, TLS upstream.
func proxyOptions(srv *pgServer) Options {
	return Options{
		Login:       &Login{Username: pgUser, Password: pgPassword, Placeholder: placeholder},
		UpstreamTLS: "require",
	}
}

func startProxy(t testing.TB, srv *pgServer, opts Options) *proxy {
	t.Helper()
	return startProxyTo(t, "127.0.0.1:"+strconv.Itoa(srv.port), opts)
}

func startProxyTo(t testing.TB, upstreamAddr string, opts Options) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), port: ln.Addr().(*net.TCPAddr).Port, gate: &testGate{}, cancels: &Cancels{}}
	if opts.Gate == nil {
		opts.Gate = p.gate
	} else if g, ok := opts.Gate.(*testGate); ok {
		p.gate = g
	}
	if opts.Cancels == nil {
		opts.Cancels = p.cancels
	}
	target := upstream.Target{
		Host: "db.internal.test", IP: netip.MustParseAddr("198.18.0.7"), Port: 5432,
		Endpoint: &config.Endpoint{Name: "prod-db", Protocol: "postgres", Upstream: upstreamAddr, Credential: "prod-db"},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rc := &recordingConn{Conn: c, p: p}
				p.mu.Lock()
				p.conns = append(p.conns, rc)
				p.mu.Unlock()
				Handle(ctx, rc, target, opts)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		wg.Wait()
		p.checkNoSecret(t)
		p.checkFinishedOnce(t)
	})
	return p
}

// recordingConn keeps what the agent side sends and is sent.
type recordingConn struct {
	net.Conn
	p          *proxy
	sent, seen bytes.Buffer // guarded by p.mu
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.p.mu.Lock()
	c.sent.Write(b[:n])
	c.p.mu.Unlock()
	return n, err
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.p.mu.Lock()
	c.p.seen.Write(b)
	c.seen.Write(b)
	c.p.mu.Unlock()
	return c.Conn.Write(b)
}

// checkNoSecret fails the test when the real password reached the agent
// side or the policy input.
func (p *proxy) checkNoSecret(t testing.TB) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if bytes.Contains(p.seen.Bytes(), []byte(pgPassword)) {
		t.Error("the real password was sent to the agent")
	}
	p.gate.mu.Lock()
	defer p.gate.mu.Unlock()
	for _, f := range p.gate.finished {
		b, _ := json.Marshal(f)
		if bytes.Contains(b, []byte(pgPassword)) {
			t.Errorf("the real password is in an action: %s", b)
		}
	}
}

// checkFinishedOnce fails the test unless every decided action was
// finished exactly once.
func (p *proxy) checkFinishedOnce(t testing.TB) {
	p.gate.mu.Lock()
	defer p.gate.mu.Unlock()
	n := map[*action.Action]int{}
	for _, f := range p.gate.finished {
		n[f.a]++
	}
	for _, a := range p.gate.decided {
		if n[a] != 1 {
			t.Errorf("action %q was finished %d times", a.SQL.Statement, n[a])
		}
	}
}

// dsn is a libpq connection string to the proxy.
func (p *proxy) dsn() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", p.port, pgUser, pgDatabase)
}

// url is a postgres:// URL to the proxy with the placeholder password.
func (p *proxy) url() string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", pgUser, placeholder, p.port, pgDatabase)
}

// psql runs psql through the proxy with the placeholder password, feeding
// script on stdin (statements are sent one by one) or running -c when
// command is set (sent as one query). It returns the combined output.
func (p *proxy) psql(t testing.TB, script string, args ...string) (string, error) {
	t.Helper()
	c := exec.Command("psql", append([]string{"-X", "-A", "-t", "-v", "VERBOSITY=verbose", p.dsn()}, args...)...)
	c.Env = append(os.Environ(), "PGPASSWORD="+placeholder, "PGCONNECT_TIMEOUT=20")
	c.Stdin = strings.NewReader(script)
	out, err := c.CombinedOutput()
	return string(out), err
}

func contains(t testing.TB, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}
