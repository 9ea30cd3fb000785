package http

import (
	"bytes"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// An HTTP/1.1 request head is checked byte by byte before net/http parses
// it. net/http's own parser is lenient where RFC 9112 lets a server be
// (it folds obs-fold lines, accepts bare LF, lets Transfer-Encoding override
// Content-Length); a firewall in front of an unknown server must not be:
// every request it forwards has one reading only.

// maxHead bounds a request head; larger ones get 431.
const maxHead = 64 << 10

// headError is a request refused before parsing: it is answered 400 (or
// 431) and the connection is closed, since its framing cannot be trusted.
type headError struct {
	status int
	reason string
	method string // what could be read of the request line, for the audit record
	target string
}

func (e *headError) Error() string { return e.reason }

// requestLine is what the first line of a head holds.
type requestLine struct {
	method, target, proto string
}

// checkHead validates a complete request head (request line, header
// lines, and the empty line that ends it).
func checkHead(head []byte) (requestLine, error) {
	var rl requestLine
	bad := func(format string, args ...any) (requestLine, error) {
		return rl, &headError{status: 400, reason: fmt.Sprintf(format, args...), method: rl.method, target: rl.target}
	}
	if !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		return bad("request head does not end with an empty line")
	}
	for i, c := range head {
		if c == '\n' && (i == 0 || head[i-1] != '\r') {
			return bad("bare LF in request head")
		}
		if c == '\r' && (i+1 == len(head) || head[i+1] != '\n') {
			return bad("bare CR in request head")
		}
	}
	lines := strings.Split(string(head[:len(head)-4]), "\r\n")
	if err := rl.parse(lines[0]); err != "" {
		return bad("%s", err)
	}
	var contentLength, transferEncoding, host []string
	for _, line := range lines[1:] {
		if line == "" {
			return bad("empty line inside request head")
		}
		if line[0] == ' ' || line[0] == '\t' {
			return bad("obsolete line folding (obs-fold) in request head")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return bad("header line without a colon")
		}
		if !validToken(name) {
			return bad("invalid header name %q", name)
		}
		value = strings.Trim(value, " \t")
		if !httpguts.ValidHeaderFieldValue(value) {
			return bad("invalid value for header %s", name)
		}
		switch {
		case strings.EqualFold(name, "Content-Length"):
			contentLength = append(contentLength, value)
		case strings.EqualFold(name, "Transfer-Encoding"):
			transferEncoding = append(transferEncoding, value)
		case strings.EqualFold(name, "Host"):
			host = append(host, value)
		}
	}
	if len(contentLength) > 0 && len(transferEncoding) > 0 {
		return bad("both Content-Length and Transfer-Encoding")
	}
	for _, v := range contentLength {
		if v == "" || strings.Trim(v, "0123456789") != "" || len(v) > 18 {
			return bad("invalid Content-Length %q", v)
		}
		if v != contentLength[0] {
			return bad("differing Content-Length headers")
		}
	}
	if len(transferEncoding) > 0 {
		if rl.proto == "HTTP/1.0" {
			return bad("Transfer-Encoding in an HTTP/1.0 request")
		}
		if len(transferEncoding) > 1 || !strings.EqualFold(transferEncoding[0], "chunked") {
			return bad("unsupported Transfer-Encoding %q", strings.Join(transferEncoding, ", "))
		}
	}
	switch {
	case len(host) > 1:
		return bad("more than one Host header")
	case len(host) == 0 && rl.proto == "HTTP/1.1":
		return bad("missing Host header")
	case len(host) == 1 && !httpguts.ValidHostHeader(host[0]):
		return bad("invalid Host header %q", host[0])
	}
	return rl, nil
}

// parse splits a request line: method SP request-target SP HTTP-version,
// single spaces only. It returns a reason when the line is malformed.
func (rl *requestLine) parse(line string) string {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return "malformed request line"
	}
	if validToken(method) {
		rl.method = method
	}
	if !validToken(method) {
		return "invalid method"
	}
	if target == "" {
		return "empty request target"
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return "invalid character in request target"
		}
	}
	rl.target = target
	if proto != "HTTP/1.1" && proto != "HTTP/1.0" {
		return fmt.Sprintf("unsupported protocol %q", proto)
	}
	rl.proto = proto
	return ""
}

// validToken reports whether s is an RFC 9110 token (method, header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}
