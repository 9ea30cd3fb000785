package http

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// goParsesHello runs crypto/tls's server over data and returns the server
// name and protocols it read, when it accepted the hello.
func goParsesHello(data []byte) (name string, protos []string, ok bool) {
	a, b := net.Pipe()
	go func() {
		b.Write(data)
		b.Close()
	}()
	errStop := errors.New("stop")
	srv := tls.Server(a, &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		name, protos, ok = chi.ServerName, chi.SupportedProtos, true
		return nil, errStop
	}})
	srv.Handshake()
	a.Close()
	return name, protos, ok
}

// FuzzSniff checks the sniffer never panics, never asks for more than it
// may read, and reads the same server name and ALPN as crypto/tls whenever
// both accept a ClientHello.
func FuzzSniff(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "hello", "*.bin"))
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(goHello(f, &tls.Config{ServerName: "api.test", NextProtos: []string{"h2", "http/1.1"}}))
	f.Add(goHello(f, &tls.Config{ServerName: "x.example", MaxVersion: tls.VersionTLS12}))
	for _, s := range []string{"GET / HTTP/1.1\r\n", h2Preface, "SSH-2.0-x\r\n", "PRI * HTTP/1.1", "\x16\x03\x01\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, more := classify(data)
		if more {
			return
		}
		if h.Kind != TLS {
			return
		}
		name, protos, ok := goParsesHello(data)
		if ok && (name != h.SNI || !slices.Equal(protos, h.ALPN)) {
			t.Fatalf("sniffed %q %q, crypto/tls read %q %q", h.SNI, h.ALPN, name, protos)
		}
	})
}

// rawFraming is what a request head says about its body, read naively.
func rawFraming(head []byte) (cl string, te bool) {
	for _, line := range strings.Split(string(head), "\r\n")[1:] {
		name, value, _ := strings.Cut(line, ":")
		switch strings.ToLower(name) {
		case "content-length":
			cl = strings.Trim(value, " \t")
		case "transfer-encoding":
			te = true
		}
	}
	return cl, te
}

// FuzzHead checks that a head checkHead accepts has one reading: net/http
// parses the same method and body framing from it.
func FuzzHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n",
		"POST /x?a=b HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\r\nhello",
		"POST /x HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n X-A: b\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		end := headEnd(data)
		if end < 0 {
			return
		}
		rl, err := checkHead(data[:end])
		if err != nil {
			if _, ok := err.(*headError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		req, err := nethttp.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return // net/http refuses more; the agent then gets a 400 too
		}
		io.Copy(io.Discard, req.Body)
		if req.Method != rl.method {
			t.Fatalf("method %q vs %q", req.Method, rl.method)
		}
		cl, te := rawFraming(data[:end])
		switch {
		case te:
			if req.ContentLength != -1 || !slices.Equal(req.TransferEncoding, []string{"chunked"}) {
				t.Fatalf("chunked head read as length %d, %v", req.ContentLength, req.TransferEncoding)
			}
		case cl != "":
			if strconv.FormatInt(req.ContentLength, 10) != strings.TrimLeft(cl, "0") && !(req.ContentLength == 0 && strings.Trim(cl, "0") == "") {
				t.Fatalf("Content-Length %q read as %d", cl, req.ContentLength)
			}
		default:
			if req.ContentLength != 0 || len(req.TransferEncoding) != 0 {
				t.Fatalf("bodiless head read as length %d, %v", req.ContentLength, req.TransferEncoding)
			}
		}
	})
}
