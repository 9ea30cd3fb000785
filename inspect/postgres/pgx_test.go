package postgres

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/clawpatrol/clawpatrol/action"
)

func pgxConnect(t *testing.T, p *proxy) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.url())
	if err != nil {
		t.Fatalf("pgx connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// wantDenied checks err is clawpatrol's 42501 for rule.
func wantDenied(t *testing.T, err error, rule string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "rule "+rule) {
		t.Fatalf("err = %v, want 42501 for rule %s", err, rule)
	}
}

func scalar(t *testing.T, c *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestPgxBatch(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))
	ctx := context.Background()
	modes := []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			cfg, err := pgx.ParseConfig(p.url())
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = mode
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			what := "batch " + mode.String()
			// One pipeline, one Sync: the denied statement fails the batch
			// from there on and the work before it is rolled back, as with
			// any error in a batch.
			b := &pgx.Batch{}
			b.Queue("INSERT INTO log (what) VALUES ($1)", what)
			b.Queue("SELECT pg_read_file($1)", "/etc/passwd")
			b.Queue("SELECT 3")
			br := c.SendBatch(ctx, b)
			var denied error
			for range 3 {
				if _, err := br.Exec(); err != nil && denied == nil {
					denied = err
				}
			}
			br.Close()
			wantDenied(t, denied, "pg-server-files")
			if n := scalar(t, c, "SELECT $1::int + 1", 41); n != 42 {
				t.Errorf("after the batch: %d", n)
			}
			if n := scalar(t, c, "SELECT count(*) FROM log WHERE what = $1", what); n != 0 {
				t.Errorf("the batch's insert was kept: %d rows", n)
			}
		})
	}
}

func TestPgxPipeline(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))
	c := pgxConnect(t, p)
	ctx := context.Background()

	// Three syncs in one pipeline: only the middle one fails.
	pl := c.PgConn().StartPipeline(ctx)
	pl.SendQueryParams("SELECT 1", nil, nil, nil, nil)
	pl.SendPipelineSync()
	pl.SendPrepare("evil", "SELECT lo_export(1, '/tmp/x')", nil)
	pl.SendQueryPrepared("evil", nil, nil, nil)
	pl.SendPipelineSync()
	pl.SendQueryParams("SELECT 2", nil, nil, nil, nil)
	pl.SendPipelineSync()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		r, err := pl.GetResults()
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				got = append(got, "error "+pe.Code)
				continue
			}
			t.Fatalf("GetResults: %v (after %q)", err, got)
		}
		if r == nil {
			break
		}
		switch r := r.(type) {
		case *pgconn.ResultReader:
			res := r.Read()
			if res.Err != nil {
				got = append(got, "result error "+res.Err.Error())
			} else {
				got = append(got, "rows "+string(bytes.Join(res.Rows[0], nil)))
			}
		case *pgconn.PipelineSync:
			got = append(got, "sync")
		default:
			got = append(got, "other")
		}
	}
	if err := pl.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	want := "rows 1,sync,error 42501,sync,rows 2,sync"
	if strings.Join(got, ",") != want {
		t.Errorf("pipeline = %q, want %q", strings.Join(got, ","), want)
	}
	// The denied statement was never prepared: binding it later fails as
	// the server says.
	res := c.PgConn().ExecPrepared(ctx, "evil", nil, nil, nil).Read()
	var pe *pgconn.PgError
	if !errors.As(res.Err, &pe) || pe.Code != "26000" {
		t.Errorf("executing the denied statement: %v, want 26000", res.Err)
	}
	if n := scalar(t, c, "SELECT 5"); n != 5 {
		t.Error(n)
	}
}

func TestPgxTransaction(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))
	c := pgxConnect(t, p)
	ctx := context.Background()

	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO log (what) VALUES ('tx')"); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "SELECT dblink_exec('host=10.0.0.1', 'DROP TABLE users')")
	wantDenied(t, err, "pg-dblink")
	_, err = tx.Exec(ctx, "SELECT 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "25P02" {
		t.Errorf("in the aborted transaction: %v, want 25P02", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := scalar(t, c, "SELECT count(*) FROM log WHERE what = 'tx'"); n != 0 {
		t.Errorf("insert kept: %d", n)
	}
	if c.PgConn().TxStatus() != 'I' {
		t.Errorf("tx status %c", c.PgConn().TxStatus())
	}
}

func TestPgxCopyNotifyNotice(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))
	ctx := context.Background()

	var notices []string
	cfg, err := pgx.ParseConfig(p.url())
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)

	if _, err := c.Exec(ctx, "CREATE TEMP TABLE pts (x int, y text)"); err != nil {
		t.Fatal(err)
	}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"pts"}, []string{"x", "y"}, pgx.CopyFromRows([][]any{{1, "a"}, {2, "b"}, {3, "c"}}))
	if err != nil || n != 3 {
		t.Fatalf("CopyFrom: %d %v", n, err)
	}
	var out bytes.Buffer
	if _, err := c.PgConn().CopyTo(ctx, &out, "COPY pts TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	if out.String() != "1\ta\n2\tb\n3\tc\n" {
		t.Errorf("CopyTo = %q", out.String())
	}
	if _, err := c.Exec(ctx, "DO $$BEGIN RAISE NOTICE 'hello from the server'; END$$"); err != nil {
		t.Fatal(err)
	}
	if len(notices) != 1 || notices[0] != "hello from the server" {
		t.Errorf("notices = %q", notices)
	}

	other := pgxConnect(t, p)
	if _, err := c.Exec(ctx, "LISTEN ch"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, "NOTIFY ch, 'payload'"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	note, err := c.WaitForNotification(wctx)
	if err != nil || note.Channel != "ch" || note.Payload != "payload" {
		t.Fatalf("notification %+v %v", note, err)
	}
}

func TestPgxCancel(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))
	c := pgxConnect(t, p)
	ctx := context.Background()

	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "SELECT pg_sleep(60)")
		done <- err
	}()
	// Wait until the sleep runs, then cancel it through clawpatrol.
	other := pgxConnect(t, p)
	for i := 0; ; i++ {
		if scalar(t, other, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'") == 1 {
			break
		}
		if i == 500 {
			t.Fatal("the query never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	err := <-done
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("cancelled query: %v, want 57014", err)
	}
	if n := scalar(t, c, "SELECT 6"); n != 6 {
		t.Error(n)
	}
}

func TestTruncatedText(t *testing.T) {
	srv := testServer(t)
	opts := proxyOptions(srv)
	opts.TextLimit = 64
	p := startProxy(t, srv, opts)
	p.gate.decide = func(a *action.Action) action.Decision {
		if !a.SQL.Truncated || len(a.SQL.Statement) != 64 {
			return action.Denied("test", "expected truncated text")
		}
		return action.Decision{Verdict: action.Allow, Rule: "test"}
	}
	c := pgxConnect(t, p)
	// Held whole (under limit + room for a Parse's extras), and streamed.
	for _, size := range []int{1000, 1 << 20} {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			long := "SELECT length('" + strings.Repeat("x", size) + "')"
			var n int
			if err := c.QueryRow(context.Background(), long, mode).Scan(&n); err != nil || n != size {
				t.Fatalf("size %d mode %v: %d %v", size, mode, n, err)
			}
		}
	}
}

func TestTruncatedDenied(t *testing.T) {
	srv := testServer(t)
	opts := proxyOptions(srv)
	opts.TextLimit = 64
	p := startProxy(t, srv, opts)
	c := pgxConnect(t, p)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		_, err := c.Exec(context.Background(), "SELECT length('"+strings.Repeat("x", 1<<20)+"')", mode)
		wantDenied(t, err, "unparseable")
		if n := scalar(t, c, "SELECT 8"); n != 8 {
			t.Error(n)
		}
	}
}

func TestStandardConformingStringsOff(t *testing.T) {
	srv := testServer(t)
	p := startProxy(t, srv, proxyOptions(srv))
	c := pgxConnect(t, p)
	ctx := context.Background()
	q := `SELECT 'a\'' || $$; DROP TABLE t; --$$`
	simple := pgx.QueryExecModeSimpleProtocol
	if _, err := c.Exec(ctx, `SELECT 'a\b'`, simple); err != nil {
		t.Fatalf("a backslash with standard strings on: %v", err)
	}
	if _, err := c.Exec(ctx, "SET standard_conforming_strings = off", simple); err != nil {
		t.Fatal(err)
	}
	_, err := c.Exec(ctx, q, simple)
	wantDenied(t, err, "unparseable")
	_, err = c.Exec(ctx, `SELECT 'a\b'`, simple)
	wantDenied(t, err, "unparseable")
	if _, err := c.Exec(ctx, `SELECT E'a\\b', 1`, simple); err != nil {
		t.Errorf("an escape string: %v", err)
	}
}

func TestApprovalHoldsTheStatement(t *testing.T) {
	srv := testServer(t)
	asked, release := make(chan struct{}), make(chan struct{})
	g := &testGate{decide: func(a *action.Action) action.Decision {
		if strings.Contains(a.SQL.Statement, "held") {
			close(asked)
			<-release // an approver thinking
		}
		return policy(a)
	}}
	opts := proxyOptions(srv)
	opts.Gate = g
	p := startProxy(t, srv, opts)
	c := pgxConnect(t, p)
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "INSERT INTO log (what) VALUES ('held')")
		done <- err
	}()
	<-asked
	if got := srv.query(t, "SELECT count(*) FROM log WHERE what = 'held'"); got != "0" {
		t.Fatalf("the statement ran before it was decided: %s rows", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := srv.query(t, "SELECT count(*) FROM log WHERE what = 'held'"); got != "1" {
		t.Fatalf("after the approval: %s rows", got)
	}
}
