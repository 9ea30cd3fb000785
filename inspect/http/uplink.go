package http

import (
	"context"
	"fmt"
	"net"
	nethttp "net/http"
	"sync"
	"time"
)

// upstreamIdle closes an idle upstream connection; the next request
// redials (and re-verifies) it.
const upstreamIdle = 90 * time.Second

// uplink is the upstream side of one agent connection: a round tripper
// that starts on the connection dialled before the agent's handshake and
// redials the same verified destination with the same protocol when the
// server closes it.
type uplink struct {
	f     *flow
	proto string // ALPN negotiated upstream; "" for none
	rt    *nethttp.Transport

	mu    sync.Mutex
	first net.Conn
}

// transport is the upstream client: bodies pass as the server sent them,
// never through a proxy, at most one idle connection kept.
func transport(dial func(ctx context.Context, network, addr string) (net.Conn, error), protocols func(*nethttp.Protocols)) *nethttp.Transport {
	var p nethttp.Protocols
	protocols(&p)
	return &nethttp.Transport{
		Proxy:               nil,
		DialContext:         dial,
		DialTLSContext:      dial,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     upstreamIdle,
		ForceAttemptHTTP2:   p.HTTP2(), // needed with a custom DialTLSContext
		Protocols:           &p,
	}
}

func newUplink(f *flow, first net.Conn, proto string) *uplink {
	u := &uplink{f: f, proto: proto, first: first}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) { return u.dial(ctx) }
	u.rt = transport(dial, func(p *nethttp.Protocols) {
		switch {
		case !f.tls && f.proto == "h2":
			p.SetUnencryptedHTTP2(true) // the agent spoke prior-knowledge h2c
		case proto == "h2":
			p.SetHTTP2(true)
		default:
			p.SetHTTP1(true) // an HTTP/1.1 agent gets an HTTP/1.1 upstream
		}
	})
	return u
}

// newDeferredUplink dials on the first allowed request. An agent on HTTP/2
// is offered HTTP/2 upstream too, but HTTP/1.1 serves when the server has
// no HTTP/2; an agent on HTTP/1.1 stays on it (upgrades need it).
func newDeferredUplink(f *flow, agentProto string) *uplink {
	alpn := []string{"http/1.1"}
	if agentProto == "h2" {
		alpn = []string{"h2", "http/1.1"}
	}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, _, err := f.dialUpstream(ctx, alpn)
		return c, err
	}
	return &uplink{f: f, rt: transport(dial, func(p *nethttp.Protocols) {
		p.SetHTTP1(true)
		p.SetHTTP2(agentProto == "h2")
	})}
}

// dial hands out the first connection once, then dials anew.
func (u *uplink) dial(ctx context.Context) (net.Conn, error) {
	u.mu.Lock()
	c := u.first
	u.first = nil
	u.mu.Unlock()
	if c != nil {
		return c, nil
	}
	var alpn []string
	if u.proto != "" {
		alpn = []string{u.proto}
	}
	c, proto, err := u.f.dialUpstream(ctx, alpn)
	if err != nil {
		return nil, err
	}
	if proto != u.proto {
		c.Close()
		return nil, fmt.Errorf("upstream %s: negotiated %q on redial, %q before", u.f.hostPort(), proto, u.proto)
	}
	return c, nil
}

func (u *uplink) close() {
	u.rt.CloseIdleConnections()
	u.mu.Lock()
	if u.first != nil {
		u.first.Close()
		u.first = nil
	}
	u.mu.Unlock()
}
