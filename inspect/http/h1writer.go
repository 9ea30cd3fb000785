package http

import (
	"bufio"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"slices"
	"strconv"
	"strings"
)

// continueBody sends "100 Continue" before the first read of a body whose
// client waits for it.
type continueBody struct {
	io.ReadCloser
	w *h1Writer
}

func (b *continueBody) Read(p []byte) (int, error) {
	if !b.w.continued && !b.w.wroteHeader {
		b.w.continued = true
		b.w.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := b.w.bw.Flush(); err != nil {
			return 0, err
		}
	}
	return b.ReadCloser.Read(p)
}

// h1Writer is the HTTP/1.1 response writer: it frames the body with the
// Content-Length given, else chunked (HTTP/1.1) or by closing (HTTP/1.0),
// and writes trailers after a chunked body.
type h1Writer struct {
	bw     *bufio.Writer
	req    *nethttp.Request
	header nethttp.Header

	wroteHeader bool
	status      int
	bodyAllowed bool
	chunked     bool
	length      int64 // declared Content-Length, -1 when none
	written     int64
	closeAfter  bool
	aborted     bool
	err         error

	expect    bool // the request asked for 100-continue
	continued bool // and got it

	// for protocol upgrades
	conn     net.Conn
	br       *bufio.Reader
	hijacked bool
}

func (w *h1Writer) Header() nethttp.Header { return w.header }

func (w *h1Writer) WriteHeader(code int) {
	if w.wroteHeader || code < 200 {
		return
	}
	w.wroteHeader = true
	w.status = code
	h := w.header
	w.bodyAllowed = w.req.Method != "HEAD" && code != nethttp.StatusNoContent && code != nethttp.StatusNotModified
	w.length = -1
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.length = n
		} else {
			h.Del("Content-Length")
		}
	}
	h.Del("Transfer-Encoding")
	trailers := len(h["Trailer"]) > 0
	if w.bodyAllowed && (w.length < 0 || trailers) {
		if w.req.ProtoAtLeast(1, 1) {
			w.chunked = true
			w.length = -1
			h.Del("Content-Length")
			h.Set("Transfer-Encoding", "chunked")
		} else {
			w.closeAfter = true // HTTP/1.0: the end of the body is the end of the connection
		}
	}
	if !w.chunked {
		h.Del("Trailer")
	}
	if w.req.Close || w.closeAfter {
		w.closeAfter = true
		h.Set("Connection", "close")
	} else if !w.req.ProtoAtLeast(1, 1) {
		h.Set("Connection", "keep-alive")
	}
	w.writeStatus(code, h)
}

func (w *h1Writer) writeStatus(code int, h nethttp.Header) {
	text := nethttp.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	fmt.Fprintf(w.bw, "HTTP/1.1 %03d %s\r\n", code, text)
	writeFields(w.bw, h, func(k string) bool { return !strings.HasPrefix(k, nethttp.TrailerPrefix) })
	w.bw.WriteString("\r\n")
}

// writeFields writes header fields in a stable order, with any CR or LF in
// a value turned into a space so no value can start a new line.
func writeFields(bw *bufio.Writer, h nethttp.Header, keep func(string) bool) {
	keys := make([]string, 0, len(h))
	for k := range h {
		if keep(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			v = strings.Map(func(r rune) rune {
				if r == '\r' || r == '\n' {
					return ' '
				}
				return r
			}, v)
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(strings.TrimSpace(v))
			bw.WriteString("\r\n")
		}
	}
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(nethttp.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.bodyAllowed {
		return 0, nethttp.ErrBodyNotAllowed
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, nethttp.ErrContentLength
	}
	if len(p) == 0 {
		return 0, nil // a zero-length chunk would end the body
	}
	if w.chunked {
		fmt.Fprintf(w.bw, "%x\r\n", len(p))
	}
	n, err := w.bw.Write(p)
	if w.chunked && err == nil {
		_, err = w.bw.WriteString("\r\n")
	}
	w.written += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Flush sends what is buffered: every response streams.
func (w *h1Writer) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(nethttp.StatusOK)
	}
	if err := w.bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
}

// abort ends the response so the agent sees it incomplete: no final chunk,
// and the connection closes.
func (w *h1Writer) abort() {
	w.aborted = true
	w.closeAfter = true
}

// finish ends the response: the final chunk and trailers, and a flush.
func (w *h1Writer) finish() {
	if !w.wroteHeader {
		w.WriteHeader(nethttp.StatusOK)
	}
	if w.chunked && !w.aborted {
		w.bw.WriteString("0\r\n")
		declared := map[string]bool{}
		for _, v := range w.header["Trailer"] {
			for _, k := range strings.Split(v, ",") {
				declared[nethttp.CanonicalHeaderKey(strings.TrimSpace(k))] = true
			}
		}
		trailer := nethttp.Header{}
		for k, vv := range w.header {
			if declared[k] {
				trailer[k] = vv
			} else if name, ok := strings.CutPrefix(k, nethttp.TrailerPrefix); ok {
				trailer[nethttp.CanonicalHeaderKey(name)] = vv
			}
		}
		writeFields(w.bw, trailer, func(string) bool { return true })
		w.bw.WriteString("\r\n")
	}
	if w.bodyAllowed && w.length >= 0 && w.written != w.length {
		w.closeAfter = true // the declared length was not met: framing is lost
	}
	if err := w.bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
}

// upgrade writes a 101 response and hands over the raw connection: a
// reader that starts with any bytes already buffered, and the connection.
func (w *h1Writer) upgrade(h nethttp.Header) (io.Reader, net.Conn, error) {
	w.wroteHeader, w.hijacked = true, true
	w.writeStatus(nethttp.StatusSwitchingProtocols, h)
	if err := w.bw.Flush(); err != nil {
		return nil, nil, err
	}
	return w.br, w.conn, nil
}
