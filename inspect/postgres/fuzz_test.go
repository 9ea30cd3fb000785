package postgres

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

var update = flag.Bool("update", false, "rewrite testdata/session-*.bin from a live session")

// The fuzz targets are seeded with one captured session: what psql and a
// pgx pipeline sent (session-agent.bin) and got (session-server.bin).
var (
	agentSeed  = filepath.Join("testdata", "session-agent.bin")
	serverSeed = filepath.Join("testdata", "session-server.bin")
)

// TestCapturedSession runs a session through the proxy and checks both of
// its streams split into frames the reader accepts; with -update it stores
// them as the fuzz seeds.
func TestCapturedSession(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))
	ctx := context.Background()
	c := pgxConnect(t, p)
	simple := pgx.QueryExecModeSimpleProtocol
	c.Exec(ctx, "SELECT id, name FROM t ORDER BY id", simple)
	c.Exec(ctx, "SELECT pg_read_file('/etc/passwd')", simple)
	c.Exec(ctx, "BEGIN; SELECT 1", simple)
	c.Exec(ctx, "SELECT lo_get(1)")
	c.Exec(ctx, "ROLLBACK")
	c.PgConn().CopyTo(ctx, io.Discard, "COPY t TO STDOUT")
	c.Exec(ctx, "CREATE TEMP TABLE cs (a int)")
	c.CopyFrom(ctx, pgx.Identifier{"cs"}, []string{"a"}, pgx.CopyFromRows([][]any{{1}, {2}}))
	pl := c.PgConn().StartPipeline(ctx)
	pl.SendQueryParams("SELECT $1::int", [][]byte{[]byte("1")}, nil, nil, nil)
	pl.SendPrepare("bad", "SELECT dblink('x', 'y')", nil)
	pl.SendPipelineSync()
	pl.Close()
	c.Close(ctx)
	// Wait for the proxy to finish with the connection.
	var sent, seen []byte
	for range 500 {
		p.mu.Lock()
		rc := p.conns[0]
		sent, seen = bytes.Clone(rc.sent.Bytes()), bytes.Clone(rc.seen.Bytes())
		p.mu.Unlock()
		if bytes.HasSuffix(sent, []byte{'X', 0, 0, 0, 4}) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, msgs := splitStartup(t, sent)
	checkFrames(t, "agent", msgs)
	checkFrames(t, "server", seen)
	if *update {
		os.WriteFile(agentSeed, sent, 0o644)
		os.WriteFile(serverSeed, seen, 0o644)
	}
	for _, f := range []string{agentSeed, serverSeed} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("fuzz seed missing (run with -args -update): %v", err)
		}
	}
}

// splitStartup splits an agent stream after its startup and login.
func splitStartup(t testing.TB, b []byte) (startup, rest []byte) {
	r := newReader(bytes.NewReader(b))
	n := 0
	for {
		code, body, err := r.startup()
		if err != nil {
			t.Fatalf("startup: %v", err)
		}
		n += 8 + len(body)
		if code != codeSSL && code != codeGSSENC {
			break
		}
	}
	for n+5 <= len(b) && b[n] == 'p' {
		n += 1 + int(be32(b[n+1:]))
	}
	return b[:n], b[n:]
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func checkFrames(t *testing.T, what string, b []byte) {
	t.Helper()
	r := newReader(bytes.NewReader(b))
	for {
		typ, n, err := r.header()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%s frame: %v", what, err)
		}
		if _, err := r.body(typ, n, maxMessage); err != nil {
			t.Fatalf("%s frame %q: %v", what, typ, err)
		}
	}
}

// fakeConn is a net.Conn that reads a fixed input and discards writes.
type fakeConn struct {
	io.Reader
	written int
}

func (c *fakeConn) Write(b []byte) (int, error)      { c.written += len(b); return len(b), nil }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzSession is a session past its startup whose agent sends agent and
// whose server sends server.
func fuzzSession(g *testGate, agent, server []byte) *session {
	s := &session{
		opts: Options{Gate: g, Logger: zap.NewNop(), TextLimit: 256,
			Login: &Login{Username: pgUser, Password: pgPassword, Placeholder: placeholder}}.withDefaults(),
		t:    upstream.Target{Host: "db", Port: 5432, Endpoint: &config.Endpoint{Name: "db", Upstream: "127.0.0.1:1"}},
		log:  zap.NewNop(),
		user: "app", database: "app",
	}
	s.agent = &fakeConn{Reader: bytes.NewReader(agent)}
	s.ar = newReader(s.agent)
	s.aw = bufio.NewWriter(io.Discard)
	s.setUp(&fakeConn{Reader: bytes.NewReader(server)})
	return s
}

// every decided action is finished exactly once, or still waits in the queue.
func checkFinished(t *testing.T, g *testGate, s *session) {
	s.queue.drain(g, "end")
	seen := map[*action.Action]int{}
	for _, f := range g.finished {
		seen[f.a]++
	}
	for _, a := range g.decided {
		if seen[a] != 1 {
			t.Fatalf("action %q finished %d times", a.SQL.Statement, seen[a])
		}
	}
}

func FuzzFrontend(f *testing.F) {
	if b, err := os.ReadFile(agentSeed); err == nil {
		_, rest := splitStartup(f, b)
		f.Add(rest)
	}
	f.Add([]byte("Q\x00\x00\x00\x0dSELECT 1;\x00"))
	f.Add([]byte("P\x00\x00\x00\x10\x00SELECT 1\x00\x00\x00B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &testGate{}
		s := fuzzSession(g, data, nil)
		s.frontend(context.Background())
		checkFinished(t, g, s)
	})
}

func FuzzBackend(f *testing.F) {
	if b, err := os.ReadFile(serverSeed); err == nil {
		f.Add(b, []byte("QPBDESQ"))
	}
	f.Add([]byte("1\x00\x00\x00\x04E\x00\x00\x00\x05\x00Z\x00\x00\x00\x05I"), []byte("PBS"))
	f.Fuzz(func(t *testing.T, data, kinds []byte) {
		g := &testGate{}
		s := fuzzSession(g, nil, data)
		for i, k := range kinds {
			e := &entry{kind: k}
			switch {
			case i%3 == 0:
				e.act = &action.Action{Protocol: "sql", SQL: &action.SQL{Statement: string(rune('a' + i%26))}}
				g.decided = append(g.decided, e.act)
			case i%3 == 1:
				e.deny = denyResponse(action.Denied("r", "x"))
			}
			s.queue.push(e)
		}
		s.backend()
		checkFinished(t, g, s)
	})
}

func FuzzStartup(f *testing.F) {
	if b, err := os.ReadFile(agentSeed); err == nil {
		startup, _ := splitStartup(f, b)
		f.Add(startup)
	}
	f.Add([]byte("\x00\x00\x00\x08\x04\xd2\x16\x2f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := fuzzSession(&testGate{}, data, nil)
		s.up, s.ur, s.uw = nil, nil, nil
		s.opts.Cancels = &Cancels{}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.start(ctx)
	})
}
