package postgres

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

// start runs the startup phase: the agent's startup packet (after any TLS
// or GSS encryption request, or a CancelRequest instead), the login, and
// the server's parameters up to its first ReadyForQuery.
func (s *session) start(ctx context.Context) error {
	code, body, err := s.agentStartup()
	if err != nil {
		return err
	}
	if code == codeCancel {
		if err := s.forwardCancel(ctx, body); err != nil {
			return fmt.Errorf("cancel request: %w", err)
		}
		return errCancelForwarded
	}
	if err := s.startupParams(code, body); err != nil {
		return err
	}
	if s.opts.Login != nil {
		if err := s.authenticateAgent(); err != nil {
			return err
		}
	}
	if err := s.dial(ctx); err != nil {
		s.fatal("08001", "clawpatrol: cannot connect to the database: "+err.Error())
		return err
	}
	s.uw.Write(s.upstreamStartup())
	if err := s.uw.Flush(); err != nil {
		s.fatal("08001", "clawpatrol: cannot connect to the database: "+err.Error())
		return err
	}
	if s.opts.Login != nil {
		err = s.loginUpstream()
	} else {
		err = s.relayLogin()
	}
	if err != nil {
		return err
	}
	return s.serverParams()
}

// errCancelForwarded ends a connection that only carried a CancelRequest.
var errCancelForwarded = errors.New("cancel request forwarded")

// agentStartup reads the agent's startup packet, answering encryption
// requests on the way.
func (s *session) agentStartup() (uint32, []byte, error) {
	for range 3 { // at most SSLRequest, GSSENCRequest, then the real one
		code, body, err := s.ar.startup()
		if err != nil {
			return 0, nil, err
		}
		if code != codeSSL && code != codeGSSENC {
			return code, body, nil
		}
		// Bytes sent before our answer would be read as if they came
		// through the encrypted channel (CVE-2021-23222 in reverse).
		if s.ar.r.Buffered() > 0 {
			return 0, nil, protocolError("data after an encryption request")
		}
		if code == codeSSL && s.opts.AgentTLS != nil && !s.agentTLS {
			if _, err := s.agent.Write([]byte{'S'}); err != nil {
				return 0, nil, err
			}
			c := tls.Server(s.agent, s.opts.AgentTLS)
			if err := c.Handshake(); err != nil {
				return 0, nil, fmt.Errorf("agent TLS handshake: %w", err)
			}
			s.agentTLS = true
			s.agent = c
			s.ar = newReader(c)
			s.aw.Reset(c)
			continue
		}
		if _, err := s.agent.Write([]byte{'N'}); err != nil {
			return 0, nil, err
		}
	}
	return 0, nil, protocolError("too many encryption requests")
}

// startupParams reads the parameters of a StartupMessage.
func (s *session) startupParams(code uint32, body []byte) error {
	if code>>16 != 3 {
		s.fatal("0A000", fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0", code>>16, code&0xffff))
		return protocolError("protocol version %#x", code)
	}
	f := fields{b: body}
	var unrecognized []string
	for {
		name := f.cstring("startup packet")
		if f.err != nil {
			s.fatal("08P01", "invalid startup packet layout")
			return f.err
		}
		if name == "" {
			break
		}
		value := f.cstring("startup packet")
		switch {
		case name == "user":
			s.user = value
		case name == "database":
			s.database = value
		case name == "replication":
			if !strings.EqualFold(value, "false") && value != "0" && !strings.EqualFold(value, "off") && !strings.EqualFold(value, "no") {
				s.fatal("42501", "clawpatrol: replication connections are not allowed through clawpatrol")
				return errors.New("replication connection refused")
			}
		case strings.HasPrefix(name, "_pq_."):
			unrecognized = append(unrecognized, name)
		default:
			s.params = append(s.params, [2]string{name, value})
		}
	}
	if err := f.end("startup packet"); err != nil {
		s.fatal("08P01", "invalid startup packet layout")
		return err
	}
	if s.user == "" {
		s.fatal("28000", "no PostgreSQL user name specified in startup packet")
		return errors.New("no user name")
	}
	if s.database == "" {
		s.database = s.user
	}
	// We speak 3.0 upstream: tell a newer client, as a 3.0 server does.
	if code&0xffff != 0 || len(unrecognized) > 0 {
		m := newMsg('v').int32(0).int32(uint32(len(unrecognized)))
		for _, u := range unrecognized {
			m.str(u)
		}
		s.aw.Write(m.done())
	}
	return nil
}

// upstreamStartup is the StartupMessage sent to the server: protocol 3.0,
// the login's role when it is offloaded, the agent's other parameters.
func (s *session) upstreamStartup() []byte {
	user := s.user
	if s.opts.Login != nil && s.opts.Login.Username != "" {
		user = s.opts.Login.Username
	}
	m := newMsg(0).int32(protocolVersion).str("user").str(user).str("database").str(s.database)
	for _, p := range s.params {
		m.str(p[0]).str(p[1])
	}
	return m.byte1(0).done()
}

// dial connects to the server and negotiates TLS per upstream_tls.
func (s *session) dial(ctx context.Context) error {
	c, err := s.opts.Dialer.Dial(ctx, "tcp", s.t)
	if err != nil {
		return err
	}
	s.upPtr.Store(&c)
	if ctx.Err() != nil { // cancelled while dialling: AfterFunc missed c
		c.Close()
		return ctx.Err()
	}
	c.SetDeadline(s.deadline)
	if ip, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		s.dest.IP = ip.IP.String()
	}
	tc, err := negotiateTLS(c, s.opts, s.t)
	if err != nil {
		c.Close()
		return err
	}
	s.setUp(tc)
	return nil
}

// negotiateTLS asks the server for TLS per mode; c is returned as it is
// for disable, and for prefer when the server declines.
func negotiateTLS(c net.Conn, o Options, t upstream.Target) (net.Conn, error) {
	if o.UpstreamTLS == "disable" {
		return c, nil
	}
	if _, err := c.Write(newMsg(0).int32(codeSSL).done()); err != nil {
		return nil, err
	}
	// Read the answer byte alone: anything after it must come through TLS,
	// never from a buffer (CVE-2021-23222).
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return nil, fmt.Errorf("TLS request: %w", err)
	}
	switch b[0] {
	case 'S':
	case 'N':
		if o.UpstreamTLS == "prefer" {
			return c, nil
		}
		return nil, fmt.Errorf("the server does not offer TLS (upstream_tls: %s)", o.UpstreamTLS)
	default:
		return nil, fmt.Errorf("TLS request: unexpected answer %q", b[0])
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.UpstreamTLS == "verify-full" {
		cfg.RootCAs = o.UpstreamRoots
		cfg.ServerName = serverName(o, t)
	} else {
		// prefer and require encrypt without checking who answers, as
		// libpq's sslmode does; verify-full is the mode that checks.
		cfg.InsecureSkipVerify = true
	}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// serverName is the name verify-full checks.
func serverName(o Options, t upstream.Target) string { return t.ServerName(o.ServerName) }

// authenticateAgent checks the agent's placeholder password.
func (s *session) authenticateAgent() error {
	l := s.opts.Login
	var err error
	if strings.EqualFold(l.Method, "password") {
		err = s.cleartextAgent(l.Placeholder)
	} else {
		err = s.scramAgent(l.Placeholder)
	}
	if err != nil {
		s.fatal("28P01", fmt.Sprintf("password authentication failed for user %q", s.user))
		return fmt.Errorf("agent login: %w", err)
	}
	return nil
}

func (s *session) cleartextAgent(placeholder string) error {
	s.aw.Write(newMsg('R').int32(authCleartext).done())
	body, err := s.password()
	if err != nil {
		return err
	}
	f := fields{b: body}
	got := f.cstring("password message")
	if err := f.end("password message"); err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(placeholder)) != 1 {
		return errWrongPassword
	}
	return nil
}

func (s *session) scramAgent(placeholder string) error {
	s.aw.Write(newMsg('R').int32(authSASL).str(scramSHA256).byte1(0).done())
	body, err := s.password()
	if err != nil {
		return err
	}
	f := fields{b: body}
	mech := f.cstring("SASLInitialResponse")
	n := int32(f.int32("SASLInitialResponse"))
	data := f.take(int(n), "SASLInitialResponse")
	if err := f.end("SASLInitialResponse"); err != nil {
		return err
	}
	if mech != scramSHA256 {
		return fmt.Errorf("unsupported SASL mechanism %q", mech)
	}
	srv := scramServer{password: placeholder}
	first, err := srv.first(string(data))
	if err != nil {
		return err
	}
	s.aw.Write(newMsg('R').int32(authSASLContinue).bytes([]byte(first)).done())
	if body, err = s.password(); err != nil {
		return err
	}
	final, err := srv.final(string(body))
	if err != nil {
		return err
	}
	s.aw.Write(newMsg('R').int32(authSASLFinal).bytes([]byte(final)).done())
	return nil
}

// password flushes what is pending to the agent and reads its next
// PasswordMessage (or SASL response).
func (s *session) password() ([]byte, error) {
	if err := s.aw.Flush(); err != nil {
		return nil, err
	}
	typ, body, err := s.ar.message(maxAuthMessage)
	if err != nil {
		return nil, err
	}
	if typ != 'p' {
		return nil, protocolError("expected a password message, got %q", typ)
	}
	return body, nil
}

// Authentication request codes.
const (
	authOK           = 0
	authCleartext    = 3
	authMD5          = 5
	authSASL         = 10
	authSASLContinue = 11
	authSASLFinal    = 12
)

// fatal tells the agent why its connection ends.
func (s *session) fatal(code, message string) {
	s.aw.Write(errorResponse("FATAL", code, message))
	s.aw.Flush()
}

// serverParams relays the server's messages after the login up to its
// first ReadyForQuery, handing the agent a cancel key of our own.
func (s *session) serverParams() error {
	for {
		typ, body, err := s.ur.message(maxServerSmall)
		if err != nil {
			s.fatal("08006", "clawpatrol: the database closed the connection during startup")
			return err
		}
		switch typ {
		case 'K':
			f := fields{b: body}
			pid, secret := f.int32("BackendKeyData"), f.int32("BackendKeyData")
			if err := f.end("BackendKeyData"); err != nil {
				return err
			}
			s.key = s.opts.Cancels.add(cancelTarget{pid: pid, secret: secret, t: s.t, opts: s.opts})
			s.aw.Write(newMsg('K').int32(s.key.pid).int32(s.key.secret).done())
		case 'S':
			s.parameterStatus(body)
			s.aw.Write(newMsg('S').bytes(body).done())
		case 'Z':
			s.aw.Write(newMsg('Z').bytes(body).done())
			return s.aw.Flush()
		case 'E':
			s.aw.Write(newMsg('E').bytes(body).done())
			s.aw.Flush()
			return errors.New("the server refused the connection")
		case 'N':
			s.aw.Write(newMsg('N').bytes(body).done())
		default:
			s.fatal("08P01", "clawpatrol: unexpected message from the database during startup")
			return protocolError("server sent %q during startup", typ)
		}
	}
}

// parameterStatus notes the server settings that change how query text
// must be read.
func (s *session) parameterStatus(body []byte) {
	f := fields{b: body}
	name, value := f.cstring("ParameterStatus"), f.cstring("ParameterStatus")
	switch name {
	case "standard_conforming_strings":
		s.scsOff.Store(!strings.EqualFold(value, "on"))
	case "client_encoding":
		s.unsafeEncoding.Store(unsafeEncodings[strings.ToUpper(value)])
	}
}

// unsafeEncodings are the client-only encodings whose multibyte characters
// can end in an ASCII byte such as a backslash: the server sees a
// different string than a UTF-8 reading of the same bytes.
var unsafeEncodings = map[string]bool{
	"SJIS": true, "SHIFT_JIS_2004": true, "BIG5": true, "GBK": true, "UHC": true, "GB18030": true, "JOHAB": true,
}
