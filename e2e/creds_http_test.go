package e2e

// Credentials over HTTP through `clawpatrol run`: the agent holds only
// placeholders; the real secret reaches an endpoint's server after an
// allow, never anything else, and never comes back in clear.

import (
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// noSecretsIn fails for every file under paths (files or directories)
// that holds one of secrets, in clear or base64 (as in a Basic header).
func noSecretsIn(t *testing.T, secrets []string, paths ...string) {
	t.Helper()
	var needles []string
	for _, s := range secrets {
		needles = append(needles, s, base64.StdEncoding.EncodeToString([]byte(s)), base64.StdEncoding.EncodeToString([]byte("x-access-token:"+s)))
	}
	files := 0
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			files++
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, n := range needles {
				if strings.Contains(string(b), n) {
					t.Errorf("%s holds %q", path, n)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < len(paths) {
		t.Fatalf("want files to search under %v, found %d", paths, files)
	}
}

// runRecorded runs a script as the agent with extra environment for
// clawpatrol, recording fixtures into e's "recorded" directory.
func (e *env) runRecorded(vars []string, script string) (result, string) {
	e.t.Helper()
	dir := filepath.Join(e.dir, "recorded")
	cmd := e.command("run", "-c", e.cfg, "--audit", e.auditPath(), "--record", dir, "--", "/bin/sh", "-c", script)
	cmd.Env = append(cmd.Env, vars...)
	return e.exec(cmd), dir
}

// placeholderOf reads "NAME=value" from the agent's output.
func placeholderOf(t *testing.T, out, name string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, name+"="); ok && v != "" {
			return v
		}
	}
	t.Fatalf("the agent printed no %s:\n%s", name, out)
	return ""
}

// apiCredEnv is httpEnv with the credential api: read from API_REAL_KEY,
// a placeholder shaped sk-... in API_TOKEN, injected as a Bearer token.
func apiCredEnv(t *testing.T, p *testPKI, endpoints string) *env {
	return httpEnv(t, p, endpoints, `credentials:
  api:
    from: {env: API_REAL_KEY}
    placeholder: {env: API_TOKEN, value: sk-}
`)
}

// TestSecretInjectedAfterAllowOnly: an HTTPS echo server sees the real
// secret on allowed requests (placeholder replaced, or header added), a
// denied request never reaches it, the placeholder sent anywhere else is
// refused as placeholder-leak, and the echoed secret comes back redacted.
func TestSecretInjectedAfterAllowOnly(t *testing.T) {
	const secret = "sk-REALsecretVALUE0123456789abcdefghijkl"
	p := newPKI(t)
	api, other, plain := newUpstream(), newUpstream(), newUpstream()
	echoHeader := func(u *upstream) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Echo-Authorization", r.Header.Get("Authorization"))
			u.ServeHTTP(w, r)
		})
	}
	apiAddr := serveHTTPS(t, p, echoHeader(api), "api.test")
	otherAddr := serveHTTPS(t, p, other, "other.test")
	plainAddr := serveCleartext(t, plain)
	e := apiCredEnv(t, p, endpointYAML("api", "api.test", "https", 0, apiAddr, upstreamCA)+"    ports: [443, 8080]\n    credential: api\n"+
		endpointYAML("other", "other.test", "https", 0, otherAddr, upstreamCA)+
		endpointYAML("plain", "plain.test", "http", 0, plainAddr, ""))
	r, recorded := e.runRecorded([]string{"API_REAL_KEY=" + secret}, `
echo "API_TOKEN=$API_TOKEN"
curl -sS -D - -H "Authorization: Bearer $API_TOKEN" https://api.test/echo
curl -sS https://api.test/echo
curl -sS -w ' %{http_code}\n' -H "Authorization: Bearer $API_TOKEN" https://api.test/deny/echo
curl -sS -w ' %{http_code}\n' http://api.test:8080/cleartext
curl -sS -w ' %{http_code}\n' -H "Authorization: Bearer $API_TOKEN" https://other.test/header
curl -sS -w ' %{http_code}\n' "https://other.test/query?key=$API_TOKEN"
curl -sS -w ' %{http_code}\n' --data "note=$API_TOKEN" https://other.test/body
curl -sS -w ' %{http_code}\n' "https://other.test/path/$API_TOKEN"
curl -sS -w ' %{http_code}\n' -u "user:$API_TOKEN" http://plain.test/basic
curl -sS -w ' %{http_code}\n' "http://nowhere.test/query?key=$API_TOKEN"
`)
	ph := placeholderOf(t, r.stdout, "API_TOKEN")
	if !strings.HasPrefix(ph, "sk-") || ph == secret {
		t.Fatalf("placeholder %q", ph)
	}
	if strings.Contains(r.stdout, secret) || strings.Contains(r.stderr, secret) {
		t.Errorf("the agent saw the secret:\n%v", r)
	}
	redacted := "authorization=Bearer <redacted:api> body=\n"
	if strings.Count(r.stdout, redacted) != 2 || !strings.Contains(strings.ToLower(r.stdout), "x-echo-authorization: bearer <redacted:api>") {
		t.Errorf("want the echoed secret redacted twice, in the body and header:\n%v", r)
	}
	if want := denyBody + "\n 403\n"; !strings.Contains(r.stdout, want) {
		t.Errorf("want the denied request refused:\n%v", r)
	}
	// The endpoint is https: its secret never goes out in clear text.
	if want := `clawpatrol: denied by rule "credential": credential api is only sent over TLS (endpoint api is https)` + "\n 403\n"; !strings.Contains(r.stdout, want) {
		t.Errorf("want %q:\n%v", want, r)
	}
	leak := `clawpatrol: denied by rule "placeholder-leak": the placeholder of credential api may only be sent to its own endpoints` + "\n 403\n"
	if n := strings.Count(r.stdout, leak); n != 6 {
		t.Errorf("want 6 placeholder-leak refusals, got %d:\n%v", n, r)
	}
	got := api.saw("/echo")
	if len(got) != 2 || got[0].auth != "Bearer "+secret || got[1].auth != "Bearer "+secret {
		t.Errorf("the echo server saw %+v, want the real secret twice", got)
	}
	if api.sawPrefix("/deny") || api.sawPrefix("/cleartext") {
		t.Error("the echo server saw a refused request")
	}
	if n := other.count() + plain.count(); n != 0 {
		t.Errorf("servers without the credential saw %d requests", n)
	}
	for _, s := range []string{"GET /header", "GET /query", "POST /body", "GET /path/<redacted:api>", "GET /basic"} {
		e.wantDecision(s, "deny placeholder-leak")
	}
	var creds []string
	for _, a := range e.actions() {
		if a["endpoint"] == "api" {
			creds = append(creds, fmt.Sprint(a["summary"], " ", a["credential"]))
		}
	}
	if strings.Join(creds, ",") != "GET /echo api,GET /echo api,GET /deny/echo api,GET /cleartext api" {
		t.Errorf("want the credential named on api's actions, got %q", creds)
	}
	noSecretsIn(t, []string{secret, ph}, e.auditPath(), recorded)
}

// TestEchoedSecretRedacted: however an upstream echoes the injected secret
// (header, body, gzip body, trailer, over HTTP/1.1 and HTTP/2) the agent
// gets it redacted; a body in a coding clawpatrol cannot read is withheld.
func TestEchoedSecretRedacted(t *testing.T) {
	const secret = "sk-REALsecretVALUE0123456789abcdefghijkl"
	p := newPKI(t)
	addr := serveHTTPS(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/gzip": // sent compressed even when not asked to
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			fmt.Fprintf(zw, "gzip %s accept-encoding=%s\n", auth, r.Header.Get("Accept-Encoding"))
			zw.Close()
		case "/trailer":
			w.Header().Set("Trailer", "X-Echo")
			fmt.Fprintln(w, "trailer follows")
			w.Header().Set("X-Echo", auth)
		case "/brotli": // not really brotli: clawpatrol cannot know
			w.Header().Set("Content-Encoding", "br")
			fmt.Fprintf(w, "br %s\n", auth)
		case "/head":
			w.Header().Set("X-Echo", auth)
			w.Header().Set("Content-Length", "1234")
		}
	}), "api.test")
	e := apiCredEnv(t, p, endpointYAML("api", "api.test", "https", 0, addr, upstreamCA)+"    credential: api\n")
	r, recorded := e.runRecorded([]string{"API_REAL_KEY=" + secret}, `
curl -sS --compressed https://api.test/gzip
curl -sS --http2 -D - https://api.test/trailer | tr -d '\r' | grep -i -e echo -e follows
curl -sS --http1.1 -D - https://api.test/trailer | tr -d '\r' | grep -i -e echo -e follows
curl -sS -w ' %{http_code}\n' https://api.test/brotli
curl -sS -I https://api.test/head | tr -d '\r' | grep -i -e echo -e content-length | sort
`)
	want := "gzip Bearer <redacted:api> accept-encoding=identity\n" +
		"trailer: X-Echo\ntrailer follows\nx-echo: Bearer <redacted:api>\n" +
		"Trailer: X-Echo\ntrailer follows\nX-Echo: Bearer <redacted:api>\n" +
		`clawpatrol: the upstream answered in content coding "br", which cannot be checked for an echoed secret; the response is withheld` + "\n 502\n" +
		"content-length: 1234\nx-echo: Bearer <redacted:api>\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("want\n%s\ngot\n%v", want, r)
	}
	noSecretsIn(t, []string{secret}, e.auditPath(), recorded)
}

// gitTokenGate lets a request through to next only with the real token as
// GitHub's git smart-HTTP wants it (Basic x-access-token:TOKEN), and keeps
// the Authorization header of each request it saw.
type gitTokenGate struct {
	token string
	next  http.Handler
	mu    sync.Mutex
	auths []string
}

func (g *gitTokenGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.auths = append(g.auths, r.Header.Get("Authorization"))
	g.mu.Unlock()
	if user, pass, ok := r.BasicAuth(); !ok || user != "x-access-token" || pass != g.token {
		w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
		http.Error(w, "the real token is required", http.StatusUnauthorized)
		return
	}
	g.next.ServeHTTP(w, r)
}

// TestGitPushWithPlaceholder: git clones and pushes over HTTPS holding
// only the placeholder (in the URL's userinfo) against a server that
// requires the real token.
func TestGitPushWithPlaceholder(t *testing.T) {
	const token = "ghp_REALgitTOKEN0123456789abcdefghijklmn"
	p := newPKI(t)
	repos := gitRepos(t, "app.git")
	gate := &gitTokenGate{token: token, next: gitBackend(repos)}
	addr := serveHTTPS(t, p, gate, "git.test")
	e := httpEnv(t, p, endpointYAML("git", "git.test", "https", 0, addr, upstreamCA)+"    credential: gh\n", `credentials:
  gh:
    from: {env: GH_REAL_TOKEN}
    inject: {basic: {username: x-access-token}}
    placeholder: {env: GITHUB_TOKEN, value: ghp_}
`)
	r, recorded := e.runRecorded([]string{"GH_REAL_TOKEN=" + token}, agentGit+`
echo "GITHUB_TOKEN=$GITHUB_TOKEN"
git clone -q "https://x-access-token:$GITHUB_TOKEN@git.test/app.git" app
cd app
echo change >> README
git commit -qam change
git push -q origin main
git rev-parse HEAD
`)
	ph := placeholderOf(t, r.stdout, "GITHUB_TOKEN")
	if r.code != 0 {
		t.Fatalf("agent: %v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if pushed := git(t, filepath.Join(repos, "app.git"), "rev-parse", "main"); lines[len(lines)-1] != pushed {
		t.Errorf("server's main is %s; the agent pushed:\n%v", pushed, r)
	}
	gate.mu.Lock()
	auths := gate.auths
	gate.mu.Unlock()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
	for _, a := range auths {
		if a != want {
			t.Errorf("the server saw Authorization %q, want the real token", a)
		}
	}
	if len(auths) < 4 { // clone: info/refs, upload-pack; push: info/refs, receive-pack
		t.Errorf("the server saw %d requests", len(auths))
	}
	e.wantDecision("POST /app.git/git-receive-pack", "allow endpoint-http")
	noSecretsIn(t, []string{token, ph}, e.auditPath(), recorded)
	if strings.Contains(r.stdout+r.stderr, token) {
		t.Errorf("the agent saw the token:\n%v", r)
	}
}
