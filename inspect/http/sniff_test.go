package http

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// goHello returns the ClientHello crypto/tls sends for cfg.
func goHello(t testing.TB, cfg *tls.Config) []byte {
	a, b := net.Pipe()
	go func() {
		tls.Client(a, cfg).Handshake()
		a.Close()
	}()
	defer b.Close()
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := b.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			t.Fatal(err)
		}
		if _, more := classify(out); !more {
			return out
		}
	}
}

func TestSniffRealHellos(t *testing.T) {
	// Captured from the real clients against a listener (testdata/hello).
	want := map[string]Hello{
		"hello-curl-h2.bin": {Kind: TLS, SNI: "api.example.com", ALPN: []string{"h2", "http/1.1"}},
		"hello-curl-h1.bin": {Kind: TLS, SNI: "api.example.com", ALPN: []string{"http/1.1"}},
		"hello-curl-ip.bin": {Kind: TLS, SNI: "", ALPN: []string{"h2", "http/1.1"}},
		"hello-python.bin":  {Kind: TLS, SNI: "pypi.org", ALPN: []string{"http/1.1"}},
		"hello-node.bin":    {Kind: TLS, SNI: "registry.npmjs.org", ALPN: []string{"h2", "http/1.1"}},
	}
	for name, w := range want {
		data, err := os.ReadFile(filepath.Join("testdata", "hello", name))
		if err != nil {
			t.Fatal(err)
		}
		got, more := classify(data)
		if more || got.Kind != w.Kind || got.SNI != w.SNI || !slices.Equal(got.ALPN, w.ALPN) {
			t.Errorf("%s: %+v more=%v, want %+v", name, got, more, w)
		}
		// Every strict prefix asks for more bytes, never misclassifies.
		for i := 0; i < len(data); i++ {
			if h, more := classify(data[:i]); !more {
				t.Fatalf("%s: prefix of %d bytes decided %v", name, i, h.Kind)
			}
		}
	}
	g := goHello(t, &tls.Config{ServerName: "Example.COM", NextProtos: []string{"h2"}})
	if h, _ := classify(g); h.Kind != TLS || h.SNI != "Example.COM" || !slices.Equal(h.ALPN, []string{"h2"}) {
		t.Errorf("go hello: %+v", h)
	}
}

func TestSniffKinds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind Kind
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP},
		{"POST /v1/messages HTTP/1.1\r\n", HTTP},
		{"OPTIONS * HTTP/1.1\r\n", HTTP},
		{"GET http://x/ HTTP/1.1\r\n", HTTP},
		{"CONNECT x:443 HTTP/1.1\r\n", HTTP},
		{h2Preface, HTTP},
		{"SSH-2.0-OpenSSH_9.2\r\n", Opaque},
		{"\x00\x00\x00\x08\x04\xd2\x16\x2f", Opaque}, // postgres SSLRequest
		{"get / HTTP/1.1\r\n", Opaque},
		{"GET  / HTTP/1.1\r\n", Opaque},
		{"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", Opaque}, // a handshake that is not a ClientHello
		{"\x16\x02\x00\x00\x05hello", Opaque},
	} {
		h, more := classify([]byte(tc.in))
		if more || h.Kind != tc.kind {
			t.Errorf("%q: %v more=%v, want %v", tc.in, h.Kind, more, tc.kind)
		}
	}
}

// trickle is a conn that hands out one byte per Read.
type trickle struct {
	net.Conn
	r io.Reader
}

func (c *trickle) Read(p []byte) (int, error) { return c.r.Read(p[:1]) }

func TestSniffReplaysEveryByte(t *testing.T) {
	hello := goHello(t, &tls.Config{ServerName: "api.test", NextProtos: []string{"h2", "http/1.1"}})
	rest := []byte("and then the rest of the flow")
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		b.Write(hello)
		b.Write(rest)
		b.Close()
	}()
	h, conn, err := Sniff(&trickle{Conn: a, r: a}, time.Minute)
	if err != nil || h.Kind != TLS || h.SNI != "api.test" || !bytes.Equal(h.Peek, hello) {
		t.Fatalf("%+v %v", h, err)
	}
	all, _ := io.ReadAll(conn)
	if !bytes.Equal(all, append(hello, rest...)) {
		t.Errorf("replayed %d bytes, want %d", len(all), len(hello)+len(rest))
	}
}

func TestSniffSilentFlowIsOpaque(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	h, conn, err := Sniff(a, 10*time.Millisecond)
	if err != nil || h.Kind != Opaque || len(h.Peek) != 0 {
		t.Fatalf("%+v %v", h, err)
	}
	// The deadline is gone: the flow is still usable.
	go b.Write([]byte("220 smtp ready\r\n"))
	buf := make([]byte, 3)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "220" {
		t.Errorf("%q %v", buf, err)
	}
}

func TestSniffClosedFlow(t *testing.T) {
	a, b := net.Pipe()
	b.Close()
	if _, _, err := Sniff(a, time.Minute); err == nil {
		t.Error("no error for a flow closed before a byte")
	}
	a, b = net.Pipe()
	go func() { b.Write([]byte("GE")); b.Close() }()
	h, _, err := Sniff(a, time.Minute)
	if err != nil || h.Kind != Opaque || string(h.Peek) != "GE" {
		t.Errorf("%+v %v", h, err)
	}
}

func TestClientHelloAmbiguities(t *testing.T) {
	hello := goHello(t, &tls.Config{ServerName: "api.test"})
	// Duplicate the SNI extension: another parser might take the second.
	i := bytes.Index(hello, []byte("api.test"))
	sniExt := hello[i-9 : i+len("api.test")]
	if sniExt[0] != 0 || sniExt[1] != 0 {
		t.Fatalf("unexpected layout %x", sniExt[:4])
	}
	dup := bytes.Clone(hello)
	dup = append(dup[:i+len("api.test")], append(bytes.Clone(sniExt), hello[i+len("api.test"):]...)...)
	grow := func(b []byte, off, size int, n int) {
		v := 0
		for k := 0; k < size; k++ {
			v = v<<8 | int(b[off+k])
		}
		v += n
		for k := size - 1; k >= 0; k-- {
			b[off+k] = byte(v)
			v >>= 8
		}
	}
	grow(dup, 3, 2, len(sniExt)) // record length
	grow(dup, 6, 3, len(sniExt)) // handshake length
	// extensions length: after version, random, session id, suites, compression
	off := 5 + 4 + 2 + 32
	off += 1 + int(dup[off])
	off += 2 + int(dup[off])<<8 + int(dup[off+1])
	off += 1 + int(dup[off])
	grow(dup, off, 2, len(sniExt))
	if h, more := classify(dup); more || h.Kind != Opaque {
		t.Errorf("duplicate SNI extension: %+v", h)
	}
	if h, _ := classify(hello); h.Kind != TLS || !strings.EqualFold(h.SNI, "api.test") {
		t.Errorf("original: %+v", h)
	}
}
