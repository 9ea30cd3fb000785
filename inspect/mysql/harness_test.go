package mysql

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/internal/inspecttest"
)

const placeholder = "placeholder-5d6e7f" // what the agent holds instead of dbPassword

// last returns the last finished action whose statement is text.
func last(g *inspecttest.Gate, text string) (inspecttest.Finished, bool) {
	return g.Wait(func(f inspecttest.Finished) bool { return f.A.SQL != nil && f.A.SQL.Statement == text })
}

// policy is the tests' stand-in for a Rego policy: reads and session
// statements are allowed, load_file and local files are denied, and so is
// anything unparseable or writing.
func policy(a *action.Action) action.Decision {
	q := a.SQL
	if q == nil {
		return action.Denied("no-sql", "not a query")
	}
	for _, s := range q.Statements {
		if s.LocalFile {
			return action.Denied("local-file", "LOAD DATA LOCAL sends a file from the agent's host")
		}
	}
	if slices.Contains(q.Functions, "load_file") {
		return action.Denied("server-files", "load_file reads the database server's files")
	}
	if q.Unparseable {
		return action.Denied("unparseable", "the statement could not be parsed")
	}
	if len(q.Verbs) == 0 {
		return action.Denied("policy.default", "no rule allows it")
	}
	for _, v := range q.Verbs {
		switch v {
		case "select", "show", "describe", "explain", "use", "set":
		default:
			return action.Denied("policy.default", "no rule allows "+v)
		}
	}
	return inspecttest.Allow("reads")
}

// proxy is the agent's side of the tests: Handle for every connection to
// a local listener.
type proxy struct {
	*inspecttest.Proxy
	addr string
	gate *inspecttest.Gate
}

// startProxy inspects connections to an endpoint whose upstream is the
// test server.
func startProxy(t testing.TB, gate *inspecttest.Gate, opts Options) *proxy {
	t.Helper()
	return startProxyTo(t, "127.0.0.1:"+strconv.Itoa(testServer(t).port), gate, opts)
}

// startProxyTo is startProxy for the server at addr. Its cleanup checks
// that every action was finished once and that the real password never
// reached the agent.
func startProxyTo(t testing.TB, addr string, gate *inspecttest.Gate, opts Options) *proxy {
	t.Helper()
	if gate == nil {
		gate = &inspecttest.Gate{Policy: policy}
	}
	opts.Gate = gate
	target := upstream.Target{Host: "db.internal.example.com", IP: netip.MustParseAddr("198.18.0.7"), Port: 3306,
		Endpoint: &config.Endpoint{Name: "db", Upstream: addr, Credential: "db"}}
	p := &proxy{gate: gate}
	p.Proxy = inspecttest.Listen(t, func(ctx context.Context, agent net.Conn) { Handle(ctx, agent, target, opts) })
	p.addr = p.Addr
	t.Cleanup(func() {
		p.Stop()
		gate.Balanced(t)
		if bytes.Contains(p.ToAgent(), []byte(dbPassword)) {
			t.Error("the real password reached the agent")
		}
	})
	return p
}

// offload is the login offload the tests use.
func offload() *Login {
	return &Login{Username: dbUser, Password: dbPassword, Placeholder: placeholder}
}
