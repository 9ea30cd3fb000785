package http

import (
	"context"
	"net"
	nethttp "net/http"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// serveH2 serves HTTP/2 streams with net/http's server, one goroutine per
// stream running f.serve; all of them have ended when it returns.
// Extended CONNECT (RFC 8441, WebSocket over HTTP/2) is not advertised:
// net/http leaves it off unless GODEBUG=http2xconnect=1, and a CONNECT
// that arrives anyway is refused (http-connect).
func (f *flow) serveH2(ctx context.Context, c net.Conn) {
	var streams tracker
	errLog, _ := zap.NewStdLogAt(f.log, zapcore.DebugLevel)
	ln := &oneConnListener{c: c, addr: c.LocalAddr(), done: make(chan struct{})}
	var p nethttp.Protocols
	if f.tls {
		p.SetHTTP2(true)
	} else {
		p.SetUnencryptedHTTP2(true) // the preface is still in c
	}
	srv := &nethttp.Server{
		Protocols:   &p,
		IdleTimeout: idleTimeout,
		ErrorLog:    errLog,
		BaseContext: func(net.Listener) context.Context { return ctx },
		ConnState: func(_ net.Conn, s nethttp.ConnState) {
			if s == nethttp.StateClosed || s == nethttp.StateHijacked {
				ln.Close()
			}
		},
		Handler: nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
			streams.add()
			defer streams.done()
			f.serve(w, r)
		}),
	}
	srv.Serve(ln) // returns once the connection closed
	streams.wait()
}

// oneConnListener hands out one connection, then waits until closed.
type oneConnListener struct {
	c    net.Conn
	addr net.Addr
	once sync.Once
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if c := l.c; c != nil {
		l.c = nil
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }

// tracker counts running handlers; unlike a WaitGroup, adding after a
// wait started is fine.
type tracker struct {
	mu   sync.Mutex
	n    int
	zero *sync.Cond
}

func (t *tracker) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 && t.zero != nil {
		t.zero.Broadcast()
	}
	t.mu.Unlock()
}

func (t *tracker) wait() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.zero == nil {
		t.zero = sync.NewCond(&t.mu)
	}
	for t.n > 0 {
		t.zero.Wait()
	}
}
