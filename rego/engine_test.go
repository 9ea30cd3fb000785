package rego

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
)

func load(t *testing.T, cfg *config.Config, files map[string]string) *Engine {
	t.Helper()
	e, err := Load([]string{writePolicy(t, files)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func rules(d action.Decision) []string {
	var out []string
	for _, r := range d.Reasons {
		out = append(out, r.Rule)
	}
	return out
}

// fieldPolicy has one allow rule per field of SPEC §5, named after it.
const fieldPolicy = `package clawpatrol

allow contains "id" if input.id == "01JD"
allow contains "time" if startswith(input.time, "2026-11-24T18:00:00.123")
allow contains "session" if input.session == "01JE"
allow contains "agent.command" if input.agent.command == ["claude", "-p", "fix it"]
allow contains "agent.pid" if input.agent.pid == 4242
allow contains "agent.exe" if input.agent.exe == "/usr/bin/node"
allow contains "protocol" if input.protocol in {"http", "sql", "k8s", "tcp", "tls", "udp"}
allow contains "endpoint" if input.endpoint == "ep"
allow contains "credential" if input.credential == "cred"
allow contains "destination.host" if input.destination.host == "api.example.com"
allow contains "destination.port" if input.destination.port == 443
allow contains "destination.ip" if net.cidr_contains("198.18.0.0/15", input.destination.ip)
allow contains "destination.tls" if input.destination.tls == true

allow contains "http.method" if input.http.method == "DELETE"
allow contains "http.scheme" if input.http.scheme == "https"
allow contains "http.host" if input.http.host == "api.example.com"
allow contains "http.path" if glob.match("/repos/*/*/issues/*", ["/"], input.http.path)
allow contains "http.query" if "open" in input.http.query.state
allow contains "http.headers" if input.http.headers.accept[0] == "application/json"
allow contains "http.body" if contains(input.http.body, "closed")
allow contains "http.json" if input.http.json.state == "closed"
allow contains "http.size" if input.http.size == 18
allow contains "http.truncated" if input.http.truncated == false
allow contains "http.upgrade" if input.http.upgrade == "websocket"

allow contains "sql.dialect" if input.sql.dialect == "postgres"
allow contains "sql.database" if input.sql.database == "app"
allow contains "sql.user" if input.sql.user == "agent"
allow contains "sql.statement" if startswith(input.sql.statement, "SELECT")
allow contains "sql.statements.verb" if input.sql.statements[_].verb == "delete"
allow contains "sql.statements.tables" if "audit" in input.sql.statements[_].tables
allow contains "sql.statements.functions" if "now" in input.sql.statements[_].functions
allow contains "sql.statements.text" if input.sql.statements[0].text == "SELECT now()"
allow contains "sql.verbs" if input.sql.verbs == ["select", "delete"]
allow contains "sql.tables" if "audit" in input.sql.tables
allow contains "sql.qualified_tables" if "public.audit" in input.sql.qualified_tables
allow contains "sql.functions" if "now" in input.sql.functions
allow contains "sql.unparseable" if input.sql.unparseable == false
allow contains "sql.truncated" if input.sql.truncated == false

allow contains "k8s.verb" if input.k8s.verb == "create"
allow contains "k8s.group" if input.k8s.group == "apps"
allow contains "k8s.version" if input.k8s.version == "v1"
allow contains "k8s.resource" if input.k8s.resource == "deployments"
allow contains "k8s.subresource" if input.k8s.subresource == "scale"
allow contains "k8s.namespace" if input.k8s.namespace == "prod"
allow contains "k8s.name" if input.k8s.name == "web"
allow contains "k8s.command" if input.k8s.command == ["sh"]
allow contains "k8s.container" if input.k8s.container == "main"
allow contains "k8s.params" if input.k8s.params.dryRun == ["All"]
allow contains "k8s.object" if input.k8s.object.spec.replicas == 3
allow contains "k8s.discovery" if input.k8s.discovery == true

allow contains "tcp" if input.tcp == {}
allow contains "tls.sni" if input.tls.sni == "pinned.example.com"
allow contains "tls.alpn" if "h2" in input.tls.alpn
allow contains "udp.size" if input.udp.size > 1000
`

func common(protocol string) action.Action {
	return action.Action{
		ID: "01JD", Time: time.Date(2026, 11, 24, 18, 0, 0, 123e6, time.UTC), Session: "01JE",
		Agent:    &action.Agent{Command: []string{"claude", "-p", "fix it"}, PID: 4242, Exe: "/usr/bin/node"},
		Protocol: protocol, Endpoint: "ep", Credential: "cred",
		Destination: action.Destination{Host: "api.example.com", Port: 443, IP: "198.18.0.3", TLS: true},
	}
}

var commonRules = []string{"agent.command", "agent.exe", "agent.pid", "credential", "destination.host", "destination.ip",
	"destination.port", "destination.tls", "endpoint", "id", "protocol", "session", "time"}

func TestEveryInputField(t *testing.T) {
	e := load(t, nil, map[string]string{"fields.rego": fieldPolicy})
	httpA := common("http")
	httpA.HTTP = &action.HTTP{
		Method: "DELETE", Scheme: "https", Host: "api.example.com", Path: "/repos/acme/app/issues/1",
		Query: map[string][]string{"state": {"open"}}, Headers: map[string][]string{"accept": {"application/json"}},
		Body: `{"state":"closed"}`, JSON: map[string]any{"state": "closed"}, Size: 18, Upgrade: "websocket",
	}
	sqlA := common("sql")
	sqlA.SQL = &action.SQL{
		Dialect: "postgres", Database: "app", User: "agent", Statement: "SELECT now(); DELETE FROM audit",
		Statements: []action.Statement{{Verb: "select", Functions: []string{"now"}, Text: "SELECT now()"}, {Verb: "delete", Tables: []string{"audit"}, Text: "DELETE FROM audit"}},
		Verbs:      []string{"select", "delete"}, Tables: []string{"audit"}, QualifiedTables: []string{"public.audit"}, Functions: []string{"now"},
	}
	k8sA := common("k8s")
	k8sA.K8s = &action.K8s{
		Verb: "create", Group: "apps", Version: "v1", Resource: "deployments", Subresource: "scale", Namespace: "prod", Name: "web",
		Command: []string{"sh"}, Container: "main", Params: map[string][]string{"dryRun": {"All"}},
		Object: map[string]any{"spec": map[string]any{"replicas": 3.0}}, Discovery: true,
	}
	tcpA := common("tcp")
	tcpA.TCP = &action.TCP{}
	tlsA := common("tls")
	tlsA.TLS = &action.TLS{SNI: "pinned.example.com", ALPN: []string{"h2"}}
	udpA := common("udp")
	udpA.UDP = &action.UDP{Size: 1200}

	cases := []struct {
		name  string
		a     action.Action
		block []string
	}{
		{"http", httpA, []string{"http.body", "http.headers", "http.host", "http.json", "http.method", "http.path", "http.query", "http.scheme", "http.size", "http.truncated", "http.upgrade"}},
		{"sql", sqlA, []string{"sql.database", "sql.dialect", "sql.functions", "sql.qualified_tables", "sql.statement", "sql.statements.functions", "sql.statements.tables", "sql.statements.text", "sql.statements.verb", "sql.tables", "sql.truncated", "sql.unparseable", "sql.user", "sql.verbs"}},
		{"k8s", k8sA, []string{"k8s.command", "k8s.container", "k8s.discovery", "k8s.group", "k8s.name", "k8s.namespace", "k8s.object", "k8s.params", "k8s.resource", "k8s.subresource", "k8s.verb", "k8s.version"}},
		{"tcp", tcpA, []string{"tcp"}},
		{"tls", tlsA, []string{"tls.alpn", "tls.sni"}},
		{"udp", udpA, []string{"udp.size"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := e.Decide(context.Background(), &c.a)
			want := slices.Sorted(slices.Values(append(slices.Clone(commonRules), c.block...)))
			if d.Verdict != action.Allow || !slices.Equal(rules(d), want) {
				t.Errorf("got %s %v (error %q)\nwant allow %v", d.Verdict, rules(d), d.Error, want)
			}
		})
	}
}

func TestResolution(t *testing.T) {
	cfg := config.Default()
	cfg.Approval.Default = []string{"me", "judge"}
	cases := []struct {
		name      string
		policy    string
		verdict   action.Verdict
		rule      string
		reasons   []action.Reason
		approvers []string
	}{
		{"deny beats approve and allow", `
deny contains "b-deny" if true
deny contains "a-deny" if true
approve contains "x" if true
allow contains "y" if true`, action.Deny, "a-deny",
			[]action.Reason{{Rule: "a-deny", Reason: "a-deny"}, {Rule: "b-deny", Reason: "b-deny"}}, nil},
		{"approve beats allow, default approvers", `
approve contains {"rule": "merge", "reason": "merging"} if true
allow contains "y" if true`, action.Approve, "merge",
			[]action.Reason{{Rule: "merge", Reason: "merging"}}, []string{"me", "judge"}},
		{"approvers from entries, in rule order, once each", `
approve contains {"rule": "b", "reason": "r", "approvers": ["oncall", "me"]} if true
approve contains {"rule": "a", "reason": "r", "approvers": {"oncall"}} if true
approve contains {"rule": "c", "reason": "r"} if true`, action.Approve, "a",
			[]action.Reason{{Rule: "a", Reason: "r"}, {Rule: "b", Reason: "r"}, {Rule: "c", Reason: "r"}}, []string{"oncall", "me", "judge"}},
		{"allow as a boolean", `
allow if input.protocol == "tcp"`, action.Allow, "allow",
			[]action.Reason{{Rule: "allow", Reason: "allow is true"}}, nil},
		{"allow false is no allow", `
default allow := false`, action.Deny, "policy.default", nil, nil},
		{"deny as a boolean", `
deny if input.protocol == "tcp"
allow contains "x" if true`, action.Deny, "deny", nil, nil},
		{"object entry with only a rule or a reason", `
deny contains {"rule": "only-rule"} if true
deny contains {"reason": "only reason"} if true`, action.Deny, "only reason",
			[]action.Reason{{Rule: "only reason", Reason: "only reason"}, {Rule: "only-rule", Reason: "only-rule"}}, nil},
		{"nothing fires", `
allow contains "x" if input.protocol == "udp"`, action.Deny, "policy.default", nil, nil},
		{"unknown key fails closed", `
approve contains {"rule": "x", "approver": ["me"]} if true`, action.Deny, "policy-error", nil, nil},
		{"approvers on a deny entry fail closed", `
deny contains {"rule": "x", "approvers": ["me"]} if true`, action.Deny, "policy-error", nil, nil},
		{"a number entry fails closed", `
allow contains 42 if true`, action.Deny, "policy-error", nil, nil},
		{"allow as an object fails closed", `
allow := {"a": 1}`, action.Deny, "policy-error", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := load(t, cfg, map[string]string{"p.rego": "package clawpatrol\n" + c.policy})
			d := e.Decide(context.Background(), &action.Action{Protocol: "tcp", TCP: &action.TCP{}})
			if d.Verdict != c.verdict || d.Rule != c.rule {
				t.Fatalf("got %s %s (error %q), want %s %s", d.Verdict, d.Rule, d.Error, c.verdict, c.rule)
			}
			if c.reasons != nil && !slices.Equal(d.Reasons, c.reasons) {
				t.Errorf("reasons %v, want %v", d.Reasons, c.reasons)
			}
			if !slices.Equal(d.Approvers, c.approvers) {
				t.Errorf("approvers %v, want %v", d.Approvers, c.approvers)
			}
			if c.rule == "policy-error" && (d.Error == "" || d.Reason() != "the policy could not be evaluated") {
				t.Errorf("policy error decision %+v", d)
			}
		})
	}
}

func TestPolicyDefault(t *testing.T) {
	policy := map[string]string{"p.rego": "package clawpatrol\nallow contains \"udp\" if input.udp\n"}
	for _, def := range []string{"deny", "allow"} {
		t.Run(def, func(t *testing.T) {
			cfg := config.Default()
			cfg.Policy.Default = def
			e := load(t, cfg, policy)
			d := e.Decide(context.Background(), &action.Action{Protocol: "tcp", TCP: &action.TCP{}})
			if string(d.Verdict) != def || d.Rule != "policy.default" {
				t.Errorf("got %s %s, want %s policy.default", d.Verdict, d.Rule, def)
			}
		})
	}
}

func TestMultiFilePolicy(t *testing.T) {
	e := load(t, nil, map[string]string{
		"github.rego":       "package clawpatrol\nallow contains \"a\" if input.endpoint == \"github\"\ndeny contains \"d1\" if input.http.method == \"DELETE\"\n",
		"sub/extra.rego":    "package clawpatrol\nallow contains \"b\" if input.endpoint == \"github\"\ndeny contains \"d2\" if input.http.method == \"DELETE\"\n",
		"lib/lib.rego":      "package clawpatrol.lib\nreads := {\"GET\", \"HEAD\"}\n",
		"uses_lib.rego":     "package clawpatrol\nallow contains \"c\" if input.http.method in data.clawpatrol.lib.reads\n",
		"ignored_test.rego": "package clawpatrol\nthis does not even parse\n",
	})
	d := e.Decide(context.Background(), &action.Action{Protocol: "http", Endpoint: "github", HTTP: &action.HTTP{Method: "GET", Path: "/"}})
	if d.Verdict != action.Allow || !slices.Equal(rules(d), []string{"a", "b", "c"}) {
		t.Errorf("GET: %s %v", d.Verdict, rules(d))
	}
	d = e.Decide(context.Background(), &action.Action{Protocol: "http", Endpoint: "github", HTTP: &action.HTTP{Method: "DELETE", Path: "/"}})
	if d.Verdict != action.Deny || !slices.Equal(rules(d), []string{"d1", "d2"}) {
		t.Errorf("DELETE: %s %v", d.Verdict, rules(d))
	}
	if got := len(e.Files()); got != 4 {
		t.Errorf("files %v", e.Files())
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name, file, text string
		row              int
		message          string
	}{
		{"parse error", "bad.rego", "package clawpatrol\n\nallow contains \"x\" if {\n\tinput.a ==\n}\n", 5, "rego_parse_error"},
		{"type error", "types.rego", "package clawpatrol\n\nallow contains x if {\n\tx := concat(\",\", 42)\n}\n", 4, "rego_type_error"},
		{"unsafe var", "unsafe.rego", "package clawpatrol\n\ndeny contains y if {\n\tinput.a == 1\n}\n", 3, "rego_unsafe_var_error"},
		{"rego v0 syntax", "old.rego", "package clawpatrol\n\nallow[x] { x := 1 }\n", 3, "rego_parse_error"},
		{"http.send is not allowed", "net.rego", "package clawpatrol\n\nallow contains \"x\" if {\n\thttp.send({\"method\": \"GET\", \"url\": \"http://x\"}).status_code == 200\n}\n", 4, "unsafe built-in function"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writePolicy(t, map[string]string{c.file: c.text})
			_, err := Load([]string{dir}, nil)
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a CompileError", err, err)
			}
			p := ce.Problems[0]
			if !strings.HasSuffix(p.File, c.file) || p.Row != c.row || !strings.Contains(p.Message, c.message) {
				t.Errorf("problem %s, want %s:%d: %s...", p, c.file, c.row, c.message)
			}
			if !strings.Contains(err.Error(), c.file+":"+strconv.Itoa(c.row)+":") {
				t.Errorf("error text %q has no file:line", err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(nil, nil); err == nil {
		t.Error("no paths: no error")
	}
	if _, err := Load([]string{t.TempDir()}, nil); err == nil || !strings.Contains(err.Error(), "no .rego files") {
		t.Errorf("empty dir: %v", err)
	}
	dir := writePolicy(t, map[string]string{"p.rego": "package clawpatrl\nallow contains \"x\" if true\n"})
	if _, err := Load([]string{dir}, nil); err == nil || !strings.Contains(err.Error(), "package clawpatrol") {
		t.Errorf("wrong package: %v", err)
	}
	dir = writePolicy(t, map[string]string{"p_test.rego": "package clawpatrol\ntest_x if true\n"})
	if _, err := Load([]string{dir}, nil); err == nil {
		t.Error("only tests: no error")
	}
}

func TestEvaluationErrorDenies(t *testing.T) {
	cases := map[string]string{
		"conflicting complete rule": `
mode := "a" if input.protocol == "tcp"
mode := "b" if input.protocol == "tcp"
allow contains mode if true`,
		"built-in called with the wrong type at run time": `
allow contains "x" if to_number(input.protocol) > 1`,
		"built-in error inside a deny rule": `
deny contains "x" if contains(input.destination.port, "4")
allow contains "y" if true`,
		"conflicting object keys": `
obj[k] := v if { some k, v in {"a": 1} }
obj[k] := v if { some k, v in {"a": 2} }
allow contains "x" if obj.a`,
	}
	for name, policy := range cases {
		t.Run(name, func(t *testing.T) {
			e := load(t, nil, map[string]string{"p.rego": "package clawpatrol\n" + policy})
			d := e.Decide(context.Background(), &action.Action{Protocol: "tcp", TCP: &action.TCP{}, Destination: action.Destination{Port: 443}})
			if d.Verdict != action.Deny || d.Rule != "policy-error" || d.Error == "" {
				t.Fatalf("got %+v, want a policy-error deny", d)
			}
			if d.Reason() != "the policy could not be evaluated" || strings.Contains(d.Reason(), "error") {
				t.Errorf("the agent would see %q", d.Reason())
			}
		})
	}
}

func TestTruncatedAndUnparseable(t *testing.T) {
	e := load(t, nil, map[string]string{"p.rego": `package clawpatrol

allow contains "by-path" if input.http.path == "/plain"
allow contains "by-body" if {
	input.http.path == "/body"
	contains(input.http.body, "ok")
}
allow contains "by-json" if input.http.json.ok == true
deny contains "body-says-no" if contains(input.http.body, "no")
allow contains "sql-read" if {
	input.sql.dialect == "postgres"
	every v in input.sql.verbs { v == "select" }
}
approve contains "sql-by-text" if {
	input.sql.dialect == "mysql"
	startswith(input.sql.statement, "SELECT")
}
allow contains "sql-by-dialect" if input.sql.dialect == "clickhouse"
`})
	httpReq := func(path, body string, truncated bool) *action.Action {
		return &action.Action{Protocol: "http", HTTP: &action.HTTP{Method: "POST", Path: path, Body: body, Size: 1 << 30, Truncated: truncated}}
	}
	sqlReq := func(dialect string, truncated, unparseable bool) *action.Action {
		return &action.Action{Protocol: "sql", SQL: &action.SQL{Dialect: dialect, Statement: "SELECT 1", Verbs: []string{"select"}, Truncated: truncated, Unparseable: unparseable}}
	}
	jsonReq := &action.Action{Protocol: "http", HTTP: &action.HTTP{Method: "POST", Path: "/x", Body: `{"ok":true}`, JSON: map[string]any{"ok": true}, Truncated: true}}
	cases := []struct {
		name    string
		a       *action.Action
		verdict action.Verdict
		rule    string
	}{
		{"rule not reading the body stands", httpReq("/plain", "ok", true), action.Allow, "by-path"},
		{"allow resting on a truncated body denies", httpReq("/body", "ok", true), action.Deny, "truncated-input"},
		{"allow resting on truncated json denies", jsonReq, action.Deny, "truncated-input"},
		{"the same body whole is allowed", httpReq("/body", "ok", false), action.Allow, "by-body"},
		{"a deny from a truncated body stands", httpReq("/body", "no", true), action.Deny, "body-says-no"},
		{"sql facts of an unparseable statement", sqlReq("postgres", false, true), action.Deny, "unparseable-input"},
		{"sql facts of a truncated statement", sqlReq("postgres", true, false), action.Deny, "truncated-input"},
		{"statement text of a truncated statement", sqlReq("mysql", true, false), action.Deny, "truncated-input"},
		{"statement text of an unparseable statement is whole", sqlReq("mysql", false, true), action.Approve, "sql-by-text"},
		{"rule not reading sql facts stands", sqlReq("clickhouse", true, true), action.Allow, "sql-by-dialect"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := e.Decide(context.Background(), c.a)
			if d.Verdict != c.verdict || d.Rule != c.rule {
				t.Errorf("got %s %s (%s), want %s %s", d.Verdict, d.Rule, d.Error, c.verdict, c.rule)
			}
		})
	}
}

func TestDigest(t *testing.T) {
	a := load(t, nil, map[string]string{"a.rego": "package clawpatrol\nallow contains \"x\" if true\n"})
	b := load(t, nil, map[string]string{"a.rego": "package clawpatrol\nallow contains \"x\" if true\n"})
	c := load(t, nil, map[string]string{"a.rego": "package clawpatrol\nallow contains \"y\" if true\n"})
	if a.Digest() != b.Digest() || a.Digest() == c.Digest() || !strings.HasPrefix(a.Digest(), "sha256:") {
		t.Errorf("digests %s %s %s", a.Digest(), b.Digest(), c.Digest())
	}
}

func TestConcurrentDecisions(t *testing.T) {
	e, err := Load([]string{"../examples"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 200 {
				a := benchAction()
				if i%2 == 1 {
					a.HTTP.Method = "DELETE"
				}
				d := e.Decide(context.Background(), a)
				if want := map[bool]string{false: "github-read", true: "github-delete"}[i%2 == 1]; d.Rule != want {
					t.Errorf("got %s, want %s", d.Rule, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestRuleCache(t *testing.T) {
	c := getRuleCache()
	defer putRuleCache(c)
	r1, r2 := ast.MustParseRef("data.a.b"), ast.MustParseRef("data.a.c")
	c.Put(r1, ast.MustParseTerm("1"))
	c.Put(r2, nil)
	if v, undef := c.Get(r1); v == nil || undef {
		t.Errorf("get r1: %v %v", v, undef)
	}
	if v, undef := c.Get(r2); v != nil || !undef {
		t.Errorf("get r2: %v %v", v, undef)
	}
	c.Push()
	if v, undef := c.Get(r1); v != nil || undef {
		t.Errorf("r1 seen through a pushed frame: %v %v", v, undef)
	}
	c.Put(r1, ast.MustParseTerm("2"))
	if len(c.Keys()) != 1 {
		t.Errorf("keys %v", c.Keys())
	}
	c.Pop()
	if v, _ := c.Get(r1); v == nil || v.String() != "1" {
		t.Errorf("after pop r1 = %v", v)
	}
}

func TestCancelledContextDenies(t *testing.T) {
	e := load(t, nil, map[string]string{"p.rego": "package clawpatrol\nallow contains \"x\" if input.protocol == \"tcp\"\n"})
	ctx, cancel := context.WithCancel(context.Background())
	a := &action.Action{Protocol: "tcp", TCP: &action.TCP{}}
	if d := e.Decide(ctx, a); d.Verdict != action.Allow {
		t.Fatalf("live context: %+v", d)
	}
	cancel()
	if d := e.Decide(ctx, a); d.Verdict != action.Deny || d.Rule != "policy-error" {
		t.Errorf("cancelled context: %+v", d)
	}
}
