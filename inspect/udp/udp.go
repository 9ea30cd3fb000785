// Package udp decides UDP flows: the first datagram of a flow is the action;
// after an allow, datagrams are relayed both ways until the flow idles.
package udp

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/inspect/tcp"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/netstack"
)

// Handle decides and relays one UDP flow.
func Handle(ctx context.Context, f *netstack.UDPFlow, t upstream.Target, gate action.Gate, dialer *upstream.Dialer) {
	buf := make([]byte, 65535)
	f.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := f.Conn.Read(buf)
	if err != nil {
		return
	}
	a := &action.Action{Protocol: action.ProtoUDP, UDP: &action.UDP{Size: n}, Destination: tcp.Destination(t)}
	d := gate.Decide(ctx, a)
	if !d.Allowed() {
		gate.Finish(a, d, action.Outcome{})
		return
	}
	start := time.Now()
	up, err := dialer.Dial(ctx, "udp", t)
	if err != nil {
		var local *upstream.LocalError
		if errors.As(err, &local) {
			d = action.Denied("local-address", err.Error())
		}
		gate.Finish(a, d, action.Outcome{Error: err.Error()})
		return
	}
	if _, err := up.Write(buf[:n]); err != nil {
		up.Close()
		gate.Finish(a, d, action.Outcome{Error: err.Error()})
		return
	}
	sent, recv := f.Relay(up.(*net.UDPConn))
	gate.Finish(a, d, action.Outcome{BytesUp: int64(n) + sent, BytesDown: recv, Duration: time.Since(start)})
}
