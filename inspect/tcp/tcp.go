// Package tcp inspects opaque TCP flows: the connection itself is the
// action. The upstream is dialled before the agent's handshake completes, so
// a deny or an unreachable upstream is a reset, exactly like a refused port.
package tcp

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/netstack"
)

// NewAction returns the connection-level action for a target.
func NewAction(t upstream.Target) *action.Action {
	a := &action.Action{Protocol: action.ProtoTCP, TCP: &action.TCP{}, Destination: Destination(t)}
	if t.Endpoint != nil {
		a.Endpoint = t.Endpoint.Name
		a.Credential = t.Endpoint.Credential
	}
	return a
}

// Destination is the policy input's destination for a target.
func Destination(t upstream.Target) action.Destination {
	d := action.Destination{Host: t.Host, Port: t.Port}
	if t.Host == "" {
		d.Host = t.IP.String()
		d.IP = t.IP.String()
	}
	return d
}

// Handle decides and forwards one opaque TCP flow.
func Handle(ctx context.Context, f *netstack.TCPFlow, t upstream.Target, gate action.Gate, dialer *upstream.Dialer) {
	a := NewAction(t)
	d := gate.Decide(ctx, a)
	if !d.Allowed() {
		f.Reject()
		gate.Finish(a, d, action.Outcome{})
		return
	}
	start := time.Now()
	up, err := dialer.Dial(ctx, "tcp", t)
	if err != nil {
		f.Reject()
		var local *upstream.LocalError
		if errors.As(err, &local) {
			d = action.Denied("local-address", err.Error())
		}
		gate.Finish(a, d, action.Outcome{Error: err.Error(), Duration: time.Since(start)})
		return
	}
	if ip, ok := up.RemoteAddr().(*net.TCPAddr); ok {
		a.Destination.IP = ip.IP.String()
	}
	c, err := f.Accept()
	if err != nil {
		up.Close()
		gate.Finish(a, d, action.Outcome{Error: err.Error(), Duration: time.Since(start)})
		return
	}
	sent, recv := c.Splice(up.(*net.TCPConn))
	gate.Finish(a, d, action.Outcome{BytesUp: sent, BytesDown: recv, Duration: time.Since(start)})
}

// Relay decides an accepted flow that turned out not to be HTTP or TLS
// (its first bytes, which conn replays, were sniffed): allowed, it is
// relayed to the upstream; denied, it is closed.
func Relay(ctx context.Context, conn net.Conn, t upstream.Target, gate action.Gate, dialer *upstream.Dialer) {
	defer conn.Close()
	a := NewAction(t)
	d := gate.Decide(ctx, a)
	if !d.Allowed() {
		gate.Finish(a, d, action.Outcome{})
		return
	}
	start := time.Now()
	up, err := dialer.Dial(ctx, "tcp", t)
	if err != nil {
		var local *upstream.LocalError
		if errors.As(err, &local) {
			d = action.Denied("local-address", err.Error())
		}
		gate.Finish(a, d, action.Outcome{Error: err.Error(), Duration: time.Since(start)})
		return
	}
	defer up.Close()
	if ip, ok := up.RemoteAddr().(*net.TCPAddr); ok {
		a.Destination.IP = ip.IP.String()
	}
	var sent, recv int64
	done := make(chan struct{})
	go func() {
		recv, _ = io.Copy(conn, up)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		close(done)
	}()
	sent, _ = io.Copy(up, conn)
	up.(*net.TCPConn).CloseWrite()
	<-done
	gate.Finish(a, d, action.Outcome{BytesUp: sent, BytesDown: recv, Duration: time.Since(start)})
}
