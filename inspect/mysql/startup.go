package mysql

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
	"github.com/clawpatrol/clawpatrol/sqlfacts"
)

// start connects to the server, greets the agent in its name, logs the
// agent in and the session in upstream. On failure the agent has been told
// why, as far as it can be.
func (s *session) start(ctx context.Context, deadline time.Time) error {
	up, err := s.opts.Dialer.Dial(ctx, "tcp", s.t)
	if err != nil {
		var local *upstream.LocalError
		if errors.As(err, &local) {
			a := s.newAction(&action.SQL{Dialect: sqlfacts.DialectMySQL})
			s.opts.Gate.Finish(a, action.Denied("local-address", local.Error()), action.Outcome{Error: err.Error()})
		}
		s.fail(errPacket(erHandshake, "08S01", "clawpatrol: cannot connect to the database: "+err.Error()), 0)
		return err
	}
	s.setUp(up)
	up.SetDeadline(deadline)
	if ip, ok := up.RemoteAddr().(*net.TCPAddr); ok {
		s.dest.IP = ip.IP.String()
	}
	gp, err := s.ur.next(false, maxSmall)
	if err != nil {
		s.fail(errPacket(erHandshake, "08S01", "clawpatrol: the database sent no greeting"), 0)
		return fmt.Errorf("greeting: %w", err)
	}
	g, err := parseGreeting(gp)
	if err != nil {
		s.fail(errPacket(erHandshake, "08S01", "clawpatrol: "+err.Error()), 0)
		return fmt.Errorf("greeting: %w", err)
	}
	s.status, s.greeted = g.status, g.caps

	// The agent sees the server's greeting, with the capabilities
	// clawpatrol relays, and its own nonce when it checks the login.
	offer := *g
	offer.caps = g.caps&passedCaps | capLongPassword
	if s.opts.AgentTLS != nil {
		offer.caps |= capSSL
	}
	if s.opts.Login != nil {
		offer.nonce, offer.plugin = newNonce(), nativePassword
	}
	s.aw.seq = 0
	s.aw.write(offer.build())
	if err := s.aw.flush(); err != nil {
		return err
	}
	resp, err := s.agentResponse()
	if err != nil {
		return err
	}
	// Packets to the agent are numbered on from its response.
	s.aw.seq = s.ar.seq + 1
	s.caps = resp.caps & offer.caps & passedCaps
	if s.caps&neededCaps != neededCaps {
		s.fail(errPacket(erHandshake, "08S01", "clawpatrol: the client must speak the 4.1 protocol with plugin authentication"), s.aw.seq)
		return errors.New("client too old")
	}
	s.user = resp.user
	if s.opts.Login != nil {
		if err := s.authenticateAgent(resp, offer.nonce); err != nil {
			s.fail(errPacket(erAccessDenied, "28000", fmt.Sprintf("Access denied for user '%s' (using password: YES)", resp.user)), s.aw.seq)
			return err
		}
		if s.opts.Login.Username != "" {
			s.user = s.opts.Login.Username
		}
	}
	if err := s.negotiateTLS(resp); err != nil {
		s.fail(errPacket(erHandshake, "08S01", "clawpatrol: "+err.Error()), s.aw.seq)
		return err
	}
	var use *decided
	if resp.db != "" {
		// Connecting with a database selects it: an action like USE.
		if use = s.decideUse(ctx, resp.db); !use.d.Allowed() {
			s.opts.Gate.Finish(use.a, use.d, action.Outcome{})
			s.fail(denyPacket(use.d), s.aw.seq)
			return errors.New("initial database denied")
		}
	}
	if s.opts.Login != nil {
		err = s.offloadLogin(g, resp)
	} else {
		err = s.passLogin(resp)
	}
	if use != nil {
		out := action.Outcome{Duration: time.Since(use.start)}
		if err != nil {
			out.Error = err.Error()
		}
		s.opts.Gate.Finish(use.a, use.d, out)
	}
	if err != nil {
		var r *refusal
		if errors.As(err, &r) {
			s.fail(r.packet, s.aw.seq)
		} else if !isClosed(err) {
			s.fail(errPacket(erHandshake, "08S01", "clawpatrol: logging in to the database: "+err.Error()), s.aw.seq)
		}
		return err
	}
	s.database = resp.db
	return nil
}

func (s *session) setUp(c net.Conn) {
	s.up = c
	s.ur = newPacketReader(c, false)
	s.uw = newPacketWriter(c)
}

// fail tells the agent why the connection ends, in a packet numbered seq.
func (s *session) fail(p []byte, seq byte) {
	s.aw.seq = seq
	s.aw.write(p)
	s.aw.flush()
}

// agentResponse reads the agent's handshake response, switching to TLS
// first when it asks.
func (s *session) agentResponse() (*handshakeResponse, error) {
	p, err := s.ar.next(false, maxSmall)
	if err != nil {
		return nil, fmt.Errorf("handshake response: %w", err)
	}
	if sslRequest(p) && s.opts.AgentTLS != nil {
		// The client's hello may be read into the buffer already.
		tc := tls.Server(&bufferedConn{Conn: s.agent, r: s.ar.br}, s.opts.AgentTLS)
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("agent TLS: %w", err)
		}
		seq := s.ar.seq
		s.agent = tc
		s.ar, s.aw = newPacketReader(tc, true), newPacketWriter(tc)
		s.ar.seq = seq
		s.dest.TLS = true
		if p, err = s.ar.next(false, maxSmall); err != nil {
			return nil, fmt.Errorf("handshake response: %w", err)
		}
	}
	resp, err := parseHandshakeResponse(p)
	if err != nil {
		s.fail(errPacket(erHandshake, "08S01", "clawpatrol: "+err.Error()), s.ar.seq+1)
		return nil, err
	}
	return resp, nil
}

// negotiateTLS asks the server for TLS per upstream_tls, with an
// SSLRequest numbered 1.
func (s *session) negotiateTLS(resp *handshakeResponse) error {
	mode := s.opts.UpstreamTLS
	offered := s.greeted&capSSL != 0
	s.uw.seq = 1
	switch {
	case mode == "disable":
		return nil
	case !offered && mode == "prefer":
		return nil
	case !offered:
		return fmt.Errorf("the database does not offer TLS (upstream_tls: %s)", mode)
	}
	req := *resp
	req.caps = s.upstreamCaps(resp) | capSSL
	s.uw.write(req.sslRequestPacket())
	if err := s.uw.flush(); err != nil {
		return err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if mode == "verify-full" {
		cfg.RootCAs = s.opts.UpstreamRoots
		cfg.ServerName = serverName(s.opts, s.t)
	} else {
		// prefer and require encrypt without checking who answers, as
		// the MySQL client's ssl-mode does; verify-full checks.
		cfg.InsecureSkipVerify = true
	}
	if s.ur.br.Buffered() > 0 {
		// Nothing may come before the handshake: it would pass for
		// what the server said under TLS.
		return errors.New("the database sent data before the TLS handshake")
	}
	tc := tls.Client(s.up, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake with the database: %w", err)
	}
	seq := s.uw.seq
	s.setUp(tc)
	s.uw.seq = seq
	return nil
}

// serverName is the name verify-full checks.
func serverName(o Options, t upstream.Target) string { return t.ServerName(o.ServerName) }

// upstreamCaps are the capabilities clawpatrol asks the server for.
func (s *session) upstreamCaps(resp *handshakeResponse) uint32 {
	caps := s.caps | neededCaps | capLongPassword
	if resp.db != "" {
		caps |= capConnectWithDB
	} else {
		caps &^= capConnectWithDB
	}
	if s.upTLS() {
		caps |= capSSL
	}
	return caps
}

// offloadLogin logs in upstream as the configured user with the real
// secret, then tells the agent it is in.
func (s *session) offloadLogin(g *greeting, resp *handshakeResponse) error {
	auth, err := s.upstreamAuth(g.plugin, g.nonce)
	if err != nil {
		return err
	}
	out := handshakeResponse{caps: s.upstreamCaps(resp), maxPacket: resp.maxPacket, charset: resp.charset,
		user: s.user, auth: auth, db: resp.db, plugin: g.plugin, attrs: resp.attrs}
	s.uw.write(out.build())
	if err := s.uw.flush(); err != nil {
		return err
	}
	if err := s.loginUpstream(g.plugin, g.nonce); err != nil {
		return err
	}
	s.aw.write(okPacket(s.status))
	return s.aw.flush()
}

// passLogin forwards the agent's own handshake response and relays the
// rest of its login.
func (s *session) passLogin(resp *handshakeResponse) error {
	out := *resp
	out.caps = s.upstreamCaps(resp)
	if out.plugin == "" {
		out.caps &^= capPluginAuth
	}
	s.uw.write(out.build())
	if err := s.uw.flush(); err != nil {
		return err
	}
	return s.relayLogin()
}

// bufferedConn reads through a reader that may hold bytes already read
// from the connection.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
