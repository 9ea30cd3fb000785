// Package mysql inspects MySQL and MariaDB connections: it speaks the
// client/server protocol to the agent and to the server, turns every query
// and prepared statement into an action, and forwards only what the gate
// allows. A denied statement gets ERR 1142 and the session stays usable.
// It can log in upstream for the agent (login offload), so the agent only
// ever holds a placeholder password, and it never lets the server read a
// file from the agent's side (LOAD DATA LOCAL INFILE).
package mysql

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/inspect/tcp"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

const (
	// DefaultTextLimit is limits.body's default: the query bytes the
	// policy sees.
	DefaultTextLimit = 1 << 20
	// startupTimeout bounds the whole startup: dialling, the agent's login
	// and logging in upstream.
	startupTimeout = 30 * time.Second
)

// Options configure the inspection of one connection.
type Options struct {
	Gate   action.Gate
	Dialer *upstream.Dialer
	Logger *zap.Logger
	// Login, when set, offloads the login: the agent authenticates to
	// clawpatrol with the placeholder and clawpatrol logs in upstream with
	// the real secret. nil relays the agent's own login to the server.
	Login *Login
	// UpstreamTLS is the endpoint's upstream_tls: disable, prefer (the
	// default), require (encrypted, certificate not checked) or
	// verify-full (chain and name checked).
	UpstreamTLS string
	// UpstreamRoots verify the server under verify-full; nil: system roots.
	UpstreamRoots *x509.CertPool
	// ServerName is the name verify-full checks; "" means the target's
	// host, else the host of the endpoint's upstream address.
	ServerName string
	// AgentTLS, when set, offers the agent TLS with this server config (a
	// leaf from the local CA). nil offers none: the agent's side is
	// cleartext inside clawpatrol's own network stack.
	AgentTLS *tls.Config
	// TextLimit is limits.body: the query bytes the policy sees; longer
	// text is still forwarded whole, and marked sql.truncated. 0 means
	// DefaultTextLimit.
	TextLimit int
}

// Login is a login offload: what the agent must present and what
// clawpatrol presents upstream instead.
type Login struct {
	// Username is the user clawpatrol logs in as (the credential's
	// username); "" keeps the one the agent sent.
	Username string
	// Password is the real secret.
	Password string
	// Placeholder is the password the agent must present.
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
	if o.UpstreamTLS == "" {
		o.UpstreamTLS = "prefer"
	}
	return o
}

// session is one agent connection under inspection.
type session struct {
	opts Options
	t    upstream.Target
	log  *zap.Logger
	dest action.Destination

	agent net.Conn
	ar    *packetReader
	aw    *packetWriter
	up    net.Conn
	ur    *packetReader
	uw    *packetWriter

	caps     uint32 // what both sides speak, of passedCaps
	greeted  uint32 // the capabilities of the server's greeting
	user     string // the user the server knows the session as
	database string
	status   uint16 // the server's status flags, from its last OK or EOF
	stmts    map[uint32]bool
}

// Handle inspects one agent connection to a MySQL endpoint until either
// side closes it or ctx ends. agent is the accepted connection; t is where
// it was going.
func Handle(ctx context.Context, agent net.Conn, t upstream.Target, opts Options) {
	opts = opts.withDefaults()
	s := &session{
		opts:  opts,
		t:     t,
		log:   opts.Logger.With(zap.String("endpoint", endpointName(t)), zap.String("host", t.Host)),
		dest:  tcp.Destination(t),
		agent: agent,
		ar:    newPacketReader(agent, true),
		aw:    newPacketWriter(agent),
		stmts: map[uint32]bool{},
	}
	defer agent.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		// Blocked reads and writes on either side end with ctx.
		agent.SetDeadline(aLongTimeAgo)
		if s.up != nil {
			s.up.SetDeadline(aLongTimeAgo)
		}
	})
	defer stop()

	deadline := time.Now().Add(startupTimeout)
	agent.SetDeadline(deadline)
	if err := s.start(ctx, deadline); err != nil {
		s.log.Debug("mysql startup", zap.Error(err))
		if s.up != nil {
			s.up.Close()
		}
		return
	}
	defer s.up.Close()
	s.agent.SetDeadline(time.Time{})
	s.up.SetDeadline(time.Time{})
	for {
		err := s.command(ctx)
		if err == nil {
			continue
		}
		if errors.Is(err, errProtocol) {
			// The agent broke the framing: say so and close, as a server does.
			s.log.Info("mysql agent side", zap.Error(err))
			s.aw.write(errPacket(erMalformedPacket, "HY000", "clawpatrol: "+err.Error()))
			s.aw.flush()
		} else if !isClosed(err) {
			s.log.Debug("mysql", zap.Error(err))
		}
		return
	}
}

var aLongTimeAgo = time.Unix(1, 0)

func endpointName(t upstream.Target) string {
	if t.Endpoint != nil {
		return t.Endpoint.Name
	}
	return ""
}

// isClosed reports errors that only say a side went away.
func isClosed(err error) bool {
	var ne net.Error
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne) && ne.Timeout()
}

// newAction returns an action of this connection with the sql block q.
func (s *session) newAction(q *action.SQL) *action.Action {
	a := &action.Action{Protocol: action.ProtoSQL, Destination: s.dest, SQL: q}
	if ep := s.t.Endpoint; ep != nil {
		a.Endpoint, a.Credential = ep.Name, ep.Credential
	}
	return a
}
