package http

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/tlsca"
)

// TestSPDYUpgrade: older kubectl reaches exec and port-forward with a POST
// asking for SPDY/3.1; after the allow the 101 and the stream pass both ways.
func TestSPDYUpgrade(t *testing.T) {
	h := newHarness(t, upstreamH1)
	h.up.mux.HandleFunc("/spdy", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.Method != "POST" || r.Header.Get("Upgrade") != "SPDY/3.1" || !strings.EqualFold(r.Header.Get("Connection"), "Upgrade") {
			nethttp.Error(w, fmt.Sprintf("not an upgrade: %s %v", r.Method, r.Header), 400)
			return
		}
		c, brw, err := nethttp.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw) // echo until the agent closes
	})
	conn := h.dialTLS(testHost, "http/1.1")
	fmt.Fprintf(conn, "POST /spdy HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := nethttp.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "SPDY/3.1" {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("got %d %v %s", resp.StatusCode, resp.Header, body)
	}
	for _, msg := range []string{"\x80\x03\x00\x01frame", strings.Repeat("y", 70000)} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
	}
	conn.Close()
	calls := h.await("/spdy", 1)
	if calls[0].a.HTTP.Upgrade != "spdy/3.1" || calls[0].o.UpstreamStatus != 101 || calls[0].o.BytesDown < 70000 {
		t.Errorf("finish %+v %+v", calls[0].a.HTTP, calls[0].o)
	}
}

// TestDescribeAndRefuse: Describe may rewrite the action before the gate
// sees it or refuse the request itself; Refuse writes every refusal.
func TestDescribeAndRefuse(t *testing.T) {
	h := newHarness(t, upstreamH2, func(h *harness) {
		h.opts.Describe = func(a *action.Action, r *nethttp.Request) *action.Decision {
			if strings.HasPrefix(a.HTTP.Path, "/refuse") {
				d := action.Denied("described", "refused while describing")
				return &d
			}
			a.HTTP.Path = "/deny" + a.HTTP.Path // the fake gate denies these
			return nil
		}
		h.opts.Refuse = func(w nethttp.ResponseWriter, a *action.Action, status int, d action.Decision) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"rule":%q,"path":%q}`, d.Rule, a.HTTP.Path)
		}
	})
	forEachProtocol(t, func(t *testing.T, h2 bool) {
		resp, body := get(t, h.client(h2), "https://api.test/hello")
		if resp.StatusCode != 403 || body != `{"rule":"no-deny-paths","path":"/deny/hello"}` {
			t.Errorf("gate refusal: %d %s", resp.StatusCode, body)
		}
		resp, body = get(t, h.client(h2), "https://api.test/refuse")
		if resp.StatusCode != 403 || body != `{"rule":"described","path":"/refuse"}` {
			t.Errorf("describe refusal: %d %s", resp.StatusCode, body)
		}
	})
	if h.up.saw("/hello") || h.up.saw("/refuse") {
		t.Error("the upstream saw a refused request")
	}
}

// TestClientCertificate: a TLS upstream that asks for a client certificate
// gets ClientCert.
func TestClientCertificate(t *testing.T) {
	clientCert := selfSigned(t, "agent-client")
	var up *httptest.Server
	h := newHarness(t, upstreamH2, func(h *harness) {
		ca, err := tlsca.Load(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := ca.GetCertificate(testHost)
		if err != nil {
			t.Fatal(err)
		}
		up = httptest.NewUnstartedServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
			fmt.Fprintf(w, "client=%s", r.TLS.PeerCertificates[0].Subject.CommonName)
		}))
		up.TLS = &tls.Config{Certificates: []tls.Certificate{*leaf}, ClientAuth: tls.RequireAnyClientCert}
		up.StartTLS()
		t.Cleanup(up.Close)
		h.target.Endpoint.Upstream = up.Listener.Addr().String()
		h.opts.UpstreamRoots = ca.Pool()
		h.opts.ClientCert = &clientCert
	})
	resp, body := get(t, h.client(false), "https://api.test/whoami")
	if resp.StatusCode != 200 || body != "client=agent-client" {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
}

func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
