package mysql

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// scrambleNative is mysql_native_password's answer:
// SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))).
func scrambleNative(password string, nonce []byte) []byte {
	if password == "" {
		return nil
	}
	h1 := sha1.Sum([]byte(password))
	h2 := sha1.Sum(h1[:])
	h := sha1.New()
	h.Write(nonce)
	h.Write(h2[:])
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= h1[i]
	}
	return out
}

// scrambleSHA2 is caching_sha2_password's fast answer:
// SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce).
func scrambleSHA2(password string, nonce []byte) []byte {
	if password == "" {
		return nil
	}
	h1 := sha256.Sum256([]byte(password))
	h2 := sha256.Sum256(h1[:])
	h := sha256.New()
	h.Write(h2[:])
	h.Write(nonce)
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= h1[i]
	}
	return out
}

// encryptPassword encrypts password+NUL, XORed with the nonce, with the
// server's RSA public key (RSA-OAEP with SHA-1), as caching_sha2_password
// and sha256_password do without TLS.
func encryptPassword(password string, nonce, keyPEM []byte) ([]byte, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil || len(nonce) == 0 {
		return nil, errors.New("the server's public key is not PEM")
	}
	var pub *rsa.PublicKey
	if k, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
		pub, _ = k.(*rsa.PublicKey)
	} else if k, err := x509.ParsePKCS1PublicKey(block.Bytes); err == nil {
		pub = k
	}
	if pub == nil {
		return nil, errors.New("the server's public key is not an RSA key")
	}
	plain := append([]byte(password), 0)
	for i := range plain {
		plain[i] ^= nonce[i%len(nonce)]
	}
	return rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, plain, nil)
}

// newNonce makes a 20-byte nonce of printable bytes: some clients read
// it as a NUL-terminated string.
func newNonce() []byte {
	b := make([]byte, 20)
	rand.Read(b)
	for i := range b {
		b[i] = 0x21 + b[i]%(0x7f-0x21)
	}
	return b
}

// authenticateAgent checks that the agent knows the placeholder. It takes
// mysql_native_password and caching_sha2_password answers (the latter's
// fast path: clawpatrol knows the password it checks against), and asks
// any other plugin's client to switch to mysql_native_password.
func (s *session) authenticateAgent(resp *handshakeResponse, nonce []byte) error {
	placeholder := s.opts.Login.Placeholder
	switch resp.plugin {
	case nativePassword, "":
		if equal(resp.auth, scrambleNative(placeholder, nonce)) {
			return nil
		}
	case cachingSHA2:
		if equal(resp.auth, scrambleSHA2(placeholder, nonce)) {
			s.aw.write([]byte{0x01, 0x03}) // fast authentication succeeded
			return nil
		}
	default:
		fresh := newNonce()
		s.aw.write(append(append(append([]byte{0xfe}, nativePassword...), 0), append(fresh, 0)...))
		if err := s.aw.flush(); err != nil {
			return err
		}
		s.ar.seq = s.aw.seq - 1 // the agent answers our packet
		auth, err := s.ar.next(false, maxSmall)
		if err != nil {
			return fmt.Errorf("auth switch: %w", err)
		}
		s.aw.seq = s.ar.seq + 1
		if equal(auth, scrambleNative(placeholder, fresh)) {
			return nil
		}
	}
	return errors.New("the agent's password is not the placeholder")
}

func equal(a, b []byte) bool { return len(b) > 0 && subtle.ConstantTimeCompare(a, b) == 1 }

// upstreamAuth computes the first answer to plugin's request with nonce.
func (s *session) upstreamAuth(plugin string, nonce []byte) ([]byte, error) {
	password := s.opts.Login.Password
	switch plugin {
	case nativePassword:
		return scrambleNative(password, nonce), nil
	case cachingSHA2:
		return scrambleSHA2(password, nonce), nil
	case sha256Password:
		if s.upTLS() {
			return append([]byte(password), 0), nil
		}
		return []byte{0x01}, nil // ask for the server's public key
	case clearPassword:
		if s.upTLS() {
			return append([]byte(password), 0), nil
		}
		return nil, errors.New("the server asks for the password in clear over a connection without TLS")
	}
	return nil, fmt.Errorf("the server asks for authentication plugin %q, which clawpatrol does not speak", plugin)
}

func (s *session) upTLS() bool {
	_, ok := s.up.(*tls.Conn)
	return ok
}

// loginUpstream finishes logging in to the server with the real secret
// after the handshake response went out. Nothing of the exchange reaches
// the agent but the server's refusal.
func (s *session) loginUpstream(plugin string, nonce []byte) error {
	for {
		p, err := s.ur.next(false, maxSmall)
		if err != nil {
			return fmt.Errorf("upstream login: %w", err)
		}
		s.uw.seq = s.ur.seq + 1
		if len(p) == 0 {
			return protocolError("empty packet during login")
		}
		var reply []byte
		switch p[0] {
		case 0x00:
			if st, ok := okStatus(p); ok {
				s.status = st
			}
			return nil
		case 0xff:
			return &refusal{packet: p}
		case 0xfe: // AuthSwitchRequest: plugin name, then its data
			f := &fields{b: p[1:]}
			plugin = string(f.cstring("auth switch"))
			nonce = bytes.TrimRight(f.rest(), "\x00")
			if reply, err = s.upstreamAuth(plugin, nonce); err != nil {
				return err
			}
		case 0x01: // AuthMoreData
			data := p[1:]
			switch {
			case plugin == cachingSHA2 && bytes.Equal(data, []byte{0x03}):
				continue // fast authentication succeeded: OK follows
			case plugin == cachingSHA2 && bytes.Equal(data, []byte{0x04}):
				// Full authentication: the password in clear over TLS,
				// else encrypted with the server's public key.
				if s.upTLS() {
					reply = append([]byte(s.opts.Login.Password), 0)
				} else {
					reply = []byte{0x02}
				}
			case plugin == cachingSHA2 || plugin == sha256Password:
				if reply, err = encryptPassword(s.opts.Login.Password, nonce, data); err != nil {
					return err
				}
			default:
				return protocolError("unexpected data from plugin %s", plugin)
			}
		default:
			return protocolError("packet 0x%02x during login", p[0])
		}
		s.uw.write(reply)
		if err := s.uw.flush(); err != nil {
			return err
		}
	}
}

// refusal is the server's ERR during login, passed on to the agent.
type refusal struct{ packet []byte }

func (r *refusal) Error() string { return "the server refused the login: " + errMessage(r.packet) }

// relayLogin passes the agent's own login through: every packet of the
// exchange goes to the other side, numbered for it, until the server's OK
// or ERR.
func (s *session) relayLogin() error {
	for {
		p, err := s.ur.next(false, maxSmall)
		if err != nil {
			return fmt.Errorf("relay login: %w", err)
		}
		if len(p) == 0 {
			return protocolError("empty packet during login")
		}
		s.aw.write(p)
		if err := s.aw.flush(); err != nil {
			return err
		}
		switch {
		case p[0] == 0x00:
			if st, ok := okStatus(p); ok {
				s.status = st
			}
			return nil
		case p[0] == 0xff:
			return errors.New("the server refused the login: " + errMessage(p))
		case p[0] == 0x01 && bytes.Equal(p, []byte{0x01, 0x03}):
			continue // fast authentication succeeded: OK follows
		}
		s.ar.seq = s.aw.seq - 1 // the agent answers the packet relayed to it
		reply, err := s.ar.next(false, maxSmall)
		if err != nil {
			return fmt.Errorf("relay login: %w", err)
		}
		s.aw.seq = s.ar.seq + 1
		s.uw.seq = s.ur.seq + 1
		s.uw.write(reply)
		if err := s.uw.flush(); err != nil {
			return err
		}
	}
}
