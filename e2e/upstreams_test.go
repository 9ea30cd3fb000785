package e2e

// The servers the HTTP tests put behind names: a test CA and TLS servers
// chained to it, a recording upstream, git http-backend, a gRPC health
// service, and the Go test clients under testdata.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// testPKI is the CA the upstream servers chain to.
type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "clawpatrol e2e upstream CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testPKI{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf is a server certificate for names, chained to the test CA.
func (p *testPKI) leaf(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// upstreamCA is the test CA's file in each env: relative to the config
// (upstream_ca) and to the agent's working directory (curl --cacert).
const upstreamCA = "upstream-ca.pem"

// listen opens a random local port, closed with the test.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveHTTPS serves h over TLS (HTTP/2 and HTTP/1.1) with a certificate
// for names from p, and returns its address.
func serveHTTPS(t *testing.T, p *testPKI, h http.Handler, names ...string) string {
	t.Helper()
	ln := listen(t)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	cfg := &tls.Config{Certificates: []tls.Certificate{p.leaf(t, names...)}}
	if u, ok := h.(*upstream); ok {
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			u.mu.Lock()
			u.hellos = append(u.hellos, hello.ServerName)
			u.mu.Unlock()
			return nil, nil
		}
	}
	srv := &http.Server{
		Handler:           h,
		Protocols:         &protos,
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(testWriter{t}, "upstream: ", 0),
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// testWriter sends a server's error log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// serveCleartext serves h without TLS and returns its address.
func serveCleartext(t *testing.T, h http.Handler) string {
	t.Helper()
	ln := listen(t)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// upstream is what one test server saw, and its handler:
//
//	/upload   reads the body, answers "<bytes> <sha256>"
//	/echo     answers the Authorization header it got and the body
//	/events   an event stream: "first" at once, "last" after /release
//	/release  lets /events finish
//	anything else: "hello <proto> host=<Host> path=<path>"
type upstream struct {
	mu       sync.Mutex
	requests []seenRequest
	hellos   []string // TLS server names, when served by serveHTTPS

	release     chan struct{}
	releaseOnce sync.Once
}

type seenRequest struct {
	method, path, query, auth, body string
}

func newUpstream() *upstream { return &upstream{release: make(chan struct{})} }

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.requests = append(u.requests, seenRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), string(body)})
	u.mu.Unlock()
	switch r.URL.Path {
	case "/upload":
		sum := sha256.Sum256(body)
		fmt.Fprintf(w, "%d %s\n", len(body), hex.EncodeToString(sum[:]))
	case "/echo":
		fmt.Fprintf(w, "authorization=%s body=%s\n", r.Header.Get("Authorization"), body)
	case "/events":
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-u.release:
			fmt.Fprint(w, "data: last\n\n")
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
			// A bound for a broken stream, not a timing assertion: the
			// agent never saw the first event, so it never released.
			fmt.Fprint(w, "data: never released\n\n")
		}
	case "/release":
		u.releaseOnce.Do(func() { close(u.release) })
		fmt.Fprintln(w, "released")
	default:
		fmt.Fprintf(w, "hello %s host=%s path=%s\n", r.Proto, r.Host, r.URL.Path)
	}
}

// saw returns the requests the server got for path.
func (u *upstream) saw(path string) []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []seenRequest
	for _, r := range u.requests {
		if r.path == path {
			out = append(out, r)
		}
	}
	return out
}

// count is how many requests the server got.
func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.requests)
}

// helloNames are the server names of the TLS handshakes the server saw.
func (u *upstream) helloNames() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.hellos)
}

// sawPrefix reports whether the server got any request under prefix.
func (u *upstream) sawPrefix(prefix string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.ContainsFunc(u.requests, func(r seenRequest) bool { return strings.HasPrefix(r.path, prefix) })
}

// gitEnv is the environment for git on the host side: no user config.
var gitEnv = []string{"PATH=" + agentPath, "HOME=/nonexistent", "GIT_CONFIG_NOSYSTEM=1",
	"GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.test",
	"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.test"}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = dir, gitEnv
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// gitRepos makes bare repositories under a fresh project root, each with
// one commit on main and pushes over HTTP enabled, and returns the root.
func gitRepos(t *testing.T, names ...string) string {
	t.Helper()
	root := t.TempDir()
	work := filepath.Join(root, "seed")
	git(t, root, "init", "-q", "-b", "main", work)
	os.WriteFile(filepath.Join(work, "README"), []byte("seed\n"), 0o644)
	git(t, work, "add", "README")
	git(t, work, "commit", "-q", "-m", "seed")
	for _, name := range names {
		bare := filepath.Join(root, name)
		git(t, root, "init", "-q", "--bare", "-b", "main", bare)
		git(t, bare, "config", "http.receivepack", "true")
		git(t, work, "push", "-q", bare, "main")
	}
	return root
}

// gitBackend is git http-backend as a CGI handler serving root.
func gitBackend(root string) http.Handler {
	return &cgi.Handler{
		Path: "/usr/lib/git-core/git-http-backend",
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=/nonexistent"},
	}
}

// healthServer answers Check, streams three statuses from Watch, and would
// answer List if the policy let it through.
type healthServer struct {
	healthpb.UnimplementedHealthServer
	mu    sync.Mutex
	lists int
}

func (h *healthServer) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, s healthpb.Health_WatchServer) error {
	for _, st := range []healthpb.HealthCheckResponse_ServingStatus{
		healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_SERVING,
	} {
		if err := s.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
			return err
		}
	}
	return nil
}

func (h *healthServer) List(context.Context, *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	h.mu.Lock()
	h.lists++
	h.mu.Unlock()
	return &healthpb.HealthListResponse{}, nil
}

var (
	clientsOnce sync.Once
	clientsDir  string
	clientsErr  error
)

// testClient builds the Go test clients under testdata once and returns
// the path of one, readable by the agent user.
func testClient(t *testing.T, name string) string {
	t.Helper()
	clientsOnce.Do(func() {
		clientsDir = filepath.Join(root, "clients")
		os.Mkdir(clientsDir, 0o755)
		out, err := exec.Command("go", "build", "-buildvcs=false", "-o", clientsDir+"/", "./testdata/grpcclient", "./testdata/wsclient").CombinedOutput()
		if err != nil {
			clientsErr = fmt.Errorf("build test clients: %v\n%s", err, out)
		}
	})
	if clientsErr != nil {
		t.Fatal(clientsErr)
	}
	return filepath.Join(clientsDir, name)
}
