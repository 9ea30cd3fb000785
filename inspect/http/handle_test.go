package http

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/websocket"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

// forEachProtocol runs f as an HTTP/1.1 and as an HTTP/2 subtest.
func forEachProtocol(t *testing.T, f func(t *testing.T, h2 bool)) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "h2"}[h2], func(t *testing.T) { f(t, h2) })
	}
}

func TestAllowedRequest(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, h2 bool) {
		proto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
		h := newHarness(t, upstreamH2)
		resp, body := get(t, h.client(h2), "https://api.test/hello?state=open&state=closed")
		if resp.StatusCode != 200 || resp.Proto != proto {
			t.Fatalf("got %s %d: %s", resp.Proto, resp.StatusCode, body)
		}
		// The upstream speaks the agent's protocol, sees the agent's
		// Host and User-Agent.
		want := fmt.Sprintf("hello %s host=api.test ua=[\"Go-http-client/", proto)
		if !strings.HasPrefix(body, want) {
			t.Errorf("upstream saw %q, want prefix %q", body, want)
		}
		calls := h.await("/hello", 1)
		if len(calls) != 1 {
			t.Fatalf("%d Finish calls for /hello", len(calls))
		}
		c := calls[0]
		a := c.a.HTTP
		if !c.decided || c.d.Verdict != action.Allow {
			t.Errorf("decision %+v decided=%v", c.d, c.decided)
		}
		if a.Method != "GET" || a.Scheme != "https" || a.Host != testHost || a.Path != "/hello" {
			t.Errorf("facts %+v", a)
		}
		if got := a.Query["state"]; len(got) != 2 || got[0] != "open" {
			t.Errorf("query %v", a.Query)
		}
		if _, ok := a.Headers["user-agent"]; !ok {
			t.Errorf("headers are not lower-cased: %v", a.Headers)
		}
		if c.a.Protocol != "http" || c.a.Endpoint != "api" || c.a.Destination.Host != testHost ||
			c.a.Destination.Port != 443 || !c.a.Destination.TLS || c.a.Destination.IP != "127.0.0.1" {
			t.Errorf("action %+v", c.a)
		}
		if c.o.UpstreamStatus != 200 || c.o.BytesDown != int64(len(body)) {
			t.Errorf("outcome %+v", c.o)
		}
	})
}

func TestDeniedRequestKeepsConnection(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, h2 bool) {
		h := newHarness(t, upstreamH2)
		c := h.client(h2)
		resp, err := c.Post("https://api.test/deny/this", "application/json", strings.NewReader(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		body := mustRead(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := resp.Header.Get("X-Clawpatrol-Rule"); got != "no-deny-paths" {
			t.Errorf("rule header %q", got)
		}
		if want := `clawpatrol: denied by rule "no-deny-paths": paths under /deny are refused` + "\n"; body != want {
			t.Errorf("body %q, want %q", body, want)
		}
		if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("content type %q", resp.Header.Get("Content-Type"))
		}
		if h.up.saw("/deny/this") {
			t.Error("the upstream saw a denied request")
		}
		calls := h.await("/deny/this", 1)
		if len(calls) != 1 || calls[0].a.HTTP.JSON == nil || calls[0].o.UpstreamStatus != 0 {
			t.Errorf("finish %+v", calls)
		}
		// The next request rides the same connection.
		resp, _ = get(t, c, "https://api.test/hello")
		if resp.StatusCode != 200 {
			t.Fatalf("after a deny: status %d", resp.StatusCode)
		}
		if n := h.acceptedCount(); n != 1 {
			t.Errorf("%d agent connections, want 1 (keep-alive)", n)
		}
		if n := h.up.connCount(); n != 1 {
			t.Errorf("%d upstream connections, want 1", n)
		}
	})
}

func TestH2Multiplexing(t *testing.T) {
	h := newHarness(t, upstreamH2)
	const n = 8
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	h.up.mux.HandleFunc("/wait", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, r.URL.Query().Get("i"))
	})
	// Release only once all n are inside the upstream at the same time:
	// they can only get there concurrently, over streams of one connection.
	go func() {
		for range n {
			<-arrived
		}
		close(release)
	}()
	c := h.client(true)
	// One request first, so the client has its h2 connection before the
	// concurrent ones (else it may race to dial several).
	get(t, c, "https://api.test/hello")
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(fmt.Sprintf("https://api.test/wait?i=%d", i))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.ProtoMajor != 2 || string(b) != fmt.Sprint(i) {
				errs <- fmt.Errorf("request %d: %s %q", i, resp.Proto, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if a, u := h.acceptedCount(), h.up.connCount(); a != 1 || u != 1 {
		t.Errorf("%d agent and %d upstream connections, want 1 and 1", a, u)
	}
}

func TestLargeBodyArrivesWhole(t *testing.T) {
	payload := make([]byte, 5<<20)
	rand.Read(payload)
	sum := sha256.Sum256(payload)
	want := fmt.Sprintf("%d %s", len(payload), hex.EncodeToString(sum[:]))
	for _, tc := range []struct {
		name    string
		h2      bool
		chunked bool
	}{{"http1", false, false}, {"http1-chunked", false, true}, {"h2", true, false}, {"h2-unknown-length", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, upstreamH2)
			var body io.Reader = bytes.NewReader(payload)
			if tc.chunked {
				body = io.MultiReader(body) // hides the length: chunked / no content-length
			}
			resp, err := h.client(tc.h2).Post("https://api.test/echo", "application/octet-stream", body)
			if err != nil {
				t.Fatal(err)
			}
			got := mustRead(t, resp.Body)
			resp.Body.Close()
			if got != want {
				t.Fatalf("upstream got %q, want %q", got, want)
			}
			calls := h.await("/echo", 1)
			if len(calls) != 1 {
				t.Fatalf("%d Finish calls", len(calls))
			}
			a := calls[0].a.HTTP
			if len(a.Body) != 1<<20 || a.Body != string(payload[:1<<20]) || !a.Truncated || a.JSON != nil {
				t.Errorf("policy saw %d bytes, truncated=%v", len(a.Body), a.Truncated)
			}
			if !tc.chunked && a.Size != int64(len(payload)) {
				t.Errorf("size %d", a.Size)
			}
			if calls[0].o.BytesUp != int64(len(payload)) {
				t.Errorf("bytes up %d", calls[0].o.BytesUp)
			}
		})
	}
}

func TestSmallJSONBody(t *testing.T) {
	h := newHarness(t, upstreamH2)
	resp, err := h.client(false).Post("https://api.test/echo", "application/json", strings.NewReader(`{"n": 12345678901234567890, "s": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	mustRead(t, resp.Body)
	resp.Body.Close()
	a := h.await("/echo", 1)[0].a.HTTP
	m, ok := a.JSON.(map[string]any)
	if !ok || fmt.Sprint(m["n"]) != "12345678901234567890" || m["s"] != "x" || a.Truncated || a.Size != 37 {
		t.Errorf("json %#v truncated %v size %d", a.JSON, a.Truncated, a.Size)
	}
}

func TestServerSentEventsStream(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, h2 bool) {
		h := newHarness(t, upstreamH2)
		release := make(chan struct{})
		h.up.mux.HandleFunc("/sse", func(w nethttp.ResponseWriter, r *nethttp.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: one\n\n")
			w.(nethttp.Flusher).Flush()
			<-release // the stream stays open until the client saw the first event
			io.WriteString(w, "data: two\n\n")
		})
		resp, err := h.client(h2).Get("https://api.test/sse")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil || line != "data: one\n" {
			t.Fatalf("first event %q %v", line, err)
		}
		close(release)
		rest := mustRead(t, br)
		if rest != "\ndata: two\n\n" {
			t.Errorf("rest %q", rest)
		}
	})
}

// grpcFrame is one length-prefixed gRPC message.
func grpcFrame(msg string) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

func TestGRPCTrailers(t *testing.T) {
	h := newHarness(t, upstreamH2)
	h.up.mux.HandleFunc("/pkg.Svc/Call", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.ProtoMajor != 2 || r.Header.Get("Te") != "trailers" {
			w.Header().Set(nethttp.TrailerPrefix+"Grpc-Status", "13")
			return
		}
		in, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(200)
		w.Write(grpcFrame("echo:" + string(in[5:])))
		w.Header().Set(nethttp.TrailerPrefix+"Grpc-Status", "0")
		w.Header().Set(nethttp.TrailerPrefix+"Grpc-Message", "fine")
	})
	req, _ := nethttp.NewRequest("POST", "https://api.test/pkg.Svc/Call", io.MultiReader(bytes.NewReader(grpcFrame("ping"))))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, body := do(t, h.client(true), req)
	if body[5:] != "echo:ping" {
		t.Errorf("body %q", body)
	}
	if resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "fine" {
		t.Errorf("trailers %v", resp.Trailer)
	}
	a := h.await("/pkg.Svc/Call", 1)[0].a.HTTP
	if a.Body != string(grpcFrame("ping")) || a.Truncated {
		t.Errorf("policy saw %q truncated=%v", a.Body, a.Truncated)
	}
}

func TestWebSocketEcho(t *testing.T) {
	h := newHarness(t, upstreamH2)
	h.up.mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) {
		for {
			var msg string
			if websocket.Message.Receive(ws, &msg) != nil || websocket.Message.Send(ws, msg) != nil {
				return
			}
		}
	}))
	conn := h.dialTLS(testHost, "http/1.1")
	cfg, err := websocket.NewConfig("wss://api.test/ws", "https://api.test/")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"hello", strings.Repeat("x", 100000)} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatal(err)
		}
		if got != msg {
			t.Fatalf("echo %d bytes, sent %d", len(got), len(msg))
		}
	}
	ws.Close()
	h.ln.Close()
	// The relay ends once both sides closed; Finish comes then.
	calls := h.await("/ws", 1)
	if calls[0].a.HTTP.Upgrade != "websocket" || calls[0].o.UpstreamStatus != 101 || calls[0].o.BytesDown < 100000 {
		t.Errorf("finish %+v %+v", calls[0].a.HTTP, calls[0].o)
	}
}

func TestDeniedWebSocket(t *testing.T) {
	h := newHarness(t, upstreamH2)
	conn := h.dialTLS(testHost, "http/1.1")
	cfg, _ := websocket.NewConfig("wss://api.test/deny/ws", "https://api.test/")
	if _, err := websocket.NewClient(cfg, conn); err == nil || !strings.Contains(err.Error(), "bad status") {
		t.Fatalf("denied upgrade: %v", err)
	}
	if h.up.saw("/deny/ws") {
		t.Error("the upstream saw a denied upgrade")
	}
}

func TestHostHeaderMismatch(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, h2 bool) {
		h := newHarness(t, upstreamH2)
		for _, host := range []string{"evil.test", "api.test:8443", "api.test.evil.test"} {
			req, _ := nethttp.NewRequest("GET", "https://api.test/mismatch", nil)
			req.Host = host
			resp, _ := do(t, h.client(h2), req)
			if resp.StatusCode != 403 || resp.Header.Get("X-Clawpatrol-Rule") != "host-mismatch" {
				t.Errorf("Host %s: %d %q", host, resp.StatusCode, resp.Header.Get("X-Clawpatrol-Rule"))
			}
		}
		if h.up.saw("/mismatch") {
			t.Error("the upstream saw a mismatched request")
		}
		for _, c := range h.await("/mismatch", 3) {
			if c.decided || c.d.Rule != "host-mismatch" {
				t.Errorf("finish %+v decided=%v", c.d, c.decided)
			}
		}
		// The Host with the default port, and the same name in
		// another case, are the verified destination.
		for _, host := range []string{"api.test:443", "API.test"} {
			req, _ := nethttp.NewRequest("GET", "https://api.test/hello", nil)
			req.Host = host
			resp, err := h.client(h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("Host %s: %d", host, resp.StatusCode)
			}
		}
	})
}

func TestSNIMismatch(t *testing.T) {
	h := newHarness(t, upstreamH2)
	conn := h.dialTLS("other.test", "http/1.1")
	io.WriteString(conn, "GET /fronted HTTP/1.1\r\nHost: other.test\r\n\r\n")
	resp, err := nethttp.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body := mustRead(t, resp.Body)
	if resp.StatusCode != 403 || resp.Header.Get("X-Clawpatrol-Rule") != "host-mismatch" || !strings.Contains(body, `"other.test"`) {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	if h.up.saw("/fronted") || h.up.connCount() != 0 {
		t.Error("a fronted flow reached the upstream")
	}
}

func TestSmugglingRejected(t *testing.T) {
	h := newHarness(t, upstreamH2)
	for _, tc := range []struct{ name, raw string }{
		{"cl-and-te", "POST /smuggle1 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX"},
		{"obs-fold", "GET /smuggle2 HTTP/1.1\r\nHost: api.test\r\nX-A: b\r\n c\r\n\r\n"},
		{"leading-space", "GET /smuggle3 HTTP/1.1\r\n Host: api.test\r\nHost: api.test\r\n\r\n"},
		{"space-before-colon", "POST /smuggle4 HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc"},
		{"differing-cl", "POST /smuggle5 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"},
		{"bad-chunk-size", "POST /smuggle6 HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"},
		{"chunk-size-overflow", "POST /smuggle7 HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n0\r\n\r\n"},
		{"te-not-chunked", "POST /smuggle8 HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"bare-lf", "GET /smuggle9 HTTP/1.1\nHost: api.test\n\n"},
		{"two-hosts", "GET /smuggle10 HTTP/1.1\r\nHost: api.test\r\nHost: evil.test\r\n\r\n"},
		{"missing-host", "GET /smuggle11 HTTP/1.1\r\n\r\n"},
		{"te-in-http10", "POST /smuggle12 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"bad-chunk-terminator", "POST /smuggle13 HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n"},
		{"dot-segment", "GET /smuggle14/../hello HTTP/1.1\r\nHost: api.test\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := h.dialTLS(testHost, "http/1.1")
			io.WriteString(conn, tc.raw)
			resp, err := nethttp.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body := mustRead(t, resp.Body)
			if resp.StatusCode != 400 || resp.Header.Get("X-Clawpatrol-Rule") != "http-malformed" {
				t.Errorf("%d %q: %s", resp.StatusCode, resp.Header.Get("X-Clawpatrol-Rule"), body)
			}
			t.Log(strings.TrimSpace(body))
		})
	}
	for i := 1; i <= 14; i++ {
		if p := fmt.Sprintf("/smuggle%d", i); h.up.saw(p) {
			t.Errorf("the upstream saw %s", p)
		}
	}
	if h.up.saw("/hello") {
		t.Error("the upstream saw the dot-segment request")
	}
}

func TestExpectContinue(t *testing.T) {
	h := newHarness(t, upstreamH2)
	conn := h.dialTLS(testHost, "http/1.1")
	br := bufio.NewReader(conn)
	io.WriteString(conn, "POST /echo HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("got %q %v", line, err)
	}
	br.ReadString('\n')
	io.WriteString(conn, "hello")
	resp, err := nethttp.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := mustRead(t, resp.Body); !strings.HasPrefix(body, "5 ") {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
}

func TestUpstreamCertificateInvalid(t *testing.T) {
	other := x509.NewCertPool() // trusts nothing: the test CA is unknown
	h := newHarness(t, upstreamH2, func(h *harness) { h.opts.UpstreamRoots = other })
	resp, body := get(t, h.client(false), "https://api.test/hello")
	if resp.StatusCode != 502 || resp.Header.Get("X-Clawpatrol-Error") != "upstream-certificate" ||
		!strings.Contains(body, "upstream certificate invalid for api.test:443") {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	c := h.await("/hello", 1)[0]
	if !c.decided || c.o.Error == "" {
		t.Errorf("finish %+v", c)
	}
	// A denied request still gets the policy's answer, not the 502.
	resp, _ = get(t, h.client(false), "https://api.test/deny/x")
	if resp.StatusCode != 403 {
		t.Errorf("denied: %d", resp.StatusCode)
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	for _, h2 := range []bool{false, true} {
		h := newHarness(t, upstreamH2, func(h *harness) { h.target.Endpoint.Upstream = closed })
		resp, body := get(t, h.client(h2), "https://api.test/hello")
		if resp.StatusCode != 502 || resp.Header.Get("X-Clawpatrol-Error") != "upstream-unreachable" ||
			!strings.Contains(body, "upstream unreachable: api.test:443") {
			t.Errorf("h2=%v: %d %q", h2, resp.StatusCode, body)
		}
	}
}

func TestCleartextHTTP(t *testing.T) {
	h := newHarness(t, upstreamPlain)
	c := h.client(false)
	resp, body := get(t, c, "http://api.test/hello")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "hello HTTP/1.1 host=api.test") {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	resp, _ = get(t, c, "http://api.test/deny/plain")
	if resp.StatusCode != 403 || h.up.saw("/deny/plain") {
		t.Errorf("denied: %d", resp.StatusCode)
	}
	a := h.await("/hello", 1)[0].a
	if a.HTTP.Scheme != "http" || a.Destination.TLS || a.Destination.Port != 80 {
		t.Errorf("action %+v %+v", a.HTTP, a.Destination)
	}
}

func TestCleartextH2PriorKnowledge(t *testing.T) {
	h := newHarness(t, upstreamPlain)
	var p nethttp.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &nethttp.Transport{
		Protocols: &p,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return net.Dial("tcp", h.addr())
		},
	}
	defer tr.CloseIdleConnections()
	resp, body := get(t, (&nethttp.Client{Transport: tr}), "http://api.test/hello")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "hello HTTP/2.0") {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
}

func TestNoExtendedConnect(t *testing.T) {
	h := newHarness(t, upstreamH2)
	conn := h.dialTLS(testHost, "h2")
	if conn.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatal("no h2")
	}
	io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			if v, ok := s.Value(http2.SettingEnableConnectProtocol); ok && v != 0 {
				t.Error("the server advertises RFC 8441 extended CONNECT")
			}
			return
		}
	}
}

func TestALPNMirrorsUpstream(t *testing.T) {
	h := newHarness(t, upstreamH1) // the server speaks http/1.1 only
	conn := h.dialTLS(testHost, "h2", "http/1.1")
	if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("agent got %q, want http/1.1 like the upstream", p)
	}
	h2 := newHarness(t, upstreamH2)
	conn = h2.dialTLS(testHost, "h2", "http/1.1")
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("agent got %q, want h2 like the upstream", p)
	}
}

func TestNonHTTPALPNRefused(t *testing.T) {
	h := newHarness(t, upstreamH2)
	_, err := tls.Dial("tcp", h.addr(), &tls.Config{ServerName: testHost, RootCAs: h.ca.Pool(), NextProtos: []string{"imap"}})
	if err == nil || !strings.Contains(err.Error(), "no application protocol") {
		t.Errorf("handshake: %v", err)
	}
	h.ln.Close()
	for len(h.gate.finishedTLS()) == 0 {
		waitForFinish(h)
	}
	if c := h.gate.finishedTLS()[0]; c.d.Rule != "tls-not-http" || c.a.TLS.ALPN[0] != "imap" {
		t.Errorf("finish %+v", c)
	}
}

func TestPassthrough(t *testing.T) {
	h := newHarness(t, upstreamH2, func(h *harness) { h.passthrough = true })
	// Spliced: the agent sees the real server's certificate.
	c := h.clientTrusting(h.up.roots, true)
	resp, body := get(t, c, "https://api.test/hello")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "hello HTTP/2.0") {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	c.CloseIdleConnections()
	// A server name other than the one resolved is fronting.
	_, err := tls.Dial("tcp", h.addr(), &tls.Config{ServerName: "other.test", RootCAs: h.up.roots})
	if err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("fronted handshake: %v", err)
	}
	h.ln.Close()
	for len(h.gate.finishedTLS()) < 2 {
		waitForFinish(h)
	}
	var rules []string
	for _, c := range h.gate.finishedTLS() {
		rules = append(rules, c.d.Rule+":"+c.a.TLS.SNI)
		if c.a.TLS.SNI == testHost && (c.a.TLS.ALPN[0] != "h2" || c.o.BytesDown == 0 || c.a.Protocol != "tls" || !c.decided) {
			t.Errorf("allowed passthrough %+v %+v", c.a.TLS, c.o)
		}
	}
	slices.Sort(rules)
	if strings.Join(rules, " ") != "host-mismatch:other.test test-allow:api.test" {
		t.Errorf("rules %v", rules)
	}

	// The gate refuses denied.test: the agent gets a TLS alert.
	d := newHarness(t, upstreamH2, func(h *harness) { h.passthrough = true; h.target.Host = "denied.test" })
	_, err = tls.Dial("tcp", d.addr(), &tls.Config{ServerName: "denied.test", RootCAs: d.up.roots})
	if err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("denied handshake: %v", err)
	}
	if d.up.connCount() != 0 {
		t.Error("a denied passthrough reached the upstream")
	}
}

func TestLocalAddressDenied(t *testing.T) {
	// The agent dialled a host-local IP literal that no endpoint maps.
	local := func(h *harness) {
		h.target = upstream.Target{IP: netip.MustParseAddr("127.0.0.1"), Port: h.target.Port}
	}
	for _, kind := range []upstreamKind{upstreamH2, upstreamPlain} {
		h := newHarness(t, kind, local)
		url := "https://127.0.0.1/local"
		if kind == upstreamPlain {
			url = "http://127.0.0.1/local"
		}
		resp, body := get(t, h.client(false), url)
		if resp.StatusCode != 403 || resp.Header.Get("X-Clawpatrol-Rule") != "local-address" {
			t.Errorf("%s: %d %q", url, resp.StatusCode, body)
		}
		c := h.await("/local", 1)[0]
		if !c.decided || c.a.HTTP.Host != "127.0.0.1" || c.a.Destination.Host != "127.0.0.1" || c.a.Destination.IP != "127.0.0.1" {
			t.Errorf("%s: finish %+v %+v", url, c.a.HTTP, c.a.Destination)
		}
		if h.up.saw("/local") {
			t.Error("the upstream saw it")
		}
	}
}

func TestDeferDial(t *testing.T) {
	deferDial := func(h *harness) { h.opts.DeferDial = true }
	// The agent keeps its HTTP/2; the server speaks HTTP/1.1 only.
	h := newHarness(t, upstreamH1, deferDial)
	c := h.client(true)
	resp, _ := get(t, c, "https://api.test/deny/first")
	if resp.StatusCode != 403 || h.up.connCount() != 0 {
		t.Fatalf("denied: %d, %d upstream connections (want none)", resp.StatusCode, h.up.connCount())
	}
	resp, body := get(t, c, "https://api.test/hello")
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.HasPrefix(body, "hello HTTP/1.1 host=api.test") {
		t.Errorf("%s %d %q", resp.Proto, resp.StatusCode, body)
	}
	// A bad certificate surfaces as a 502 on the allowed request.
	bad := newHarness(t, upstreamH2, deferDial, func(h *harness) { h.opts.UpstreamRoots = x509.NewCertPool() })
	resp, body = get(t, bad.client(true), "https://api.test/hello")
	if resp.StatusCode != 502 || resp.Header.Get("X-Clawpatrol-Error") != "upstream-certificate" {
		t.Errorf("bad certificate: %d %q", resp.StatusCode, body)
	}
}
