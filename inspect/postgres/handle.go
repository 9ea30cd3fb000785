// Package postgres inspects PostgreSQL connections: it speaks the v3 wire
// protocol to the agent and to the server, turns every query (simple Query,
// or extended Parse) into an action, and forwards only what the gate allows.
// A denied statement gets the server's own kind of error and the session
// stays usable. It can also log in upstream for the agent (login offload),
// so the agent only ever holds a placeholder password.
package postgres

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync/atomic"
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
	// startupTimeout bounds the whole startup: the agent's login, dialling
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
	// default, as libpq's sslmode), require (encrypted, certificate not
	// checked) or verify-full (chain and name checked).
	UpstreamTLS string
	// UpstreamRoots verify the server under verify-full; nil: system roots.
	UpstreamRoots *x509.CertPool
	// ServerName is the name verify-full checks; "" means the target's
	// host, else the host of the endpoint's upstream address.
	ServerName string
	// AgentTLS, when set, accepts the agent's SSLRequest with this server
	// config (a leaf from the local CA). nil answers 'N': the agent's side
	// is cleartext inside clawpatrol's own network stack.
	AgentTLS *tls.Config
	// TextLimit is limits.body: the query bytes the policy sees; longer
	// text is still forwarded whole, and marked sql.truncated. 0 means
	// DefaultTextLimit.
	TextLimit int
	// Cancels maps the cancel keys handed to agents to the servers' real
	// ones. Share one per session so a CancelRequest, which comes on a new
	// connection, finds its backend. nil drops cancel requests.
	Cancels *Cancels
}

// Login is a login offload: what the agent must present and what
// clawpatrol presents upstream instead.
type Login struct {
	// Username is the role clawpatrol logs in as (the credential's
	// username); "" keeps the one the agent sent.
	Username string
	// Password is the real secret.
	Password string
	// Placeholder is the password the agent must present.
	Placeholder string
	// Method is how the agent authenticates: "scram-sha-256" (the
	// default) or "password" (cleartext).
	Method string
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

	agent net.Conn
	ar    *reader // from the agent
	aw    *bufio.Writer
	up    net.Conn
	upPtr atomic.Pointer[net.Conn] // up, for ctx's cancellation during startup
	ur    *reader                  // from the server
	uw    *bufio.Writer

	user, database string
	params         [][2]string // startup parameters passed on
	dest           action.Destination
	agentTLS       bool
	key            cancelKey // the key the agent was given
	deadline       time.Time // of the startup

	queue    queue
	ignoring bool // server side: an extended-query error, until ReadyForQuery
	// Set from the server's ParameterStatus: text whose meaning depends on
	// them cannot be parsed reliably (see ambiguous).
	scsOff         atomic.Bool
	unsafeEncoding atomic.Bool
}

// Handle inspects one agent connection to a Postgres endpoint until either
// side closes it or ctx ends. agent is the accepted connection; t is where
// it was going.
func Handle(ctx context.Context, agent net.Conn, t upstream.Target, opts Options) {
	opts = opts.withDefaults()
	s := &session{
		opts:  opts,
		t:     t,
		log:   opts.Logger.With(zap.String("endpoint", endpointName(t)), zap.String("host", t.Host)),
		agent: agent,
		ar:    newReader(agent),
		aw:    bufio.NewWriterSize(agent, bufferSize),
		dest:  tcp.Destination(t),
	}
	defer agent.Close()
	stop := context.AfterFunc(ctx, func() {
		agent.SetDeadline(aLongTimeAgo)
		if up := s.upConn(); up != nil {
			up.SetDeadline(aLongTimeAgo)
		}
	})
	defer stop()

	s.deadline = time.Now().Add(startupTimeout)
	agent.SetDeadline(s.deadline)
	if err := s.start(ctx); err != nil {
		s.log.Debug("postgres startup", zap.Error(err))
		if s.up != nil {
			s.up.Close()
		}
		return
	}
	defer s.up.Close()
	if s.opts.Cancels != nil {
		defer s.opts.Cancels.remove(s.key)
	}
	agent.SetDeadline(time.Time{})
	s.up.SetDeadline(time.Time{})
	s.dest.TLS = s.agentTLS
	s.run(ctx)
}

var aLongTimeAgo = time.Unix(1, 0)

// setUp makes c the upstream connection.
func (s *session) setUp(c net.Conn) {
	s.up = c
	s.upPtr.Store(&c)
	s.ur = newReader(c)
	s.uw = bufio.NewWriterSize(c, bufferSize)
}

// upConn returns the upstream connection once it exists (ctx may end
// while it is being set up).
func (s *session) upConn() net.Conn {
	if p := s.upPtr.Load(); p != nil {
		return *p
	}
	return nil
}

func endpointName(t upstream.Target) string {
	if t.Endpoint != nil {
		return t.Endpoint.Name
	}
	return ""
}

// run relays the session after startup: the agent's messages are inspected
// on this goroutine, the server's are relayed on another.
func (s *session) run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.backend(); err != nil && !isClosed(err) {
			s.log.Debug("postgres server side", zap.Error(err))
		}
		// The server is gone: wake the agent side up.
		s.agent.SetReadDeadline(aLongTimeAgo)
	}()
	err := s.frontend(ctx)
	s.up.SetReadDeadline(aLongTimeAgo)
	<-done
	if errors.Is(err, errProtocol) {
		// The agent broke the framing: say so and close, as a server does.
		s.log.Info("postgres agent side", zap.Error(err))
		s.aw.Write(errorResponse("FATAL", "08P01", "clawpatrol: "+err.Error()))
		s.aw.Flush()
	} else if err != nil && !isClosed(err) {
		s.log.Debug("postgres agent side", zap.Error(err))
	}
	s.queue.drain(s.opts.Gate, "the connection closed before the server answered")
}

// isClosed reports errors that only say a side went away.
func isClosed(err error) bool {
	var ne net.Error
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne) && ne.Timeout()
}
