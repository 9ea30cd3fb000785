package clickhouse

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/internal/inspecttest"
)

const placeholder = "placeholder-9a8b7c6d" // what the agent holds instead of chPassword

// policy stands in for the example ClickHouse policy: reads and inserts
// are allowed, table functions that reach outside are not, nor is anything
// unparseable; of other requests only /ping is.
func policy(a *action.Action) action.Decision {
	allow := inspecttest.Allow("ok")
	if a.HTTP != nil {
		if a.HTTP.Path == "/ping" {
			return allow
		}
		return action.Denied("policy.default", "no rule allows it")
	}
	q := a.SQL
	for _, f := range q.Functions {
		if slices.Contains([]string{"file", "url", "s3", "remote", "remotesecure", "mysql", "hdfs"}, f) {
			return action.Denied("ch-table-function", "the "+f+"() table function reaches outside the database")
		}
	}
	if q.Unparseable || q.Truncated {
		return action.Denied("unparseable-input", "the query could not be read whole")
	}
	for _, v := range q.Verbs {
		if v != "select" && v != "insert" && v != "show" {
			return action.Denied("policy.default", "no rule allows "+v)
		}
	}
	return allow
}

// proxy is the agent's side of the tests: Handle for every connection to
// a local listener.
type proxy struct {
	*inspecttest.Proxy
	addr   string
	gate   *inspecttest.Gate
	before int // actions finished before the last curl
}

// startProxy inspects connections to an endpoint whose upstream is the
// test server. Its cleanup checks that every action was finished once and
// that the real password never reached the agent.
func startProxy(t testing.TB, opts Options) *proxy {
	t.Helper()
	srv := testServer(t)
	gate, _ := opts.Gate.(*inspecttest.Gate)
	if gate == nil {
		gate = &inspecttest.Gate{Policy: policy}
		opts.Gate = gate
	}
	target := upstream.Target{Host: "clickhouse.internal.example.com", IP: netip.MustParseAddr("198.18.0.5"), Port: 8123,
		Endpoint: &config.Endpoint{Name: "analytics", Upstream: "127.0.0.1:" + strconv.Itoa(srv.port), Credential: "analytics"}}
	p := &proxy{gate: gate}
	p.Proxy = inspecttest.Listen(t, func(ctx context.Context, agent net.Conn) { Handle(ctx, agent, target, opts) })
	p.addr = p.Addr
	t.Cleanup(func() {
		p.Stop()
		gate.Balanced(t)
		if bytes.Contains(p.ToAgent(), []byte(chPassword)) {
			t.Error("the real password reached the agent")
		}
	})
	return p
}

// last waits for the action of the last curl and returns it.
func (p *proxy) last() inspecttest.Finished {
	f, _ := p.gate.After(p.before)
	return f
}

func login() *Login { return &Login{Username: chUser, Password: chPassword, Placeholder: placeholder} }

// curl runs curl against the proxy and returns the status and body.
func curl(t *testing.T, p *proxy, path string, args ...string) (int, string) {
	t.Helper()
	p.before = p.gate.Count()
	all := append([]string{"-s", "-S", "-w", "\n%{http_code}"}, args...)
	all = append(all, "http://"+p.addr+path)
	out, err := exec.Command("curl", all...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	code, _ := strconv.Atoi(s[i+1:])
	return code, s[:i]
}

func q(sql string) string { return "/?query=" + url.QueryEscape(sql) }

var keyHeaders = []string{"-H", "X-ClickHouse-User: agent", "-H", "X-ClickHouse-Key: " + placeholder}

func TestCurl(t *testing.T) {
	p := startProxy(t, Options{Login: login()})

	for name, auth := range map[string][]string{
		"X-ClickHouse-Key": keyHeaders,
		"basic":            {"-u", "agent:" + placeholder},
		"parameters":       nil,
		"none":             nil,
	} {
		t.Run("select with "+name, func(t *testing.T) {
			path := q("SELECT currentDatabase(), 1 + 1")
			if name == "parameters" {
				path += "&user=agent&password=" + placeholder
			}
			code, body := curl(t, p, path, auth...)
			if code != 200 || body != "default\t2\n" {
				t.Fatalf("%d %q", code, body)
			}
			f := p.last()
			if f.A.SQL == nil || f.A.SQL.User != chUser || !slices.Equal(f.A.SQL.Verbs, []string{"select"}) || f.O.UpstreamStatus != 200 {
				t.Errorf("action %+v outcome %+v", f.A.SQL, f.O)
			}
		})
	}
	t.Run("file() is denied with ClickHouse's error", func(t *testing.T) {
		code, body := curl(t, p, q("SELECT * FROM file('/etc/passwd', 'TSV', 'line String')"), keyHeaders...)
		if code != 403 || !strings.HasPrefix(body, "Code: 497. DB::Exception: clawpatrol: the file() table function reaches outside the database (rule ch-table-function). (ACCESS_DENIED)") {
			t.Fatalf("%d %q", code, body)
		}
	})
	t.Run("a query in the body", func(t *testing.T) {
		code, body := curl(t, p, "/", append(keyHeaders, "--data-binary", "SELECT count() FROM system.one")...)
		if code != 200 || body != "1\n" {
			t.Fatalf("%d %q", code, body)
		}
		if f := p.last(); !slices.Equal(f.A.SQL.Tables, []string{"one"}) {
			t.Errorf("tables %q", f.A.SQL.Tables)
		}
	})
	t.Run("the parameter and the body make one query", func(t *testing.T) {
		code, body := curl(t, p, q("SELECT * FROM"), append(keyHeaders, "--data-binary", "file('/etc/passwd', 'TSV', 'line String')")...)
		if code != 403 || !strings.Contains(body, "rule ch-table-function") {
			t.Fatalf("%d %q", code, body)
		}
	})
	t.Run("the database parameter", func(t *testing.T) {
		code, body := curl(t, p, q("SELECT currentDatabase()")+"&database=system", keyHeaders...)
		if code != 200 || body != "system\n" {
			t.Fatalf("%d %q", code, body)
		}
		if f := p.last(); f.A.SQL.Database != "system" {
			t.Errorf("database %q", f.A.SQL.Database)
		}
	})
	t.Run("a password that is not the placeholder", func(t *testing.T) {
		code, body := curl(t, p, q("SELECT 1"), "-u", "agent:"+chPassword+"x")
		if code != 403 || !strings.Contains(body, "rule credential") {
			t.Fatalf("%d %q", code, body)
		}
	})
	t.Run("ping is a request of its own", func(t *testing.T) {
		code, body := curl(t, p, "/ping")
		if code != 200 || body != "Ok.\n" {
			t.Fatalf("%d %q", code, body)
		}
		if f := p.last(); f.A.Protocol != "http" || f.A.HTTP.Path != "/ping" {
			t.Errorf("action %+v", f.A)
		}
		code, _ = curl(t, p, "/play")
		if code != 403 {
			t.Errorf("/play: %d", code)
		}
	})
	t.Run("compressed bodies are refused", func(t *testing.T) {
		code, body := curl(t, p, q("INSERT INTO rows FORMAT TSV"), append(keyHeaders, "-H", "Content-Encoding: gzip", "--data-binary", "x")...)
		if code != 403 || !strings.Contains(body, "rule clickhouse-unsupported") {
			t.Fatalf("%d %q", code, body)
		}
	})
}

// TestInsertStreams sends 50 MB of rows: the policy decides on the
// statement alone, and the rows stream to the server.
func TestInsertStreams(t *testing.T) {
	p := startProxy(t, Options{Login: login()})
	srv := testServer(t)
	const rows = 5_000_000 // 11 bytes each: 55 MB
	file := filepath.Join(t.TempDir(), "rows.tsv")
	fh, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(fh)
	for i := range rows {
		fmt.Fprintf(w, "%010d\n", i)
	}
	w.Flush()
	fh.Close()
	size := int64(rows * 11)

	for name, c := range map[string]struct {
		path      string
		body      string
		statement string
	}{
		"statement in the parameter": {q("INSERT INTO rows FORMAT TSV"), "@" + file, "INSERT INTO rows FORMAT TSV"},
		"statement in the body":      {"/", "", "INSERT INTO rows FORMAT TabSeparated"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := srv.query("TRUNCATE TABLE rows"); err != nil {
				t.Fatal(err)
			}
			body := c.body
			want := size
			if body == "" {
				both := filepath.Join(t.TempDir(), "insert.tsv")
				data, _ := os.ReadFile(file)
				os.WriteFile(both, append([]byte(c.statement+"\n"), data...), 0o644)
				body = "@" + both
				want += int64(len(c.statement) + 1)
			}
			code, out := curl(t, p, c.path, append(keyHeaders, "--data-binary", body)...)
			if code != 200 {
				t.Fatalf("%d %q", code, out)
			}
			if n, err := srv.query("SELECT count() FROM rows"); err != nil || n != strconv.Itoa(rows) {
				t.Fatalf("rows on the server: %s %v", n, err)
			}
			f := p.last()
			if f.A.SQL.Statement != c.statement || f.A.SQL.Truncated || f.O.BytesUp != want {
				t.Errorf("the policy saw %q (truncated %v); %d bytes went up, want %d", f.A.SQL.Statement, f.A.SQL.Truncated, f.O.BytesUp, want)
			}
		})
	}
}
