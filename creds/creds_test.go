package creds

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
)

func load(t *testing.T, yaml string, env map[string]string) *Store {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "c.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(context.Background(), cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSources(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tok"), []byte("file-secret-value\n"), 0o600)
	s := load(t, `
credentials:
  a: {from: {env: A_TOKEN}, placeholder: {env: A_TOKEN, value: ghp_}}
  b: {from: {file: `+filepath.Join(dir, "tok")+`}}
  c: {from: {command: [sh, -c, "echo command-secret-value"]}}
`, map[string]string{"A_TOKEN": "ghp_realrealrealrealrealrealrealreal1234"})
	for name, want := range map[string]string{"a": "ghp_realrealrealrealrealrealrealreal1234", "b": "file-secret-value", "c": "command-secret-value"} {
		c, _ := s.Get(name)
		if c.Secret != want {
			t.Errorf("%s: secret %q, want %q", name, c.Secret, want)
		}
		if c.Placeholder == c.Secret || len(c.Placeholder) < 24 {
			t.Errorf("%s: placeholder %q", name, c.Placeholder)
		}
	}
	a, _ := s.Get("a")
	if !strings.HasPrefix(a.Placeholder, "ghp_") || len(a.Placeholder) != len(a.Secret) {
		t.Errorf("placeholder %q is not shaped like %q", a.Placeholder, a.Secret)
	}
	if got := s.FileSources(); len(got) != 1 || got[0] != filepath.Join(dir, "tok") {
		t.Errorf("file sources %v", got)
	}
}

func TestMissingSecretsAreErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"credentials:\n  a: {from: {env: NOPE}}\n", "credential a: env NOPE: the variable is not set"},
		{"credentials:\n  a: {from: {env: EMPTY}}\n", "credential a: env EMPTY: the secret is empty"},
		{"credentials:\n  a: {from: {file: /nonexistent/x}}\n", "credential a: file /nonexistent/x"},
		{"credentials:\n  a: {from: {command: [false]}}\n", "credential a: command false: exit status 1"},
	} {
		cfg, err := config.Parse("c.yaml", []byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Load(context.Background(), cfg, func(k string) (string, bool) { return "", k == "EMPTY" })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
}

func TestAgentEnv(t *testing.T) {
	s := load(t, `
credentials:
  gh: {from: {env: GH_REAL}, placeholder: {env: GITHUB_TOKEN, value: ghp_}}
env:
  keep: [NPM_TOKEN]
`, map[string]string{"GH_REAL": "s3cr3t-value-xyz"})
	env := []string{"PATH=/bin", "GH_REAL=s3cr3t-value-xyz", "COPY=prefix-s3cr3t-value-xyz", "GITHUB_TOKEN=old",
		"OPENAI_API_KEY=sk-x", "NPM_TOKEN=keepme", "AWS_SECRET_ACCESS_KEY=a", "HOME=/h"}
	out, removed := s.AgentEnv(env, []string{"NPM_TOKEN"})
	gh, _ := s.Get("gh")
	want := []string{"PATH=/bin", "NPM_TOKEN=keepme", "HOME=/h", "GITHUB_TOKEN=" + gh.Placeholder}
	if strings.Join(out, "\n") != strings.Join(want, "\n") {
		t.Fatalf("env:\n%s\nwant:\n%s", strings.Join(out, "\n"), strings.Join(want, "\n"))
	}
	if strings.Join(removed, ",") != "AWS_SECRET_ACCESS_KEY,COPY,GH_REAL,OPENAI_API_KEY" {
		t.Fatalf("removed %v", removed)
	}
	// Without keep, NPM_TOKEN goes too: env.keep changes behaviour.
	if _, removed := s.AgentEnv(env, nil); !strings.Contains(strings.Join(removed, ","), "NPM_TOKEN") {
		t.Fatalf("NPM_TOKEN kept without env.keep: %v", removed)
	}
}

func TestInjectHTTP(t *testing.T) {
	s := load(t, `
credentials:
  bearer: {from: {env: S1}}
  custom: {from: {env: S2}, inject: {header: X-Api-Key, value: "key={secret}"}}
  basic:  {from: {env: S3}, inject: {basic: {username: x-access-token}}}
  query:  {from: {env: S4}, inject: {query: access_token}}
`, map[string]string{"S1": "secret-one", "S2": "secret-two", "S3": "secret-three", "S4": "secret-four"})
	req := func(auth string) *http.Request {
		r, _ := http.NewRequest("GET", "https://api.example.com/x?a=1", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return r
	}
	bearer, _ := s.Get("bearer")
	r := req("Bearer " + bearer.Placeholder)
	bearer.InjectHTTP(r)
	if got := r.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer secret-one" {
		t.Errorf("bearer replaced: %v", got)
	}
	r = req("")
	bearer.InjectHTTP(r)
	if r.Header.Get("Authorization") != "Bearer secret-one" {
		t.Errorf("bearer added: %v", r.Header)
	}
	custom, _ := s.Get("custom")
	r = req("")
	custom.InjectHTTP(r)
	if r.Header.Get("X-Api-Key") != "key=secret-two" {
		t.Errorf("custom header: %v", r.Header)
	}
	basic, _ := s.Get("basic")
	r = req("Basic " + base64.StdEncoding.EncodeToString([]byte("someone:"+basic.Placeholder)))
	basic.InjectHTTP(r)
	if u, p, _ := r.BasicAuth(); u != "x-access-token" || p != "secret-three" {
		t.Errorf("basic: %q %q", u, p)
	}
	query, _ := s.Get("query")
	r = req("")
	query.InjectHTTP(r)
	if r.URL.Query().Get("access_token") != "secret-four" || r.URL.Query().Get("a") != "1" {
		t.Errorf("query: %v", r.URL)
	}
}

func TestParseInjectionErrors(t *testing.T) {
	for _, m := range []map[string]any{
		{"header": "A", "query": "b"},
		{"header": "A", "value": "no template"},
		{"colour": "red"},
		{"basic": "x"},
	} {
		if _, err := ParseInjection(m); err == nil {
			t.Errorf("%v: accepted", m)
		}
	}
}

func TestLeak(t *testing.T) {
	s := load(t, "credentials:\n  gh: {from: {env: S}}\n", map[string]string{"S": "real-secret-value"})
	gh, _ := s.Get("gh")
	for _, h := range []*action.HTTP{
		{Path: "/x", Headers: map[string][]string{"x-steal": {gh.Placeholder}}},
		{Path: "/x", Query: map[string][]string{"q": {"a" + gh.Placeholder}}},
		{Path: "/x", Body: `{"t":"` + gh.Placeholder + `"}`},
		{Path: "/x", Headers: map[string][]string{"authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+gh.Placeholder))}}},
	} {
		if c, ok := s.Leak(&action.Action{HTTP: h, Credential: ""}); !ok || c.Name != "gh" {
			t.Errorf("leak not found in %+v", h)
		}
		if _, ok := s.Leak(&action.Action{HTTP: h, Credential: "gh"}); ok {
			t.Errorf("the credential's own endpoint is not a leak: %+v", h)
		}
	}
}

func TestRedactingReader(t *testing.T) {
	s := load(t, "credentials:\n  gh: {from: {env: S}}\n", map[string]string{"S": "real-secret-value"})
	gh, _ := s.Get("gh")
	in := "echo: real-secret-value and " + gh.Placeholder + " end"
	// One byte at a time: secrets split across every possible boundary.
	b, err := io.ReadAll(s.RedactingReader(iotest.OneByteReader(strings.NewReader(in))))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "echo: <redacted:gh> and <redacted:gh> end" {
		t.Fatalf("got %q", b)
	}
	if got := s.Redact("x real-secret-value y"); got != "x <redacted:gh> y" {
		t.Fatalf("Redact: %q", got)
	}
}

func TestRedactAction(t *testing.T) {
	s := load(t, "credentials:\n  gh: {from: {env: S}}\n", map[string]string{"S": "real-secret-value"})
	gh, _ := s.Get("gh")
	a := &action.Action{Protocol: "http", HTTP: &action.HTTP{
		Method: "POST", Path: "/p/" + gh.Placeholder,
		Headers: map[string][]string{"authorization": {"Bearer real-secret-value"}, "accept": {"*/*"}},
		Body:    `{"password":"hunter2","note":"real-secret-value"}`,
		JSON:    map[string]any{"password": "hunter2", "note": "real-secret-value"},
	}}
	for _, mode := range []string{BodiesRedacted, BodiesMetadata, BodiesFull} {
		r := s.RedactAction(a, mode)
		if r.HTTP.Headers["authorization"][0] != Redacted || r.HTTP.Headers["accept"][0] != "*/*" {
			t.Errorf("%s: headers %v", mode, r.HTTP.Headers)
		}
		if r.HTTP.Path != "/p/<redacted:gh>" {
			t.Errorf("%s: path %q", mode, r.HTTP.Path)
		}
		switch mode {
		case BodiesMetadata:
			if r.HTTP.Body != "" || r.HTTP.JSON != nil {
				t.Errorf("metadata kept a body: %q", r.HTTP.Body)
			}
		case BodiesRedacted:
			if strings.Contains(r.HTTP.Body, "hunter2") || !strings.Contains(r.HTTP.Body, "<redacted:gh>") {
				t.Errorf("redacted body %q", r.HTTP.Body)
			}
		case BodiesFull:
			if !strings.Contains(r.HTTP.Body, "hunter2") || strings.Contains(r.HTTP.Body, "real-secret") {
				t.Errorf("full body %q", r.HTTP.Body)
			}
		}
	}
	if a.HTTP.Headers["authorization"][0] != "Bearer real-secret-value" {
		t.Fatal("the live action was changed")
	}
}

func TestRedactKubernetesObject(t *testing.T) {
	a := &action.Action{Protocol: "k8s", K8s: &action.K8s{Verb: "create", Resource: "secrets",
		Object: map[string]any{"kind": "Secret", "data": map[string]any{"db": "c2VjcmV0"}, "metadata": map[string]any{"name": "x"}}}}
	var s *Store
	if o := s.RedactAction(a, BodiesRedacted).K8s.Object.(map[string]any); o["data"].(map[string]any)["db"] != Redacted {
		t.Errorf("redacted: %v", o)
	}
	if o := s.RedactAction(a, BodiesMetadata).K8s.Object; o != nil {
		t.Errorf("metadata kept the object: %v", o)
	}
	if o := s.RedactAction(a, BodiesFull).K8s.Object.(map[string]any); o["data"].(map[string]any)["db"] != "c2VjcmV0" {
		t.Errorf("full: %v", o)
	}
}
