package rego

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/clawpatrol/clawpatrol/action"
)

// viaJSON is the input as OPA would get it from the action's JSON.
func viaJSON(t *testing.T, a *action.Action) ast.Value {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ast.ValueFromReader(bytesReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestInputMatchesJSON(t *testing.T) {
	full := &action.Action{
		ID: "01JD", Time: time.Date(2026, 11, 24, 18, 0, 0, 123456789, time.FixedZone("x", 3600)), Session: "01JE",
		Agent:    &action.Agent{Command: []string{"claude", "-p", "fix it"}, PID: 4242, Exe: "/usr/bin/node"},
		Protocol: "http", Endpoint: "github", Credential: "github",
		Destination: action.Destination{Host: "api.github.com", Port: 443, IP: "140.82.112.6", TLS: true},
		HTTP: &action.HTTP{
			Method: "DELETE", Scheme: "https", Host: "api.github.com", Path: "/repos/acme/app/issues/1",
			Query:   map[string][]string{"state": {"open"}, "empty": {}, "nil": nil},
			Headers: map[string][]string{"accept": {"application/json"}, "authorization": {"<redacted>"}},
			Body:    `{"a":[1,2.5,"x",null,true,{"b":{}}],"big":12345678901234567890}`,
			JSON:    map[string]any{"a": []any{1.0, 2.5, "x", nil, true, map[string]any{"b": map[string]any{}}}, "big": json.Number("12345678901234567890")},
			Size:    1 << 40, Truncated: true, Upgrade: "websocket",
		},
	}
	cases := map[string]*action.Action{
		"full":                                   full,
		"empty":                                  {},
		"zero destination and nil agent command": {Protocol: "tcp", Agent: &action.Agent{}, TCP: &action.TCP{}},
		"empty agent command":                    {Protocol: "tcp", Agent: &action.Agent{Command: []string{}}, Destination: action.Destination{TLS: true}},
		"invalid utf-8": {Protocol: "http", HTTP: &action.HTTP{Method: "POST", Path: "/\xff", Body: "a\xffb\xc3\x28c\xe2\x82",
			Headers: map[string][]string{"x-\xfe": {"\xfd"}}}},
		"http json scalar": {Protocol: "http", HTTP: &action.HTTP{Method: "GET", Path: "/", JSON: "just a string"}},
		"http json empty":  {Protocol: "http", HTTP: &action.HTTP{Method: "GET", Path: "/", JSON: map[string]any{}}},
		"sql": {Protocol: "sql", SQL: &action.SQL{
			Dialect: "postgres", Database: "app", User: "app", Statement: "SELECT 1; WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
			Statements: []action.Statement{{Verb: "select", Text: "SELECT 1"}, {Verb: "delete", Tables: []string{"t"}, Functions: []string{}, Text: "..."}},
			Verbs:      []string{"select", "delete"}, Tables: []string{"t"}, QualifiedTables: []string{"public.t"}, Functions: []string{"now"},
			Unparseable: true, Truncated: true,
		}},
		"sql minimal": {Protocol: "sql", SQL: &action.SQL{Dialect: "mysql", Verbs: []string{}}},
		"k8s": {Protocol: "k8s", K8s: &action.K8s{
			Verb: "create", Group: "", Version: "v1", Resource: "pods", Subresource: "exec", Namespace: "default", Name: "web-0",
			Command: []string{"sh"}, Container: "web", Params: map[string][]string{"stdin": {"true"}},
			Object: map[string]any{"kind": "Pod", "spec": map[string]any{"replicas": json.Number("3")}}, Discovery: true,
		}},
		"k8s minimal": {Protocol: "k8s", K8s: &action.K8s{Verb: "get"}},
		"tls":         {Protocol: "tls", TLS: &action.TLS{SNI: "pinned.example.com", ALPN: []string{"h2", "http/1.1"}}},
		"tls no alpn": {Protocol: "tls", TLS: &action.TLS{ALPN: []string{}}},
		"udp":         {Protocol: "udp", Destination: action.Destination{IP: "198.18.0.1", Port: 5353}, UDP: &action.UDP{Size: 1200}},
		"big numbers": {Protocol: "udp", Agent: &action.Agent{PID: 1 << 30}, Destination: action.Destination{Port: -2}, UDP: &action.UDP{Size: 513}},
	}
	for name, a := range cases {
		t.Run(name, func(t *testing.T) {
			got, want := Input(a), viaJSON(t, a)
			if got.Compare(want) != 0 {
				t.Errorf("Input:\n got  %v\n want %v", got, want)
			}
		})
	}
}

func TestInputPruned(t *testing.T) {
	n := &need{keys: map[string]*need{}}
	n.add([]string{"http", "method"})
	n.add([]string{"endpoint"})
	n.add([]string{"sql"})
	n.add([]string{"sql", "verbs"}) // below something already whole: no change
	a := &action.Action{Protocol: "http", Endpoint: "x", Agent: &action.Agent{PID: 1},
		HTTP: &action.HTTP{Method: "GET", Path: "/p", Size: 3}}
	var b builder
	got := b.action(a, 0, n)
	want := ast.MustParseTerm(`{"endpoint": "x", "http": {"method": "GET"}}`).Value
	if got.Compare(want) != 0 {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, ok := n.keys["sql"]; !ok || n.keys["sql"] != nil {
		t.Errorf("sql need = %v, want all of it", n.keys["sql"])
	}
}

func TestInputHidesTruncatedFacts(t *testing.T) {
	a := &action.Action{Protocol: "sql", SQL: &action.SQL{Dialect: "postgres", Statement: "SELECT", Verbs: []string{"select"}, Truncated: true},
		HTTP: &action.HTTP{Method: "POST", Path: "/", Body: "x", JSON: "x", Truncated: true}}
	var b builder
	got := b.action(a, hideHTTPBody|hideSQLFacts|hideSQLText, nil)
	want := ast.MustParseTerm(`{"protocol": "sql",
		"http": {"method": "POST", "path": "/", "size": 0, "truncated": true},
		"sql": {"dialect": "postgres", "unparseable": false, "truncated": true}}`).Value
	if got.Compare(want) != 0 {
		t.Errorf("got %v, want %v", got, want)
	}
}
