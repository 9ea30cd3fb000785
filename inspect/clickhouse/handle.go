// Package clickhouse inspects ClickHouse's HTTP interface: every query,
// from the query parameter and the request body, becomes an action with
// ClickHouse's statement facts; a denied query gets ClickHouse's own error
// (Code 497, HTTP 403). After an allow the agent's placeholder login is
// replaced by the real one, and the request, rows of an INSERT included,
// streams to the server.
package clickhouse

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	nethttp "net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/inspect/tcp"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

const (
	// DefaultTextLimit is limits.body's default: the query bytes the
	// policy sees.
	DefaultTextLimit = 1 << 20
	// headerTimeout bounds reading a request head; idleTimeout closes an
	// agent connection that sends no request for this long.
	headerTimeout = 30 * time.Second
	idleTimeout   = 5 * time.Minute
	maxHeader     = 64 << 10
)

// Options configure the inspection of one connection.
type Options struct {
	Gate   action.Gate
	Dialer *upstream.Dialer
	Logger *zap.Logger
	// Login, when set, replaces the agent's credentials after an allow:
	// the agent may send the placeholder (or nothing) as its password,
	// and the server gets Username and the real secret. nil passes the
	// agent's own credentials through.
	Login *Login
	// BasicAuth sends the login as HTTP Basic authentication; by default
	// it goes in X-ClickHouse-User and X-ClickHouse-Key. The router sets
	// it when the credential's inject is {basic: ...}.
	BasicAuth bool
	// UpstreamTLS is the endpoint's upstream_tls: require (HTTPS,
	// certificate not checked) or verify-full (HTTPS, chain and name
	// checked); anything else is plain HTTP, which has no TLS to prefer.
	UpstreamTLS string
	// UpstreamRoots verify the server under verify-full; nil: system roots.
	UpstreamRoots *x509.CertPool
	// ServerName is the name verify-full checks; "" means the target's
	// host, else the host of the endpoint's upstream address.
	ServerName string
	// TextLimit is limits.body: the query bytes the policy sees. Longer
	// text is still forwarded whole, and marked sql.truncated; the rows
	// of an INSERT ... FORMAT are not query text. 0 means DefaultTextLimit.
	TextLimit int
	// Redact, when set, wraps every response body on its way to the
	// agent (creds.Store.RedactingReader).
	Redact func(io.Reader) io.Reader
}

// Login is what the agent presents and what the server gets instead.
type Login struct {
	// Username is the user clawpatrol logs in as; "" keeps the agent's.
	Username string
	// Password is the real secret.
	Password string
	// Placeholder is the only password the agent may present.
	Placeholder string
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Dialer == nil {
		o.Dialer = upstream.NewDialer()
	}
	if o.TextLimit <= 0 {
		o.TextLimit = DefaultTextLimit
	}
	return o
}

// flow is one agent connection under inspection.
type flow struct {
	opts Options
	t    upstream.Target
	log  *zap.Logger
	dest action.Destination
	rt   *nethttp.Transport
}

// Handle serves HTTP/1.1 to the agent on one connection to a ClickHouse
// endpoint until the agent closes it or ctx ends. It closes agent.
func Handle(ctx context.Context, agent net.Conn, t upstream.Target, opts Options) {
	opts = opts.withDefaults()
	defer agent.Close()
	f := &flow{opts: opts, t: t, dest: tcp.Destination(t),
		log: opts.Logger.With(zap.String("endpoint", endpointName(t)), zap.String("host", t.Host))}
	f.rt = f.transport()
	defer f.rt.CloseIdleConnections()

	l := newOneConn(agent)
	errLog, _ := zap.NewStdLogAt(f.log, zapcore.DebugLevel)
	srv := &nethttp.Server{
		Handler:           f,
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeader,
		ErrorLog:          errLog,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnState: func(_ net.Conn, st nethttp.ConnState) {
			if st == nethttp.StateClosed || st == nethttp.StateHijacked {
				l.Close()
			}
		},
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	srv.Serve(l)
	srv.Close()
	<-l.closed
}

func endpointName(t upstream.Target) string {
	if t.Endpoint != nil {
		return t.Endpoint.Name
	}
	return ""
}

// oneConn is a listener that hands out one connection, then waits until
// it is closed.
type oneConn struct {
	conns  chan net.Conn
	addr   net.Addr
	once   sync.Once
	closed chan struct{}
}

func newOneConn(c net.Conn) *oneConn {
	l := &oneConn{conns: make(chan net.Conn, 1), addr: c.LocalAddr(), closed: make(chan struct{})}
	l.conns <- c
	return l
}

func (l *oneConn) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *oneConn) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConn) Addr() net.Addr { return l.addr }
