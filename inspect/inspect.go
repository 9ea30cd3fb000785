// Package inspect routes each flow the netstack hands over to the inspector
// for its endpoint's protocol. Every inspector turns bytes into actions,
// asks the gate, enforces the decision in its protocol's own terms and
// forwards what was allowed.
package inspect

import (
	"context"
	"net/netip"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/inspect/tcp"
	"github.com/clawpatrol/clawpatrol/inspect/udp"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/netstack"
)

// Router implements netstack.Handler.
type Router struct {
	Config *config.Config
	Gate   action.Gate
	Dialer *upstream.Dialer
	Log    *zap.Logger
}

var _ netstack.Handler = (*Router)(nil)

// HandleTCP routes one TCP flow.
func (r *Router) HandleTCP(ctx context.Context, f *netstack.TCPFlow) {
	t, known := r.target(f.Dst, true)
	if !known {
		r.deny(f, t, unknownVirtual(t))
		return
	}
	tcp.Handle(ctx, f, t, r.Gate, r.Dialer)
}

// HandleUDP routes one UDP flow.
func (r *Router) HandleUDP(ctx context.Context, f *netstack.UDPFlow) {
	t, known := r.target(f.Dst, false)
	if !known {
		return // nothing was resolved to this address: drop
	}
	udp.Handle(ctx, f, t, r.Gate, r.Dialer)
}

// target turns a flow's destination into the verified target, matching
// endpoints for TCP. known is false for a virtual IP our DNS never handed
// out: the agent cannot mean any name by it.
func (r *Router) target(d netstack.Destination, matchEndpoint bool) (upstream.Target, bool) {
	t := upstream.Target{Host: d.Host, IP: d.IP.Unmap(), Port: d.Port}
	if d.Virtual() && d.Host == "" {
		return t, false
	}
	if matchEndpoint {
		ip := t.IP
		if d.Virtual() {
			ip = netip.Addr{} // a virtual IP says nothing about CIDR endpoints
		}
		t.Endpoint = r.Config.Match(d.Host, ip, d.Port)
	}
	return t, true
}

func unknownVirtual(t upstream.Target) action.Decision {
	return action.Denied("unknown-address", "no name was resolved to "+t.IP.String()+" in this session")
}

// deny refuses a flow before any inspector saw it, with an audit record.
func (r *Router) deny(f *netstack.TCPFlow, t upstream.Target, d action.Decision) {
	f.Reject()
	r.Gate.Finish(tcp.NewAction(t), d, action.Outcome{})
}
