// Package inspect routes each flow the netstack hands over to the inspector
// for its endpoint's protocol. Every inspector turns bytes into actions,
// asks the gate, enforces the decision in its protocol's own terms and
// forwards what was allowed.
package inspect

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/creds"
	"github.com/clawpatrol/clawpatrol/inspect/clickhouse"
	inspecthttp "github.com/clawpatrol/clawpatrol/inspect/http"
	"github.com/clawpatrol/clawpatrol/inspect/mysql"
	"github.com/clawpatrol/clawpatrol/inspect/postgres"
	"github.com/clawpatrol/clawpatrol/inspect/tcp"
	"github.com/clawpatrol/clawpatrol/inspect/udp"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/netstack"
	"github.com/clawpatrol/clawpatrol/tlsca"
)

// serverFirstPorts carry protocols where the server speaks first (SSH,
// SMTP, MySQL, ...): sniffing them would wait for bytes that never come, so
// they are decided as opaque TCP straight away.
var serverFirstPorts = []int{21, 22, 23, 25, 110, 143, 465, 587, 993, 995, 3306, 5900}

// Router implements netstack.Handler.
type Router struct {
	cfg    *config.Config
	gate   action.Gate
	dialer *upstream.Dialer
	ca     *tlsca.CA
	creds  *creds.Store
	log    *zap.Logger
	// roots verify each endpoint's upstream (system roots + upstream_ca);
	// the "" entry is for flows to no endpoint. Built at first use.
	rootsMu sync.Mutex
	roots   map[string]*x509.CertPool
	// pgCancels finds the session a Postgres CancelRequest (which comes on
	// a connection of its own) is meant for.
	pgCancels postgres.Cancels
	// connectRefusals remembers refused Kubernetes exec/attach requests,
	// so kubectl's SPDY retry of a refused WebSocket is not asked again.
	connectRefusals *refusals
}

var _ netstack.Handler = (*Router)(nil)

// NewRouter builds the router of one session.
func NewRouter(cfg *config.Config, gate action.Gate, dialer *upstream.Dialer, ca *tlsca.CA, store *creds.Store, log *zap.Logger) (*Router, error) {
	r := &Router{cfg: cfg, gate: gate, dialer: dialer, ca: ca, creds: store, log: log, roots: map[string]*x509.CertPool{},
		connectRefusals: newRefusals()}
	// A bad upstream_ca stops the run now; the pools themselves, with the
	// system roots (some milliseconds to load), are built at first use.
	for _, name := range cfg.EndpointNames() {
		if f := cfg.Endpoints[name].UpstreamCA; f != "" {
			if _, err := tlsca.ParseCAFile(f); err != nil {
				return nil, fmt.Errorf("endpoints.%s.upstream_ca: %w", name, err)
			}
		}
	}
	return r, nil
}

// upstreamRoots verifies an endpoint's upstream (system roots plus its
// upstream_ca); endpoint "" is for flows to no endpoint.
func (r *Router) upstreamRoots(endpoint string) *x509.CertPool {
	r.rootsMu.Lock()
	defer r.rootsMu.Unlock()
	if pool, ok := r.roots[endpoint]; ok {
		return pool
	}
	var files []string
	if e, ok := r.cfg.Endpoints[endpoint]; ok && e.UpstreamCA != "" {
		files = append(files, e.UpstreamCA)
	}
	pool, err := tlsca.UpstreamRoots(files...)
	if err != nil {
		// Checked at start-up; if the file changed since, verify against
		// nothing rather than against less than configured.
		r.log.Error("upstream roots", zap.String("endpoint", endpoint), zap.Error(err))
		pool = x509.NewCertPool()
	}
	r.roots[endpoint] = pool
	return pool
}

// HandleTCP routes one TCP flow.
func (r *Router) HandleTCP(ctx context.Context, f *netstack.TCPFlow) {
	t, known := r.target(f.Dst, true)
	if !known {
		f.Reject()
		r.gate.Finish(tcp.NewAction(t), unknownVirtual(t), action.Outcome{})
		return
	}
	protocol := ""
	if t.Endpoint != nil {
		protocol = t.Endpoint.Protocol
	}
	switch {
	case protocol == "tcp" || (t.Endpoint == nil && slices.Contains(serverFirstPorts, t.Port)):
		tcp.Handle(ctx, f, t, r.gate, r.dialer)
		return
	case protocol == "postgres":
		// The client speaks first, and not HTTP: no sniffing.
		if c, err := f.Accept(); err == nil {
			postgres.Handle(ctx, c, t, r.postgresOptions(t))
		}
		return
	case protocol == "mysql":
		// The server speaks first: no sniffing either.
		if c, err := f.Accept(); err == nil {
			mysql.Handle(ctx, c, t, r.mysqlOptions(t))
		}
		return
	case protocol == "clickhouse":
		// ClickHouse's HTTP interface, in plain HTTP on the agent's side.
		if c, err := f.Accept(); err == nil {
			clickhouse.Handle(ctx, c, t, r.clickhouseOptions(t))
		}
		return
	}
	c, err := f.Accept()
	if err != nil {
		return
	}
	hello, conn, err := inspecthttp.Sniff(c, inspecthttp.SniffTimeout)
	if err != nil {
		c.Close()
		return
	}
	opts := r.httpOptions(t)
	switch {
	case hello.Kind == inspecthttp.TLS && r.cfg.IsPassthrough(t.Host):
		inspecthttp.HandlePassthrough(ctx, conn, t, hello, opts)
	case hello.Kind == inspecthttp.TLS, hello.Kind == inspecthttp.HTTP:
		inspecthttp.Handle(ctx, conn, t, hello, opts)
	default:
		tcp.Relay(ctx, conn, t, r.gate, r.dialer)
	}
}

// HandleUDP routes one UDP flow.
func (r *Router) HandleUDP(ctx context.Context, f *netstack.UDPFlow) {
	t, known := r.target(f.Dst, false)
	if !known {
		return // nothing was resolved to this address: drop
	}
	udp.Handle(ctx, f, t, r.gate, r.dialer)
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
		t.Endpoint = r.cfg.Match(d.Host, ip, d.Port)
	}
	return t, true
}

func unknownVirtual(t upstream.Target) action.Decision {
	return action.Denied("unknown-address", "no name was resolved to "+t.IP.String()+" in this session")
}
