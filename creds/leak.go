package creds

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"

	"github.com/clawpatrol/clawpatrol/action"
)

// Leak returns the credential whose placeholder the action carries to a
// destination that is not one of that credential's: in the HTTP path, query,
// headers (Basic userinfo decoded) or body prefix. Such an action is denied
// as placeholder-leak whatever the policy says: the agent is sending its
// stand-in somewhere the secret must never go.
func (s *Store) Leak(a *action.Action) (*Credential, bool) {
	if s == nil || len(s.names) == 0 || a.HTTP == nil {
		return nil, false
	}
	h := a.HTTP
	texts := []string{h.Path, h.Body, h.Host}
	for _, vals := range h.Query {
		texts = append(texts, vals...)
	}
	for name, vals := range h.Headers {
		texts = append(texts, vals...)
		if name != "authorization" && name != "proxy-authorization" {
			continue
		}
		for _, v := range vals {
			if scheme, enc, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "basic") {
				if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc)); err == nil {
					texts = append(texts, string(dec))
				}
			}
		}
	}
	for _, t := range texts {
		if c, ok := s.FindPlaceholder(t); ok && c.Name != a.Credential {
			return c, true
		}
	}
	return nil, false
}

// RedactingReader returns r with every secret and placeholder replaced by
// <redacted:NAME> as it streams, including across read boundaries: an
// upstream that echoes the injected secret back does not hand it to the
// agent. It holds back at most the longest secret's length minus one byte.
func (s *Store) RedactingReader(r io.Reader) io.Reader {
	if s == nil || len(s.names) == 0 {
		return r
	}
	longest := 0
	for _, sec := range s.Secrets() {
		longest = max(longest, len(sec))
	}
	return &redactor{src: r, s: s, keep: longest - 1}
}

type redactor struct {
	src  io.Reader
	s    *Store
	keep int
	in   []byte // read, not yet redacted (a possible secret prefix at the end)
	out  []byte // redacted, not yet returned
	err  error
}

func (r *redactor) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			if len(r.in) > 0 {
				r.out, r.in = []byte(r.s.Redact(string(r.in))), nil
				break
			}
			return 0, r.err
		}
		buf := make([]byte, 32<<10)
		n, err := r.src.Read(buf)
		r.in = append(r.in, buf[:n]...)
		r.err = err
		red := []byte(r.s.Redact(string(r.in)))
		if err != nil || len(red) <= r.keep {
			if err != nil {
				r.out, r.in = red, nil
			}
			continue
		}
		// Emit all but the tail that could start a secret split by the
		// next read; the tail is already redacted text, so keep it as is.
		cut := len(red) - r.keep
		r.out = append(r.out, red[:cut]...)
		r.in = bytes.Clone(red[cut:])
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}
