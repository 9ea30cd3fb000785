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
// agent. It holds back only a tail that could be the start of a secret, so
// a stream of events (SSE) is not delayed.
func (s *Store) RedactingReader(r io.Reader) io.Reader {
	if s == nil || len(s.names) == 0 {
		return r
	}
	return &redactor{src: r, s: s, secrets: s.Secrets()}
}

type redactor struct {
	src     io.Reader
	s       *Store
	secrets []string
	in      []byte // read, not yet emitted: a possible secret prefix
	out     []byte // redacted, not yet returned
	err     error
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
		r.err = err
		if n == 0 {
			continue
		}
		red := []byte(r.s.Redact(string(append(r.in, buf[:n]...))))
		hold := r.partial(red)
		r.out = red[:len(red)-hold]
		r.in = bytes.Clone(red[len(red)-hold:])
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// partial returns the length of the longest tail of b that is a proper
// prefix of a secret: it may be completed by the next read.
func (r *redactor) partial(b []byte) int {
	best := 0
	for _, sec := range r.secrets {
		for k := min(len(sec)-1, len(b)); k > best; k-- {
			if bytes.HasSuffix(b, []byte(sec[:k])) {
				best = k
				break
			}
		}
	}
	return best
}
