package e2e

// HTTP and HTTPS inspection through `clawpatrol run`, with real clients
// (curl, python3, node, git, a gRPC and a WebSocket client in Go) against
// servers this process starts. The upstreams chain to a test CA that only
// clawpatrol trusts (upstream_ca); the agent trusts clawpatrol's CA.

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// httpPolicy allows HTTP to any endpoint and TLS to pinned.test, and
// denies paths under /deny, the gRPC health List call and blocked.test.
const httpPolicy = `package clawpatrol

allow contains "endpoint-http" if {
	input.protocol == "http"
	is_string(input.endpoint)
}

deny contains {"rule": "no-deny-paths", "reason": "paths under /deny are refused"} if {
	startswith(input.http.path, "/deny")
}

deny contains {"rule": "no-grpc-list", "reason": "listing services is refused"} if {
	input.http.path == "/grpc.health.v1.Health/List"
}

allow contains "pinned-tls" if {
	input.protocol == "tls"
	input.tls.sni == "pinned.test"
}

deny contains {"rule": "blocked-tls", "reason": "blocked.test is off limits"} if {
	input.tls.sni == "blocked.test"
}
`

// endpointYAML is one endpoint mapping hosts to a local upstream; ca is the
// upstream_ca file ("" for none).
func endpointYAML(name, host, protocol string, port int, addr, ca string) string {
	s := fmt.Sprintf("  %s:\n    hosts: [%s]\n    protocol: %s\n    upstream: %s\n", name, host, protocol, addr)
	if port != 0 {
		s += fmt.Sprintf("    ports: [%d]\n", port)
	}
	if ca != "" {
		s += "    upstream_ca: " + ca + "\n"
	}
	return s
}

// httpEnv is an env whose config has httpPolicy, the given endpoints and
// extra top-level YAML; p, when set, is written as upstreamCA.
func httpEnv(t *testing.T, p *testPKI, endpoints, extra string) *env {
	e := newEnv(t)
	if p != nil {
		e.write(upstreamCA, string(p.pem))
	}
	e.write("policy.rego", httpPolicy)
	e.config("policy:\n  paths: [policy.rego]\nendpoints:\n" + endpoints + extra)
	return e
}

// apiEnv maps api.test:443 to a fresh HTTPS upstream.
func apiEnv(t *testing.T) (*env, *upstream) {
	p := newPKI(t)
	up := newUpstream()
	addr := serveHTTPS(t, p, up, "api.test")
	return httpEnv(t, p, endpointYAML("api", "api.test", "https", 0, addr, upstreamCA), ""), up
}

// decisions maps each audited action's summary to "verdict rule".
func (e *env) decisions() map[string]string {
	out := map[string]string{}
	for _, a := range e.actions() {
		d, _ := a["decision"].(map[string]any)
		summary, _ := a["summary"].(string)
		out[summary] = fmt.Sprint(d["verdict"], " ", d["rule"])
	}
	return out
}

// wantDecision fails unless the audit log decided summary as want.
func (e *env) wantDecision(summary, want string) {
	e.t.Helper()
	if got, ok := e.decisions()[summary]; !ok || got != want {
		e.t.Errorf("audit: %q decided %q, want %q\nall: %v", summary, got, want, e.decisions())
	}
}

const denyBody = `clawpatrol: denied by rule "no-deny-paths": paths under /deny are refused`

func TestCurlThroughInterception(t *testing.T) {
	e, up := apiEnv(t)
	payload := make([]byte, 5<<20)
	rand.Read(payload)
	sum := sha256.Sum256(payload)
	e.write("payload", string(payload))
	for _, version := range []string{"--http1.1", "--http2"} {
		script := `set -e
v=` + version + `
curl -sS $v -w ' %{http_code} %{http_version}\n' https://api.test/hello
curl -sS $v -D - https://api.test/deny/curl
curl -sS $v -w ' %{http_code}\n' --data-binary @payload https://api.test/upload
curl -sS $v -w ' %{http_code} connects=%{num_connects}\n' https://api.test/deny/first https://api.test/after-deny
`
		if version == "--http1.1" {
			// curl sends "Expect: 100-continue" with a large HTTP/1.1 body:
			// the refusal comes before the body. (Over HTTP/2, curl 7.88 may
			// drop a response that arrives while it still uploads, even
			// from a plain Go server.)
			script += "curl -sS $v -w ' %{http_code}\\n' --data-binary @payload https://api.test/deny/upload\n"
		}
		r := e.sh(script)
		v := map[string]string{"--http1.1": "1.1", "--http2": "2"}[version]
		proto := map[string]string{"--http1.1": "HTTP/1.1", "--http2": "HTTP/2.0"}[version]
		for _, want := range []string{
			"hello " + proto + " host=api.test path=/hello\n 200 " + v + "\n",
			"HTTP/" + v + " 403",
			denyBody,
			fmt.Sprintf("%d %s\n 200\n", len(payload), hex.EncodeToString(sum[:])),
			// The connection outlives a deny.
			denyBody + "\n 403 connects=1\nhello " + proto + " host=api.test path=/after-deny\n 200 connects=0\n",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s: want %q in the agent's output:\n%v", version, want, r)
			}
		}
		if version == "--http1.1" && !strings.HasSuffix(r.stdout, denyBody+"\n 403\n") {
			t.Errorf("want the large denied upload refused:\n%v", r)
		}
		if !strings.Contains(strings.ToLower(r.stdout), "x-clawpatrol-rule: no-deny-paths") {
			t.Errorf("%s: want the rule header:\n%v", version, r)
		}
	}
	if up.sawPrefix("/deny") {
		t.Error("the upstream saw a denied request")
	}
	for _, got := range up.saw("/upload") {
		if len(got.body) != len(payload) || got.body != string(payload) {
			t.Errorf("upload arrived as %d bytes, want the %d sent", len(got.body), len(payload))
		}
	}
	if n := len(up.saw("/upload")); n != 2 {
		t.Errorf("upstream saw %d uploads, want 2", n)
	}
	e.wantDecision("GET /deny/curl", "deny no-deny-paths")
	e.wantDecision("POST /upload", "allow endpoint-http")
}

// pythonStrict is urllib through ssl.create_default_context() with the
// strict verification Python 3.13 turns on by default.
const pythonStrict = `
import ssl, urllib.error, urllib.request
ctx = ssl.create_default_context()
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))
print(opener.open("https://api.test/hello", timeout=30).read().decode(), end="")
try:
    opener.open("https://api.test/deny/python", timeout=30)
    print("not denied")
except urllib.error.HTTPError as e:
    print(e.code, e.headers["X-Clawpatrol-Rule"], e.read().decode().strip())
`

func TestPythonStrictTLS(t *testing.T) {
	e, up := apiEnv(t)
	r := e.run("python3", "-c", pythonStrict)
	want := "hello HTTP/1.1 host=api.test path=/hello\n403 no-deny-paths " + denyBody + "\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("want\n%s\ngot\n%v", want, r)
	}
	if up.sawPrefix("/deny") {
		t.Error("the upstream saw a denied request")
	}
}

const nodeFetch = `
const ok = await fetch("https://api.test/hello");
console.log(ok.status, (await ok.text()).trim());
const no = await fetch("https://api.test/deny/node");
console.log(no.status, no.headers.get("x-clawpatrol-rule"), (await no.text()).trim());
`

func TestNodeFetch(t *testing.T) {
	e, up := apiEnv(t)
	r := e.run("node", "--input-type=module", "-e", nodeFetch)
	want := "200 hello HTTP/1.1 host=api.test path=/hello\n403 no-deny-paths " + denyBody + "\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("want\n%s\ngot\n%v", want, r)
	}
	if up.sawPrefix("/deny") {
		t.Error("the upstream saw a denied request")
	}
}

// agentGit is the agent's git setup: an identity, no prompts.
const agentGit = `set -e
export GIT_TERMINAL_PROMPT=0 GIT_AUTHOR_NAME=agent GIT_AUTHOR_EMAIL=agent@example.test GIT_COMMITTER_NAME=agent GIT_COMMITTER_EMAIL=agent@example.test
cd "$HOME"
`

// TestGitOverHTTPS: clone and push through interception against git
// http-backend; a push the policy refuses leaves the server's repository
// as it was.
func TestGitOverHTTPS(t *testing.T) {
	p := newPKI(t)
	repos := gitRepos(t, "app.git", "deny")
	addr := serveHTTPS(t, p, gitBackend(repos), "git.test")
	e := httpEnv(t, p, endpointYAML("git", "git.test", "https", 0, addr, upstreamCA), "")
	before := git(t, filepath.Join(repos, "deny"), "rev-parse", "main")
	r := e.sh(agentGit + `
git clone -q https://git.test/app.git app
cd app
echo change >> README
git commit -qam change
git push -q origin main
git rev-parse HEAD
cd ..
git clone -q https://git.test/deny denied 2>&1 || echo "clone refused: $?"
`)
	if r.code != 0 {
		t.Fatalf("agent: %v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	pushed := git(t, filepath.Join(repos, "app.git"), "rev-parse", "main")
	if len(lines) < 2 || lines[0] != pushed {
		t.Errorf("server's main is %s; the agent pushed:\n%v", pushed, r)
	}
	if !strings.Contains(r.stdout, "remote: "+denyBody+"\n") || !strings.Contains(r.stdout, "returned error: 403") || !strings.Contains(r.stdout, "clone refused: 128") {
		t.Errorf("want the denied clone refused with a 403 and its body:\n%v", r)
	}
	if after := git(t, filepath.Join(repos, "deny"), "rev-parse", "main"); after != before {
		t.Errorf("the denied repository changed")
	}
	e.wantDecision("GET /deny/info/refs", "deny no-deny-paths")
	e.wantDecision("POST /app.git/git-receive-pack", "allow endpoint-http")
}

func TestGRPCUnaryAndStreaming(t *testing.T) {
	client := testClient(t, "grpcclient")
	p := newPKI(t)
	ln := listen(t)
	health := &healthServer{}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{p.leaf(t, "grpc.test")}})))
	healthpb.RegisterHealthServer(srv, health)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	e := httpEnv(t, p, endpointYAML("grpc", "grpc.test", "https", 0, ln.Addr().String(), upstreamCA), "")
	r := e.run(client, "grpc.test:443")
	want := "check SERVING\nwatch SERVING NOT_SERVING SERVING end\nlist ERROR PermissionDenied: "
	// gRPC clients report the 403 as PermissionDenied, with its body.
	if r.code != 0 || !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "403 (Forbidden)") ||
		!strings.Contains(r.stdout, `clawpatrol: denied by rule \"no-grpc-list\": listing services is refused`) {
		t.Fatalf("want\n%s...403 and the refusal...\ngot\n%v", want, r)
	}
	health.mu.Lock()
	defer health.mu.Unlock()
	if health.lists != 0 {
		t.Error("the server got the denied List call")
	}
	e.wantDecision("POST /grpc.health.v1.Health/Watch", "allow endpoint-http")
	e.wantDecision("POST /grpc.health.v1.Health/List", "deny no-grpc-list")
}

func TestWebSocket(t *testing.T) {
	client := testClient(t, "wsclient")
	p := newPKI(t)
	var mu sync.Mutex
	var seen []string
	up := websocket.Upgrader{}
	addr := serveHTTPS(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			c.WriteMessage(kind, append([]byte("echo: "), msg...))
		}
	}), "ws.test")
	e := httpEnv(t, p, endpointYAML("ws", "ws.test", "https", 0, addr, upstreamCA), "")
	r := e.run(client, "wss://ws.test/chat", "wss://ws.test/deny/ws")
	want := `wss://ws.test/chat "echo: ping 1" "echo: ping 2"` + "\n" +
		"wss://ws.test/deny/ws refused 403 no-deny-paths " + denyBody + "\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("want\n%s\ngot\n%v", want, r)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, []string{"/chat"}) {
		t.Errorf("server saw %v, want only /chat", seen)
	}
	acts := e.actions()
	var upgrade string
	for _, a := range acts {
		if a["summary"] == "GET /chat" {
			in, _ := a["input"].(map[string]any)
			h, _ := in["http"].(map[string]any)
			upgrade, _ = h["upgrade"].(string)
		}
	}
	if upgrade != "websocket" {
		t.Errorf("the upgrade request's action has upgrade %q, want websocket: %v", upgrade, acts)
	}
}

// TestServerSentEvents: the first event reaches the agent while the stream
// is still open; the agent's own request (after it saw that event) is what
// lets the server finish.
func TestServerSentEvents(t *testing.T) {
	e, up := apiEnv(t)
	r := e.sh(`
curl -sSN https://api.test/events | while IFS= read -r line; do
	echo "event: $line"
	if [ "$line" = "data: first" ]; then curl -sS https://api.test/release; fi
done
curl -sS -w ' %{http_code}\n' https://api.test/deny/events
`)
	want := "event: data: first\nreleased\nevent: \nevent: data: last\nevent: \n" + denyBody + "\n 403\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("want\n%s\ngot\n%v", want, r)
	}
	if up.sawPrefix("/deny") {
		t.Error("the upstream saw a denied request")
	}
}

// TestHostAndServerNameMismatch: a Host header or TLS server name that
// disagrees with the name the agent resolved is refused before any
// upstream sees it.
func TestHostAndServerNameMismatch(t *testing.T) {
	e, up := apiEnv(t)
	r := e.sh(`
curl -sS --http1.1 -H 'Host: other.test' -w ' %{http_code}\n' https://api.test/host-h1
curl -sS --http2 -H 'Host: other.test' -w ' %{http_code}\n' https://api.test/host-h2
curl -sS --connect-to other.test:443:api.test:443 -w ' %{http_code}\n' https://other.test/sni
`)
	if r.code != 0 || strings.Count(r.stdout, `clawpatrol: denied by rule "host-mismatch"`) != 3 || strings.Count(r.stdout, " 403\n") != 3 {
		t.Fatalf("want three host-mismatch refusals:\n%v", r)
	}
	if n := up.count(); n != 0 {
		t.Errorf("the upstream saw %d requests", n)
	}
	for _, s := range []string{"GET /host-h1", "GET /host-h2", "GET /sni"} {
		e.wantDecision(s, "deny host-mismatch")
	}
}

// smuggle sends ambiguous requests over raw TLS sockets; each must get one
// 400 and a closed connection, never a response from the server.
const smuggle = `
import socket, ssl
ctx = ssl.create_default_context()
attacks = [
    ("cl-te", b"POST /smuggle-clte HTTP/1.1\r\nHost: api.test\r\nContent-Length: 41\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n"),
    ("obs-fold", b"GET /smuggle-fold HTTP/1.1\r\nHost: api.test\r\nX-Folded: a\r\n b\r\n\r\n"),
    ("bad-chunk", b"POST /smuggle-chunk HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
]
for name, req in attacks:
    s = ctx.wrap_socket(socket.create_connection(("api.test", 443), timeout=30), server_hostname="api.test")
    s.sendall(req)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    rule = [l for l in data.split(b"\r\n") if l.lower().startswith(b"x-clawpatrol-rule:")]
    print(name, data.split(b"\r\n")[0].decode(), data.count(b"HTTP/1.1 "), rule[0].decode() if rule else "no rule")
`

func TestRequestSmugglingRejected(t *testing.T) {
	e, up := apiEnv(t)
	r := e.run("python3", "-c", smuggle)
	want := "cl-te HTTP/1.1 400 Bad Request 1 X-Clawpatrol-Rule: http-malformed\n" +
		"obs-fold HTTP/1.1 400 Bad Request 1 X-Clawpatrol-Rule: http-malformed\n" +
		"bad-chunk HTTP/1.1 400 Bad Request 1 X-Clawpatrol-Rule: http-malformed\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("want\n%s\ngot\n%v", want, r)
	}
	if n := up.count(); n != 0 {
		t.Errorf("the upstream saw %d requests", n)
	}
}

// TestCleartextHTTPOnOtherPort: HTTP on a port other than 80 is inspected
// like any other, request by request.
func TestCleartextHTTPOnOtherPort(t *testing.T) {
	up := newUpstream()
	addr := serveCleartext(t, up)
	e := httpEnv(t, nil, endpointYAML("web", "web.test", "http", 8080, addr, ""), "")
	r := e.sh(`
curl -sS -w ' %{http_code}\n' http://web.test:8080/page
curl -sS -D - http://web.test:8080/deny/page
python3 -c 'import urllib.request; print(urllib.request.urlopen("http://web.test:8080/py", timeout=30).read().decode(), end="")'
curl -sS -w ' %{http_code}\n' http://unknown.test:8080/
`)
	for _, want := range []string{"hello HTTP/1.1 host=web.test:8080 path=/page\n 200\n", "X-Clawpatrol-Rule: no-deny-paths", denyBody, "hello HTTP/1.1 host=web.test:8080 path=/py\n",
		// No endpoint: still HTTP, refused request by request, not reset.
		`clawpatrol: denied by rule "policy.default": no rule allows this action; policy.default is deny` + "\n 403\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q in the agent's output:\n%v", want, r)
		}
	}
	if up.sawPrefix("/deny") {
		t.Error("the upstream saw a denied request")
	}
	e.wantDecision("GET /page", "allow endpoint-http")
	e.wantDecision("GET /deny/page", "deny no-deny-paths")
	for _, a := range e.actions() {
		if a["protocol"] != "http" {
			t.Errorf("want http actions only, got %v", a)
		}
	}
}

// TestPassthroughSplicedUntouched: a passthrough host is decided by one tls
// action and spliced: the agent verifies the upstream's own certificate.
func TestPassthroughSplicedUntouched(t *testing.T) {
	p := newPKI(t)
	up := newUpstream()
	addr := serveHTTPS(t, p, up, "pinned.test", "blocked.test")
	// The agent trusts the upstream's CA itself: only a spliced
	// connection verifies.
	e := httpEnv(t, p, endpointYAML("pinned", "pinned.test", "https", 0, addr, "")+
		endpointYAML("blocked", "blocked.test", "https", 0, addr, ""),
		"passthrough: [pinned.test, blocked.test]\n")
	r := e.sh(`
curl -sS --cacert ` + upstreamCA + ` -w ' %{http_code}\n' https://pinned.test/pinned
curl -sS -o /dev/null https://pinned.test/default-bundle; echo "default bundle: $?"
curl -sS --cacert ` + upstreamCA + ` https://blocked.test/blocked 2>/dev/null; echo "blocked: $?"
`)
	// 60: the upstream's certificate is not from clawpatrol's CA, so the
	// agent's bundle cannot verify it; 35: the handshake got an alert.
	want := "hello HTTP/2.0 host=pinned.test path=/pinned\n 200\ndefault bundle: 60\nblocked: 35\n"
	if r.stdout != want {
		t.Fatalf("want\n%s\ngot\n%v", want, r)
	}
	if up.sawPrefix("/blocked") || up.sawPrefix("/default-bundle") {
		t.Error("the upstream saw a request it should not have")
	}
	if got := up.helloNames(); !slices.Equal(got, []string{"pinned.test", "pinned.test"}) {
		t.Errorf("the upstream saw TLS hellos for %v, want pinned.test twice", got)
	}
	var tlsActs []string
	for _, a := range e.actions() {
		in, _ := a["input"].(map[string]any)
		tl, _ := in["tls"].(map[string]any)
		d, _ := a["decision"].(map[string]any)
		tlsActs = append(tlsActs, fmt.Sprint(a["protocol"], " ", tl["sni"], " ", d["verdict"], " ", d["rule"]))
	}
	want2 := []string{"tls pinned.test allow pinned-tls", "tls pinned.test allow pinned-tls", "tls blocked.test deny blocked-tls"}
	if !slices.Equal(tlsActs, want2) {
		t.Errorf("actions %q, want %q", tlsActs, want2)
	}
}

// TestUpstreamFailuresAre502: an allowed request whose upstream cannot be
// verified or reached gets a 502 saying which, and an audit record.
func TestUpstreamFailuresAre502(t *testing.T) {
	p := newPKI(t)
	up := newUpstream()
	addr := serveHTTPS(t, p, up, "untrusted.test")
	closed := listen(t)
	closedAddr := closed.Addr().String()
	closed.Close()
	e := httpEnv(t, nil, endpointYAML("untrusted", "untrusted.test", "https", 0, addr, "")+
		endpointYAML("down", "down.test", "https", 0, closedAddr, ""), "")
	r := e.sh(`
curl -sS -D - https://untrusted.test/cert | tr -d '\r' | grep -i -e x-clawpatrol-error -e clawpatrol:
curl -sS -D - https://down.test/dial | tr -d '\r' | grep -i -e x-clawpatrol-error -e clawpatrol:
`)
	for _, want := range []string{
		"x-clawpatrol-error: upstream-certificate\nclawpatrol: upstream certificate invalid for untrusted.test:443: ",
		"x-clawpatrol-error: upstream-unreachable\nclawpatrol: upstream unreachable: down.test:443: ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q:\n%v", want, r)
		}
	}
	if up.count() != 0 {
		t.Error("a request reached the unverified upstream")
	}
	for _, a := range e.actions() {
		if a["upstream_status"] != nil || a["error"] == nil || !strings.HasPrefix(a["error"].(string), "upstream ") {
			t.Errorf("want an audit record with the upstream error, got %v", a)
		}
	}
	if n := len(e.actions()); n != 2 {
		t.Errorf("want 2 audit records, got %d", n)
	}
}
