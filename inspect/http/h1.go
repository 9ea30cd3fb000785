package http

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
)

// maxDrain bounds the unread request body discarded after a response to
// keep a connection alive; past it the connection is closed instead.
const maxDrain = 8 << 20

// serveH1 serves HTTP/1.1 requests one after another (no pipelining: the
// next request head is read only after the previous response).
func (f *flow) serveH1(ctx context.Context) {
	small := bufio.NewReaderSize(f.agent, 4<<10)
	br := small
	bw := bufio.NewWriterSize(f.agent, 4<<10)
	if !f.tls {
		f.agent.SetReadDeadline(time.Now().Add(idleTimeout))
		if isH2Preface(br) {
			f.proto = "h2"
			f.up = newUplink(f, nil, "")
			f.agent.SetReadDeadline(time.Time{})
			f.serveH2(ctx, &bufferedConn{Conn: f.agent, r: br})
			return
		}
		f.up = newUplink(f, nil, "") // dialled on the first allowed request
	}
	for {
		if br != small && br.Buffered() == 0 {
			br = small // a large head grew the buffer; give it back
		}
		f.agent.SetReadDeadline(time.Now().Add(idleTimeout))
		head, next, err := readHead(br)
		br = next
		if err != nil {
			var he *headError
			if errors.As(err, &he) {
				f.rejectHead(bw, he)
			}
			return
		}
		// A request may stream its body slowly or wait for an approver.
		f.agent.SetReadDeadline(time.Time{})
		rl, err := checkHead(head)
		if err != nil {
			f.rejectHead(bw, err.(*headError))
			return
		}
		req, err := nethttp.ReadRequest(br)
		if err != nil {
			f.rejectHead(bw, &headError{status: 400, reason: err.Error(), method: rl.method, target: rl.target})
			return
		}
		req = req.WithContext(ctx)
		req.RemoteAddr = f.agent.RemoteAddr().String()
		stripH2CUpgrade(req.Header)
		w := &h1Writer{bw: bw, req: req, header: nethttp.Header{}, conn: f.agent, br: br}
		if req.Header.Get("Expect") != "" {
			// net/http leaves 100-continue to the server: send it when the
			// body is first read (the policy needs its prefix).
			w.expect = strings.EqualFold(req.Header.Get("Expect"), "100-continue")
			req.Header.Del("Expect")
			if w.expect && req.ContentLength != 0 {
				req.Body = &continueBody{ReadCloser: req.Body, w: w}
			}
		}
		f.serve(w, req)
		if w.hijacked {
			return
		}
		w.finish()
		if w.closeAfter || w.err != nil {
			return
		}
		if w.expect && !w.continued && req.ContentLength != 0 {
			return // the agent may or may not send the body now: framing is lost
		}
		if !discardBody(req.Body) {
			return
		}
	}
}

// discardBody drops what the handler left of a request body, so the next
// request can be read; false means the connection cannot be kept.
func discardBody(body io.ReadCloser) bool {
	if p, ok := body.(*prefixed); ok {
		return p.discard(maxDrain)
	}
	n, err := io.CopyN(io.Discard, body, maxDrain+1)
	return err == io.EOF && n <= maxDrain
}

// isH2Preface reports whether a cleartext flow opens with the HTTP/2
// prior-knowledge preface.
func isH2Preface(br *bufio.Reader) bool {
	b, _ := br.Peek(4)
	if string(b) != h2Preface[:4] {
		return false
	}
	b, _ = br.Peek(len(h2Preface))
	return string(b) == h2Preface
}

// readHead peeks a complete request head (through the empty line) without
// consuming it. It grows the reader once, to maxHead, for a large head;
// the returned reader is the one to keep using.
func readHead(br *bufio.Reader) ([]byte, *bufio.Reader, error) {
	for i := 0; i < 4; i++ { // RFC 9112 §2.2: ignore empty lines before a request
		b, err := br.Peek(2)
		if err != nil {
			return nil, br, err
		}
		if string(b) != "\r\n" {
			break
		}
		br.Discard(2)
	}
	for {
		buf, _ := br.Peek(br.Buffered())
		if end := headEnd(buf); end >= 0 {
			return buf[:end], br, nil
		}
		if br.Buffered() == br.Size() {
			if br.Size() >= maxHead {
				return nil, br, &headError{status: nethttp.StatusRequestHeaderFieldsTooLarge, reason: "request head larger than 64 KiB"}
			}
			br = bufio.NewReaderSize(br, maxHead)
			continue
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, br, err
		}
	}
}

// headEnd returns the length of the head at the start of b, through the
// first empty line, or -1. A bare LF counts as a line end here so a head
// written with them is found, then refused by checkHead, not waited on.
func headEnd(b []byte) int {
	for i := bytes.IndexByte(b, '\n'); i >= 0; {
		rest := b[i+1:]
		switch {
		case bytes.HasPrefix(rest, []byte("\n")):
			return i + 2
		case bytes.HasPrefix(rest, []byte("\r\n")):
			return i + 3
		}
		j := bytes.IndexByte(rest, '\n')
		if j < 0 {
			return -1
		}
		i += 1 + j
	}
	return -1
}

// stripH2CUpgrade removes an h2c upgrade offer: after it, requests would
// flow as HTTP/2 frames this inspector never parses.
func stripH2CUpgrade(h nethttp.Header) {
	if !strings.EqualFold(h.Get("Upgrade"), "h2c") {
		return
	}
	h.Del("Upgrade")
	h.Del("Http2-Settings")
	var keep []string
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok != "" && !strings.EqualFold(tok, "upgrade") && !strings.EqualFold(tok, "http2-settings") {
				keep = append(keep, tok)
			}
		}
	}
	h.Del("Connection")
	if len(keep) > 0 {
		h.Set("Connection", strings.Join(keep, ", "))
	}
}

// rejectHead answers a request whose head cannot be trusted, records it,
// and leaves the connection to be closed.
func (f *flow) rejectHead(bw *bufio.Writer, he *headError) {
	a := f.baseAction(action.ProtoHTTP)
	path, _, _ := strings.Cut(he.target, "?")
	a.HTTP = newHTTPBlock(f, he.method, path)
	d := malformed(he.reason)
	req := &nethttp.Request{Method: "GET", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Close: true}
	w := &h1Writer{bw: bw, req: req, header: nethttp.Header{}}
	f.writeRefusal(w, a, he.status, d)
	w.finish()
	f.opts.Gate.Finish(a, d, action.Outcome{})
}

// bufferedConn reads through a bufio.Reader that may hold bytes already
// read from the connection.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
