package http

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/tlsca"
)

// testHost is the name the agent resolves in these tests; the upstream's
// certificate (from a test CA passed as upstream roots) is for it.
const testHost = "api.test"

// fakeGate allows everything except paths under /deny, and records every
// Decide and Finish.
type fakeGate struct {
	t        testing.TB
	mu       sync.Mutex
	decided  []*action.Action
	finished []finishCall
	done     map[*action.Action]int
	changed  chan struct{} // a token per Finish
}

type finishCall struct {
	a       *action.Action
	d       action.Decision
	o       action.Outcome
	decided bool
}

func newFakeGate(t testing.TB) *fakeGate {
	g := &fakeGate{t: t, done: map[*action.Action]int{}, changed: make(chan struct{}, 1024)}
	t.Cleanup(g.check)
	return g
}

func (g *fakeGate) Decide(_ context.Context, a *action.Action) action.Decision {
	g.mu.Lock()
	g.decided = append(g.decided, a)
	g.mu.Unlock()
	if a.HTTP != nil && strings.HasPrefix(a.HTTP.Path, "/deny") {
		return action.Denied("no-deny-paths", "paths under /deny are refused")
	}
	if a.TLS != nil && a.TLS.SNI == "denied.test" {
		return action.Denied("no-denied-test", "denied.test is refused")
	}
	return action.Decision{Verdict: action.Allow, Rule: "test-allow", Reasons: []action.Reason{{Rule: "test-allow", Reason: "tests allow it"}}}
}

func (g *fakeGate) Finish(a *action.Action, d action.Decision, o action.Outcome) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done[a]++
	isDecided := false
	for _, x := range g.decided {
		if x == a {
			isDecided = true
		}
	}
	g.finished = append(g.finished, finishCall{a: a, d: d, o: o, decided: isDecided})
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// waitForFinish blocks until some flow reports a Finish; callers loop on
// their condition, so no sleep decides anything. The watchdog only turns a
// hang into a failure.
func waitForFinish(h *harness) {
	select {
	case <-h.gate.changed:
	case <-time.After(time.Minute):
		h.t.Fatal("no Finish within a minute")
	}
}

// await returns the Finish calls for path once there are n of them: a
// flow reports its outcome after the agent has its response.
func (h *harness) await(path string, n int) []finishCall {
	for {
		if calls := h.gate.finishedFor(path); len(calls) >= n {
			return calls
		}
		waitForFinish(h)
	}
}

// check runs at cleanup, after every flow ended: each decided action was
// finished exactly once, and nothing was finished twice.
func (g *fakeGate) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range g.decided {
		if g.done[a] != 1 {
			g.t.Errorf("action %s %v decided, finished %d times", a.Protocol, a.HTTP, g.done[a])
		}
	}
	for a, n := range g.done {
		if n != 1 {
			g.t.Errorf("action %s finished %d times", a.Protocol, n)
		}
	}
}

// finishedFor returns the Finish calls of HTTP actions for a path.
func (g *fakeGate) finishedFor(path string) []finishCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []finishCall
	for _, f := range g.finished {
		if f.a.HTTP != nil && f.a.HTTP.Path == path {
			out = append(out, f)
		}
	}
	return out
}

func (g *fakeGate) finishedTLS() []finishCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []finishCall
	for _, f := range g.finished {
		if f.a.TLS != nil {
			out = append(out, f)
		}
	}
	return out
}

// testUpstream is the real server: TLS with a certificate from its own
// test CA, or cleartext.
type testUpstream struct {
	srv   *httptest.Server
	roots *x509.CertPool
	mu    sync.Mutex
	seen  []string // "METHOD /path" of every request that arrived
	conns int
	mux   *nethttp.ServeMux
}

func (u *testUpstream) saw(path string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.seen {
		if strings.HasSuffix(s, " "+path) {
			return true
		}
	}
	return false
}

func (u *testUpstream) connCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns
}

type upstreamKind int

const (
	upstreamH2    upstreamKind = iota // TLS, h2 and http/1.1
	upstreamH1                        // TLS, http/1.1 only
	upstreamPlain                     // cleartext HTTP/1.1 and h2c
)

func newTestUpstream(t testing.TB, kind upstreamKind) *testUpstream {
	t.Helper()
	u := &testUpstream{mux: nethttp.NewServeMux()}
	u.mux.HandleFunc("/hello", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		fmt.Fprintf(w, "hello %s host=%s ua=%q", r.Proto, r.Host, r.Header.Values("User-Agent"))
	})
	u.mux.HandleFunc("/echo", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			nethttp.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
	})
	var handler nethttp.Handler = nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Method+" "+r.URL.Path)
		u.mu.Unlock()
		u.mux.ServeHTTP(w, r)
	})
	u.srv = httptest.NewUnstartedServer(handler)
	if kind == upstreamPlain {
		var p nethttp.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true) // prior-knowledge h2c
		u.srv.Config.Protocols = &p
	}
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected here
	u.srv.Config.ConnState = func(_ net.Conn, s nethttp.ConnState) {
		if s == nethttp.StateNew {
			u.mu.Lock()
			u.conns++
			u.mu.Unlock()
		}
	}
	if kind == upstreamPlain {
		u.srv.Start()
	} else {
		ca, err := tlsca.Load(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.GetCertificate(testHost)
		if err != nil {
			t.Fatal(err)
		}
		u.roots = ca.Pool()
		u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
		u.srv.EnableHTTP2 = kind == upstreamH2
		u.srv.StartTLS()
	}
	t.Cleanup(u.srv.Close)
	return u
}

// harness is the agent's side: a listener whose connections are sniffed
// and handed to Handle (or HandlePassthrough), as the router will.
type harness struct {
	t           testing.TB
	up          *testUpstream
	ca          *tlsca.CA
	gate        *fakeGate
	ln          net.Listener
	target      upstream.Target
	opts        Options
	passthrough bool
	mu          sync.Mutex
	accepted    int
}

func newHarness(t testing.TB, kind upstreamKind, configure ...func(*harness)) *harness {
	t.Helper()
	up := newTestUpstream(t, kind)
	ca, err := tlsca.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, up: up, ca: ca, gate: newFakeGate(t)}
	port := 443
	if kind == upstreamPlain {
		port = 80
	}
	h.target = upstream.Target{Host: testHost, IP: netip.MustParseAddr("198.18.0.10"), Port: port,
		Endpoint: &config.Endpoint{Name: "api", Upstream: up.srv.Listener.Addr().String()}}
	h.opts = Options{Gate: h.gate, Dialer: upstream.NewDialer(), CA: ca, UpstreamRoots: up.roots, BodyLimit: 1 << 20}
	for _, c := range configure {
		c(h)
	}
	h.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := h.ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.accepted++
			h.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				hello, conn, err := Sniff(c, SniffTimeout)
				if err != nil {
					c.Close()
					return
				}
				if h.passthrough {
					HandlePassthrough(ctx, conn, h.target, hello, h.opts)
					return
				}
				Handle(ctx, conn, h.target, hello, h.opts)
			}()
		}
	}()
	// Flows end when the test's clients close; cancel catches the rest.
	t.Cleanup(func() {
		h.ln.Close()
		cancel()
		wg.Wait()
	})
	return h
}

func (h *harness) addr() string { return h.ln.Addr().String() }

func (h *harness) acceptedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.accepted
}

// client is a Go HTTP client whose every connection goes to the harness;
// it trusts only the harness CA, as an agent with the bundle does.
func (h *harness) client(h2 bool) *nethttp.Client {
	return h.clientTrusting(h.ca.Pool(), h2)
}

// clientTrusting is client with other roots (passthrough: the real server's).
func (h *harness) clientTrusting(roots *x509.CertPool, h2 bool) *nethttp.Client {
	tr := &nethttp.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", h.addr())
		},
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) nethttp.RoundTripper{}
	}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &nethttp.Client{Transport: tr}
}

// dialTLS opens a raw TLS connection to the harness, as an agent would.
func (h *harness) dialTLS(serverName string, alpn ...string) *tls.Conn {
	h.t.Helper()
	c, err := tls.Dial("tcp", h.addr(), &tls.Config{ServerName: serverName, RootCAs: h.ca.Pool(), NextProtos: alpn})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// get fetches url and reads the whole body.
func get(t testing.TB, c *nethttp.Client, url string) (*nethttp.Response, string) {
	t.Helper()
	req, err := nethttp.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, c, req)
}

// do sends req and reads the whole body.
func do(t testing.TB, c *nethttp.Client, req *nethttp.Request) (*nethttp.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, mustRead(t, resp.Body)
}

func mustRead(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
