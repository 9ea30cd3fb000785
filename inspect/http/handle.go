// Package http inspects HTTP flows, cleartext or inside TLS: it terminates
// the agent's TLS with a leaf from the local CA, serves HTTP/1.1 and HTTP/2
// to the agent, turns each request into an action, and forwards what the
// gate allows over a verified connection to the real server.
package http

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	nethttp "net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/inspect/tcp"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/tlsca"
)

const (
	// DefaultBodyLimit is limits.body's default: the request body bytes
	// the policy sees.
	DefaultBodyLimit = 1 << 20
	// handshakeTimeout bounds each TLS handshake, with the agent and upstream.
	handshakeTimeout = 10 * time.Second
	// idleTimeout closes an agent connection that sends no request for this long.
	idleTimeout = 5 * time.Minute
)

// Options configure the inspection of one flow.
type Options struct {
	Gate   action.Gate
	Dialer *upstream.Dialer
	// CA mints the certificates the agent sees; required for TLS flows.
	CA *tlsca.CA
	// UpstreamRoots verify the real server: the system roots plus the
	// endpoint's upstream_ca (see tlsca.UpstreamRoots). nil: system roots.
	UpstreamRoots *x509.CertPool
	// BodyLimit is limits.body; 0 means DefaultBodyLimit.
	BodyLimit int64
	Logger    *zap.Logger
	// DeferDial connects to a TLS upstream only once a request is allowed,
	// not before the agent's handshake. Nothing about the name then leaves
	// the machine (not even a DNS query) before the policy allowed something
	// there, at a price: the agent gets the protocol it prefers rather than
	// the server's (HTTP/2 to the agent may become HTTP/1.1 upstream), and
	// a certificate problem shows only as a 502. Meant for destinations no
	// endpoint names.
	DeferDial bool
	// Inject is called after an allow and before forwarding, with the
	// request about to go upstream; credentials are spliced in here. An
	// error denies the request (rule "credential").
	Inject func(a *action.Action, req *nethttp.Request) error
	// Response, when set, is called with each upstream response before it
	// is relayed; it may replace the body (redacting an echoed secret) and
	// must then drop Content-Length.
	Response func(a *action.Action, resp *nethttp.Response)
	// Describe, when set, is called with each request's action once its
	// facts, body prefix included, are known and before the gate decides.
	// It may turn the action into another protocol's (a Kubernetes API
	// request becomes a k8s action). A non-nil decision refuses the
	// request without asking the gate.
	Describe func(a *action.Action, r *nethttp.Request) *action.Decision
	// Refuse, when set, writes the answer to a refused request in place of
	// the plain-text one (a Kubernetes Status object). status is 403, or
	// 400 and 431 for requests that could not be read.
	Refuse func(w nethttp.ResponseWriter, a *action.Action, status int, d action.Decision)
	// ClientCert, when set, is presented to a TLS upstream that asks for a
	// client certificate (a Kubernetes credential's client_cert).
	ClientCert *tls.Certificate
}

func (o Options) withDefaults() Options {
	if o.BodyLimit <= 0 {
		o.BodyLimit = DefaultBodyLimit
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Dialer == nil {
		o.Dialer = upstream.NewDialer()
	}
	return o
}

// flow is one agent connection under inspection.
type flow struct {
	opts  Options
	t     upstream.Target
	name  string // the verified host: t.Host, or the IP literal dialled
	tls   bool
	proto string // "h2" or "http/1.1", as negotiated with the agent
	agent net.Conn
	log   *zap.Logger

	// refuse, when set, is the answer to every request (a TLS server name
	// that contradicts the resolved name).
	refuse *action.Decision
	// upErr, when set, is why no upstream connection exists: every allowed
	// request gets a 502 (or a deny, for a local address).
	upErr error
	up    *uplink

	mu     sync.Mutex
	destIP string
}

// Handle inspects one flow Sniff classified as TLS or HTTP, until the agent
// closes it or ctx ends. It closes agent.
//
// For TLS it dials and verifies the upstream first, offering the agent's
// ALPN list, so the protocol the agent gets is the one the server speaks
// (h2 stays h2). The TLS server name must be t.Host when the agent resolved
// a name; an empty one is taken to mean t.Host. An Opaque flow is closed
// untouched: the router decides those as tcp actions.
func Handle(ctx context.Context, agent net.Conn, t upstream.Target, h Hello, opts Options) {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer agent.Close()
	// Blocking reads on the agent's side end when ctx does.
	raw := agent
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	f := &flow{opts: opts, t: t, name: verifiedName(t), proto: "http/1.1",
		log: opts.Logger.With(zap.String("host", verifiedName(t)), zap.Int("port", t.Port))}
	switch h.Kind {
	case TLS:
		f.tls = true
		conn, ok := f.startTLS(ctx, agent, h)
		if !ok {
			return
		}
		agent = conn
	case HTTP:
	default:
		f.log.Debug("not http", zap.Int("peek", len(h.Peek)))
		return
	}
	f.agent = agent
	defer agent.Close() // for TLS, a close_notify before the close below
	defer func() {
		if f.up != nil {
			f.up.close()
		}
	}()
	if f.proto == "h2" {
		f.serveH2(ctx, agent)
		return
	}
	f.serveH1(ctx)
}

// verifiedName is the destination as policy and certificates see it.
func verifiedName(t upstream.Target) string {
	if t.Host != "" {
		return strings.TrimSuffix(strings.ToLower(t.Host), ".")
	}
	return t.IP.Unmap().String()
}

func sameHost(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// httpProtos keeps the ALPN protocols we can serve, in the agent's order.
func httpProtos(alpn []string) []string {
	var out []string
	for _, p := range alpn {
		if p == "h2" || p == "http/1.1" {
			out = append(out, p)
		}
	}
	return out
}

// startTLS dials the upstream, then completes the agent's handshake with a
// leaf for the verified name and the upstream's ALPN.
func (f *flow) startTLS(ctx context.Context, raw net.Conn, h Hello) (net.Conn, bool) {
	if f.opts.CA == nil {
		f.refuseTLS(raw, h, action.Denied("tls-no-ca", "no local CA is configured to inspect TLS"), alertInternalError)
		return nil, false
	}
	offered := httpProtos(h.ALPN)
	if len(h.ALPN) > 0 && len(offered) == 0 {
		f.refuseTLS(raw, h, action.Denied("tls-not-http", fmt.Sprintf(
			"the agent offered ALPN %s; only HTTP inside TLS is inspected (list the host under passthrough to splice it)",
			strings.Join(h.ALPN, ","))), alertNoApplicationProtocol)
		return nil, false
	}
	certName := f.name
	proto := ""
	if len(offered) > 0 {
		proto = offered[0]
	}
	if f.t.Host != "" && h.SNI != "" && !sameHost(h.SNI, f.t.Host) {
		// The agent resolved one name and asks the server for another
		// (domain fronting). Finish the handshake under the name it asked
		// for, so it can read why every request is refused.
		d := action.Denied("host-mismatch", fmt.Sprintf("TLS server name %q differs from %q, the name the agent resolved", h.SNI, f.t.Host))
		f.refuse = &d
		certName = h.SNI
	} else if f.opts.DeferDial {
		f.up = newDeferredUplink(f, proto)
	} else if up, err := f.dialTLS(ctx, offered); err != nil {
		f.upErr = err
		f.log.Debug("upstream", zap.Error(err))
	} else {
		f.up = up
		proto = up.proto
	}
	cert, err := f.opts.CA.GetCertificate(certName)
	if err != nil {
		d := action.Denied("host-mismatch", fmt.Sprintf("TLS server name %q is not a host name", h.SNI))
		if f.refuse == nil {
			d = action.Denied("tls-certificate", err.Error())
		}
		f.refuseTLS(raw, h, d, alertUnrecognizedName)
		return nil, false
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{*cert},
		MinVersion:   tls.VersionTLS12,
		// crypto/tls parses the hello again: it must read the same name.
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			if chi.ServerName != h.SNI {
				return nil, fmt.Errorf("server name %q differs from the sniffed %q", chi.ServerName, h.SNI)
			}
			return nil, nil
		},
	}
	if proto != "" {
		cfg.NextProtos = []string{proto}
	}
	tc := tls.Server(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		f.log.Debug("agent handshake", zap.Error(err))
		return nil, false
	}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		f.proto = "h2"
	}
	return tc, true
}

// upstreamError says why the upstream could not be used; its text is what
// the agent reads in the 502.
type upstreamError struct {
	name string
	cert bool // the server's certificate did not verify
	err  error
}

func (e *upstreamError) Error() string {
	if e.cert {
		return fmt.Sprintf("upstream certificate invalid for %s: %v", e.name, e.err)
	}
	return fmt.Sprintf("upstream unreachable: %s: %v", e.name, e.err)
}

func (e *upstreamError) Unwrap() error { return e.err }

// dialTLS connects and handshakes with the upstream, verifying it for the
// verified name against UpstreamRoots.
func (f *flow) dialTLS(ctx context.Context, alpn []string) (*uplink, error) {
	c, proto, err := f.dialUpstream(ctx, alpn)
	if err != nil {
		return nil, err
	}
	return newUplink(f, c, proto), nil
}

// dialUpstream opens one connection to the upstream: TLS when the flow is
// TLS, with alpn offered. proto is the negotiated protocol.
func (f *flow) dialUpstream(ctx context.Context, alpn []string) (net.Conn, string, error) {
	raw, err := f.opts.Dialer.Dial(ctx, "tcp", f.t)
	if err != nil {
		return nil, "", &upstreamError{name: f.hostPort(), err: err}
	}
	if a, ok := raw.RemoteAddr().(*net.TCPAddr); ok {
		f.setDestIP(a.IP.String())
	}
	if !f.tls {
		return raw, "", nil
	}
	cfg := &tls.Config{
		ServerName: f.name,
		RootCAs:    f.opts.UpstreamRoots,
		NextProtos: alpn,
		MinVersion: tls.VersionTLS12,
	}
	if f.opts.ClientCert != nil {
		cfg.Certificates = []tls.Certificate{*f.opts.ClientCert}
	}
	tc := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, "", &upstreamError{name: f.hostPort(), cert: isCertError(err), err: err}
	}
	return tc, tc.ConnectionState().NegotiatedProtocol, nil
}

func isCertError(err error) bool {
	var verr *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &verr) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid)
}

// setDestIP records the upstream address once known; h2 streams and a
// redial may race on it.
func (f *flow) setDestIP(ip string) {
	f.mu.Lock()
	f.destIP = ip
	f.mu.Unlock()
}

func (f *flow) getDestIP() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.destIP
}

// hostPort is the verified name with the port the agent dialled.
func (f *flow) hostPort() string {
	return net.JoinHostPort(f.name, strconv.Itoa(f.t.Port))
}

// authority is the verified name as a URL authority: the port only when
// it is not the scheme's default.
func (f *flow) authority() string {
	if (f.tls && f.t.Port == 443) || (!f.tls && f.t.Port == 80) || f.t.Port == 0 {
		if strings.Contains(f.name, ":") {
			return "[" + f.name + "]"
		}
		return f.name
	}
	return f.hostPort()
}

// baseAction is the action skeleton every request of this flow shares.
func (f *flow) baseAction(protocol string) *action.Action {
	a := tcp.NewAction(f.t)
	a.Protocol, a.TCP = protocol, nil
	a.Destination.TLS = f.tls
	if ip := f.getDestIP(); ip != "" {
		a.Destination.IP = ip
	}
	return a
}

// TLS alerts sent when a handshake is refused before it starts
// (RFC 8446 §6).
const (
	alertAccessDenied          = 49
	alertInternalError         = 80
	alertUnrecognizedName      = 112
	alertNoApplicationProtocol = 120
)

// sendAlert writes a fatal TLS alert record, so the agent's TLS library
// reports a reason instead of a bare EOF.
func sendAlert(c net.Conn, desc byte) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte{21, 3, 3, 0, 2, 2, desc})
}

// refuseTLS records a connection refused at the TLS layer and closes it.
func (f *flow) refuseTLS(raw net.Conn, h Hello, d action.Decision, alert byte) {
	a := f.baseAction(action.ProtoTLS)
	a.TLS = &action.TLS{SNI: h.SNI, ALPN: h.ALPN}
	f.opts.Gate.Finish(a, d, action.Outcome{})
	sendAlert(raw, alert)
}
