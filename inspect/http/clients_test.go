package http

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Real clients against Handle: each trusts only the harness CA (as the
// agent's bundle makes it) and reaches "api.test" at the harness listener.

func need(t *testing.T, cmd string) string {
	t.Helper()
	p, err := exec.LookPath(cmd)
	if err != nil {
		t.Fatalf("%s is required for this test (apt-get install %s): %v", cmd, filepath.Base(cmd), err)
	}
	return p
}

func TestCurl(t *testing.T) {
	curl := need(t, "curl")
	payload := make([]byte, 5<<20)
	rand.Read(payload)
	sum := sha256.Sum256(payload)
	file := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, version := range []string{"--http1.1", "--http2"} {
		t.Run(version, func(t *testing.T) {
			h := newHarness(t, upstreamH2)
			run := func(args ...string) string {
				t.Helper()
				base := []string{"-sS", version, "--cacert", h.ca.Path(),
					"--connect-to", "api.test:443:" + h.addr(), "-w", "\n%{http_code} %{http_version}"}
				out, err := exec.Command(curl, append(base, args...)...).CombinedOutput()
				if err != nil {
					t.Fatalf("curl %v: %v\n%s", args, err, out)
				}
				return string(out)
			}
			wantVersion := map[string]string{"--http1.1": "1.1", "--http2": "2"}[version]
			out := run("https://api.test/hello")
			if !strings.HasPrefix(out, "hello HTTP/") || !strings.HasSuffix(out, "200 "+wantVersion) {
				t.Errorf("allowed: %q", out)
			}
			out = run("-D", "-", "https://api.test/deny/curl")
			if !strings.Contains(strings.ToLower(out), "x-clawpatrol-rule: no-deny-paths") ||
				!strings.Contains(out, `clawpatrol: denied by rule "no-deny-paths"`) || !strings.HasSuffix(out, "403 "+wantVersion) {
				t.Errorf("denied: %q", out)
			}
			// curl sends "Expect: 100-continue" with a large HTTP/1.1 body.
			out = run("--data-binary", "@"+file, "https://api.test/echo")
			if want := fmt.Sprintf("%d %s\n200 %s", len(payload), hex.EncodeToString(sum[:]), wantVersion); out != want {
				t.Errorf("5 MiB POST: %q, want %q", out, want)
			}
			if h.up.saw("/deny/curl") {
				t.Error("the upstream saw a denied request")
			}
		})
	}
}

// pythonClient is urllib with ssl.create_default_context() and the strict
// verification Python 3.13 turns on by default; the connection goes to the
// harness whatever the URL's host.
const pythonClient = `
import http.client, json, socket, ssl, sys, urllib.error, urllib.request
cafile, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(cafile=cafile)
ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN

class Conn(http.client.HTTPSConnection):
    def connect(self):
        s = socket.create_connection(("127.0.0.1", port))
        self.sock = self._context.wrap_socket(s, server_hostname=self.host)

class Handler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(Conn, req, context=ctx)

opener = urllib.request.build_opener(Handler())
print(opener.open("https://api.test/hello").read().decode())
body = json.dumps({"q": "x"}).encode()
print(opener.open(urllib.request.Request("https://api.test/echo", data=body, headers={"Content-Type": "application/json"})).read().decode())
try:
    opener.open("https://api.test/deny/python")
    print("not denied")
except urllib.error.HTTPError as e:
    print(e.code, e.headers["X-Clawpatrol-Rule"], e.read().decode().strip())
`

func TestPythonURLLib(t *testing.T) {
	python := need(t, "/usr/bin/python3")
	h := newHarness(t, upstreamH2)
	port := h.addr()[strings.LastIndex(h.addr(), ":")+1:]
	out, err := exec.Command(python, "-c", pythonClient, h.ca.Path(), port).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "hello HTTP/1.1 host=api.test") ||
		!strings.HasPrefix(lines[1], "10 ") ||
		lines[2] != `403 no-deny-paths clawpatrol: denied by rule "no-deny-paths": paths under /deny are refused` {
		t.Errorf("python said:\n%s", out)
	}
	a := h.await("/echo", 1)[0].a.HTTP
	if m, ok := a.JSON.(map[string]any); !ok || m["q"] != "x" {
		t.Errorf("policy saw json %#v", a.JSON)
	}
}
