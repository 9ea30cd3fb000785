package http

import (
	"errors"
	"net"
	"os"
	"slices"
	"time"
)

// Kind is what the first bytes of a flow look like.
type Kind int

// The kinds of flow Sniff tells apart.
const (
	// Opaque is neither TLS nor HTTP, or a flow that sent nothing in time
	// (a server-speaks-first protocol).
	Opaque Kind = iota
	// TLS is a flow that opened with a TLS ClientHello.
	TLS
	// HTTP is a cleartext HTTP/1.x request, or the HTTP/2 prior-knowledge preface.
	HTTP
)

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case TLS:
		return "tls"
	case HTTP:
		return "http"
	}
	return "opaque"
}

// Hello is what Sniff learned from the first bytes of a flow.
type Hello struct {
	Kind Kind
	SNI  string   // TLS: the server name the agent asked for ("" when none)
	ALPN []string // TLS: the protocols the agent offered, in its order
	Peek []byte   // the bytes read; the Conn Sniff returns replays them
}

const (
	// SniffTimeout is a sensible wait for a client-speaks-first protocol
	// to speak.
	SniffTimeout = 3 * time.Second
	// maxSniff bounds the bytes read before giving up: a ClientHello with
	// post-quantum key shares is ~2 KiB; one may legally span records.
	maxSniff = 32 << 10
)

// Sniff reads the first bytes of c, at most until timeout, and says what
// the flow is. The returned conn replays every byte read. err is set only
// when c failed or closed before a single byte arrived; a timeout with
// nothing read is Opaque with a nil error.
func Sniff(c net.Conn, timeout time.Duration) (Hello, net.Conn, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Hello{}, c, err
	}
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, 2048)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, len(buf))
		}
		n, err := c.Read(buf[len(buf):min(cap(buf), maxSniff)])
		buf = buf[:len(buf)+n]
		h, more := classify(buf)
		if !more || len(buf) >= maxSniff || err != nil {
			if err != nil && len(buf) == 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
				return Hello{}, c, err
			}
			if more {
				h = Hello{Kind: Opaque}
			}
			h.Peek = buf
			return h, &replayConn{Conn: c, buf: buf}, nil
		}
	}
}

// classify decides from the bytes so far; more asks for more bytes.
func classify(b []byte) (h Hello, more bool) {
	if len(b) == 0 {
		return Hello{}, true
	}
	if b[0] == recordTypeHandshake {
		sni, alpn, ok, needMore := parseClientHello(b)
		switch {
		case needMore:
			return Hello{}, true
		case ok:
			return Hello{Kind: TLS, SNI: sni, ALPN: alpn}, false
		}
		return Hello{}, false
	}
	k, needMore := looksHTTP(b)
	if needMore {
		return Hello{}, true
	}
	return Hello{Kind: k}, false
}

// h2Preface is how a prior-knowledge HTTP/2 client opens (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// looksHTTP recognises a request line: a method token of upper-case
// letters, one space, then the start of a request target.
func looksHTTP(b []byte) (Kind, bool) {
	const maxMethod = 20
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z' || c == '-' || c == '_':
			if i >= maxMethod {
				return Opaque, false
			}
		case c == ' ' && i > 0:
			if i+1 >= len(b) {
				return Opaque, true
			}
			t := b[i+1]
			// origin-form "/", asterisk-form "*", absolute-form or
			// authority-form (a letter or digit).
			if t == '/' || t == '*' || t >= 'a' && t <= 'z' || t >= 'A' && t <= 'Z' || t >= '0' && t <= '9' || t == '[' {
				return HTTP, false
			}
			return Opaque, false
		default:
			return Opaque, false
		}
	}
	return Opaque, true
}

// replayConn returns the sniffed bytes before reading on.
type replayConn struct {
	net.Conn
	buf []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection when the underlying one can.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Unwrap returns the connection underneath, once the replayed bytes are
// consumed; before that, it returns nil.
func (c *replayConn) Unwrap() net.Conn {
	if len(c.buf) > 0 {
		return nil
	}
	return c.Conn
}
