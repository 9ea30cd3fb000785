package postgres

import (
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// loginUpstream logs in to the server with the real secret, in whichever
// way the server asks, then tells the agent (already checked against the
// placeholder) that it is in. Nothing of the exchange reaches the agent
// except the server's own refusal.
func (s *session) loginUpstream() error {
	l := s.opts.Login
	user := l.Username
	if user == "" {
		user = s.user
	}
	var sc *scramClient
	for {
		f, err := s.authRequest()
		if err != nil {
			return fmt.Errorf("upstream login: %w", err)
		}
		code := f.int32("authentication request")
		if f.err != nil {
			return f.err
		}
		var reply []byte
		switch code {
		case authOK:
			s.aw.Write(newMsg('R').int32(authOK).done())
			return nil
		case authCleartext:
			reply = newMsg('p').str(l.Password).done()
		case authMD5:
			salt := f.take(4, "MD5 salt")
			if f.err != nil {
				return f.err
			}
			reply = newMsg('p').str(md5Password(user, l.Password, salt)).done()
		case authSASL:
			var mechs []string
			for m := f.cstring("SASL mechanisms"); m != "" && f.err == nil; m = f.cstring("SASL mechanisms") {
				mechs = append(mechs, m)
			}
			sc = s.scramClient(l.Password, mechs)
			if sc == nil {
				s.fatal("28000", "clawpatrol: the database offers no SASL mechanism clawpatrol speaks")
				return fmt.Errorf("upstream login: SASL mechanisms %q", mechs)
			}
			first := sc.clientFirst()
			mech := scramSHA256
			if sc.binding != nil {
				mech = scramSHA256Plus
			}
			reply = newMsg('p').str(mech).int32(uint32(len(first))).bytes([]byte(first)).done()
		case authSASLContinue:
			if sc == nil {
				return protocolError("SASL continue without SASL")
			}
			final, err := sc.clientFinal(string(f.b))
			if err != nil {
				s.fatal("28000", "clawpatrol: the database's SCRAM exchange is invalid")
				return fmt.Errorf("upstream login: %w", err)
			}
			reply = newMsg('p').bytes([]byte(final)).done()
		case authSASLFinal:
			if sc == nil {
				return protocolError("SASL final without SASL")
			}
			if err := sc.verify(string(f.b)); err != nil {
				s.fatal("28000", "clawpatrol: the database could not prove it knows the password")
				return fmt.Errorf("upstream login: %w", err)
			}
			continue
		default:
			s.fatal("28000", fmt.Sprintf("clawpatrol: the database asks for an authentication method clawpatrol does not speak (%d)", code))
			return fmt.Errorf("upstream login: authentication request %d", code)
		}
		s.uw.Write(reply)
		if err := s.uw.Flush(); err != nil {
			return err
		}
	}
}

// scramClient picks the mechanism: -PLUS with tls-server-end-point
// channel binding when the connection is TLS and the server offers it.
func (s *session) scramClient(password string, mechs []string) *scramClient {
	c := &scramClient{password: password, gs2: "n,,"}
	tc, isTLS := s.up.(*tls.Conn)
	if isTLS {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			if cb := serverEndPoint(certs[0]); cb != nil && slices.Contains(mechs, scramSHA256Plus) {
				c.gs2 = "p=tls-server-end-point,,"
				c.binding = cb
				return c
			}
		}
	}
	if !slices.Contains(mechs, scramSHA256) {
		return nil
	}
	if isTLS && !slices.Contains(mechs, scramSHA256Plus) {
		c.gs2 = "y,," // we could bind, the server says it cannot: a downgrade shows
	}
	return c
}

// authRequest reads the server's next authentication request, passing
// notices on. A refusal (ErrorResponse) is passed to the agent and ends the
// login: it names the role, never the password.
func (s *session) authRequest() (fields, error) {
	for {
		typ, body, err := s.ur.message(maxServerSmall)
		if err != nil {
			s.fatal("08006", "clawpatrol: the database closed the connection during login")
			return fields{}, err
		}
		switch typ {
		case 'R':
			return fields{b: body}, nil
		case 'E':
			s.aw.Write(newMsg('E').bytes(body).done())
			s.aw.Flush()
			return fields{}, errors.New("refused by the database")
		case 'N':
			s.aw.Write(newMsg('N').bytes(body).done())
		case 'v': // NegotiateProtocolVersion: we asked for 3.0 only
		default:
			s.fatal("08P01", "clawpatrol: unexpected message from the database during login")
			return fields{}, protocolError("server sent %q during login", typ)
		}
	}
}

// md5Password is Postgres's md5 response: md5(md5(password+user)+salt).
func md5Password(user, password string, salt []byte) string {
	inner := md5.Sum([]byte(password + user))
	h := hex.EncodeToString(inner[:])
	outer := md5.Sum(append([]byte(h), salt...))
	return "md5" + hex.EncodeToString(outer[:])
}

// relayLogin passes the login between agent and server untouched, except
// that SCRAM's channel-binding variants are withheld: the agent's TLS (if
// any) ends here, so its binding could never match the server's.
func (s *session) relayLogin() error {
	for {
		f, err := s.authRequest()
		if err != nil {
			return fmt.Errorf("relay login: %w", err)
		}
		body := f.b
		code := f.int32("authentication request")
		if f.err != nil {
			return f.err
		}
		if code == authSASL {
			m := newMsg('R').int32(authSASL)
			for name := f.cstring("SASL mechanisms"); name != "" && f.err == nil; name = f.cstring("SASL mechanisms") {
				if name != scramSHA256Plus {
					m.str(name)
				}
			}
			body = m.byte1(0).done()[5:]
		}
		s.aw.Write(newMsg('R').bytes(body).done())
		switch code {
		case authOK:
			return nil
		case authSASLFinal:
			continue
		}
		// Every other request wants an answer from the agent.
		reply, err := s.password()
		if err != nil {
			return fmt.Errorf("relay login: %w", err)
		}
		s.uw.Write(newMsg('p').bytes(reply).done())
		if err := s.uw.Flush(); err != nil {
			return err
		}
	}
}
