package creds

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// RedactResponse keeps a secret that an upstream echoes back (in a header,
// the body or a trailer) from reaching the agent: each is replaced by
// <redacted:NAME> as the response streams. A compressed body would hide
// the secret from the redaction, so InjectHTTP asks for an uncompressed
// one; a gzip or deflate body sent anyway is decompressed here, and a body
// in another coding is replaced by a 502, since it cannot be checked.
func (s *Store) RedactResponse(resp *http.Response) {
	if s == nil || len(s.names) == 0 {
		return
	}
	for _, vs := range resp.Header {
		for i, v := range vs {
			vs[i] = s.Redact(v)
		}
	}
	if bodiless(resp) {
		return // keep Content-Length: it describes a body that is not sent
	}
	body, ok := decoded(resp)
	if !ok {
		coding := resp.Header.Get("Content-Encoding")
		resp.Body.Close()
		msg := "clawpatrol: the upstream answered in content coding " + strconv.Quote(coding) +
			", which cannot be checked for an echoed secret; the response is withheld\n"
		resp.StatusCode, resp.Status = http.StatusBadGateway, "502 Bad Gateway"
		resp.Header = http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "X-Clawpatrol-Error": {"response-encoding"}}
		resp.Trailer = nil
		resp.Body = io.NopCloser(strings.NewReader(msg))
		resp.ContentLength = -1
		return
	}
	resp.Body = &redactedBody{r: s.RedactingReader(body), body: resp.Body, resp: resp, s: s}
	resp.Header.Del("Content-Length") // redaction changes the length
	resp.ContentLength = -1
}

// bodiless reports a response that carries no body whatever its headers
// say (RFC 9110 §6.4.1).
func bodiless(resp *http.Response) bool {
	c := resp.StatusCode
	return (resp.Request != nil && resp.Request.Method == http.MethodHead) ||
		c == http.StatusNoContent || c == http.StatusNotModified || (c >= 100 && c < 200)
}

// decoded returns the body as plain bytes, dropping a gzip or deflate
// Content-Encoding it undoes; false for a coding it cannot read.
func decoded(resp *http.Response) (io.Reader, bool) {
	coding := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	switch coding {
	case "", "identity":
		return resp.Body, true
	case "gzip", "x-gzip", "deflate":
	default:
		return nil, false
	}
	resp.Header.Del("Content-Encoding")
	resp.Uncompressed = true
	return &lazyDecoder{src: resp.Body, coding: coding}, true
}

// lazyDecoder starts decompressing on the first read, so that reading the
// compressed header does not block the response head from being relayed.
type lazyDecoder struct {
	src    io.Reader
	coding string
	r      io.Reader
	err    error
}

func (d *lazyDecoder) Read(p []byte) (int, error) {
	if d.r == nil && d.err == nil {
		switch d.coding {
		case "deflate":
			// "deflate" is zlib-wrapped (RFC 9110 §8.4.1.2), though some
			// servers send raw deflate.
			br := bufio.NewReader(d.src)
			if b, err := br.Peek(2); err == nil && (uint16(b[0])<<8|uint16(b[1]))%31 == 0 && b[0]&0x0f == 8 {
				d.r, d.err = zlib.NewReader(br)
			} else {
				d.r = flate.NewReader(br)
			}
		default:
			d.r, d.err = gzip.NewReader(d.src)
		}
	}
	if d.err != nil {
		return 0, d.err
	}
	return d.r.Read(p)
}

// redactedBody streams a redacted body and, once the body has ended,
// redacts the trailers that came after it.
type redactedBody struct {
	r    io.Reader
	body io.Closer
	resp *http.Response
	s    *Store
}

func (b *redactedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil {
		// Trailers are filled in by the time the body reports its end.
		for _, vs := range b.resp.Trailer {
			for i, v := range vs {
				vs[i] = b.s.Redact(v)
			}
		}
	}
	return n, err
}

func (b *redactedBody) Close() error { return b.body.Close() }
