package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/netstack"
)

// HandlePassthrough decides a TLS flow that is not intercepted (a
// passthrough host) as one tls action with the server name and ALPN the
// agent sent, and after an allow splices it to the upstream untouched. A
// refusal is a TLS alert. It closes agent.
func HandlePassthrough(ctx context.Context, agent net.Conn, t upstream.Target, h Hello, opts Options) {
	opts = opts.withDefaults()
	defer agent.Close()
	f := &flow{opts: opts, t: t, name: verifiedName(t), tls: true}
	a := f.baseAction(action.ProtoTLS)
	a.TLS = &action.TLS{SNI: h.SNI, ALPN: h.ALPN}
	if t.Host != "" && h.SNI != "" && !sameHost(h.SNI, t.Host) {
		// The server would route by the name in the hello, not the one
		// the agent resolved: that is domain fronting.
		d := action.Denied("host-mismatch", fmt.Sprintf("TLS server name %q differs from %q, the name the agent resolved", h.SNI, t.Host))
		opts.Gate.Finish(a, d, action.Outcome{})
		sendAlert(agent, alertAccessDenied)
		return
	}
	d := opts.Gate.Decide(ctx, a)
	if !d.Allowed() {
		opts.Gate.Finish(a, d, action.Outcome{})
		sendAlert(agent, alertAccessDenied)
		return
	}
	start := time.Now()
	up, err := opts.Dialer.Dial(ctx, "tcp", t)
	if err != nil {
		var local *upstream.LocalError
		if errors.As(err, &local) {
			d = action.Denied("local-address", err.Error())
			sendAlert(agent, alertAccessDenied)
		}
		opts.Gate.Finish(a, d, action.Outcome{Error: err.Error(), Duration: time.Since(start)})
		return
	}
	if ip, ok := up.RemoteAddr().(*net.TCPAddr); ok {
		a.Destination.IP = ip.IP.String()
	}
	sent, recv := splice(agent, up)
	opts.Gate.Finish(a, d, action.Outcome{BytesUp: sent, BytesDown: recv, Duration: time.Since(start)})
}

// splice relays a passthrough flow. When the agent's side is the
// netstack's own connection, the sniffed bytes go first and the netstack's
// splice (pooled large buffers, readiness waits) does the rest.
func splice(agent net.Conn, up net.Conn) (sent, recv int64) {
	if rc, ok := agent.(*replayConn); ok {
		if nc, ok := rc.Conn.(*netstack.Conn); ok {
			if tc, ok := up.(*net.TCPConn); ok {
				n, err := up.Write(rc.buf)
				rc.buf = nil
				if err != nil {
					up.Close()
					return int64(n), 0
				}
				s, r := nc.Splice(tc)
				return int64(n) + s, r
			}
		}
	}
	return relay(agent, up)
}

var relayBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// relay copies both ways until both directions end, then closes both. A
// clean end of one direction is passed on as a half-close where the other
// side supports it.
func relay(agent net.Conn, up io.ReadWriteCloser) (sent, recv int64) {
	var once sync.Once
	closeBoth := func() { once.Do(func() { agent.Close(); up.Close() }) }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var err error
		sent, err = copyPooled(up, agent)
		if err != nil || !closeWrite(up) {
			closeBoth()
		}
	}()
	var err error
	recv, err = copyPooled(agent, up)
	if err != nil || !closeWrite(agent) {
		closeBoth()
	}
	wg.Wait()
	closeBoth()
	return sent, recv
}

func copyPooled(dst io.Writer, src io.Reader) (int64, error) {
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
}

// closeWrite half-closes c when it can; false means it cannot.
func closeWrite(c any) bool {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite() == nil
	}
	return false
}
