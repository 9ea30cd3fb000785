package creds

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Injection says where a secret goes in an HTTP request (SPEC §3 inject).
type Injection struct {
	Header string // header name, with Value as its template
	Value  string // "{secret}" is the only variable
	Basic  bool   // Authorization: Basic base64(Username:secret)
	User   string
	Query  string // query parameter name (opt-in)
}

// DefaultInjection is used when a credential has no inject section.
var DefaultInjection = Injection{Header: "Authorization", Value: "Bearer {secret}"}

// ParseInjection reads a credential's inject map.
func ParseInjection(m map[string]any) (Injection, error) {
	if len(m) == 0 {
		return DefaultInjection, nil
	}
	var in Injection
	str := func(k string) (string, error) {
		v, ok := m[k]
		if !ok {
			return "", nil
		}
		s, ok := v.(string)
		if !ok || s == "" {
			return "", fmt.Errorf("inject.%s must be a non-empty string", k)
		}
		return s, nil
	}
	var err error
	for k := range m {
		switch k {
		case "header", "value", "basic", "query":
		default:
			return in, fmt.Errorf("inject.%s is not a known key (header, value, basic, query)", k)
		}
	}
	if in.Header, err = str("header"); err != nil {
		return in, err
	}
	if in.Value, err = str("value"); err != nil {
		return in, err
	}
	if in.Query, err = str("query"); err != nil {
		return in, err
	}
	if b, ok := m["basic"]; ok {
		bm, ok := b.(map[string]any)
		if !ok {
			return in, errors.New("inject.basic must be a map with username")
		}
		for k, v := range bm {
			if k != "username" {
				return in, fmt.Errorf("inject.basic.%s is not a known key (username)", k)
			}
			if in.User, ok = v.(string); !ok {
				return in, errors.New("inject.basic.username must be a string")
			}
		}
		in.Basic = true
	}
	n := 0
	for _, set := range []bool{in.Header != "", in.Basic, in.Query != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return in, errors.New("inject needs exactly one of header, basic, query")
	}
	if in.Header != "" && in.Value == "" {
		in.Value = "{secret}"
	}
	if in.Header != "" && !strings.Contains(in.Value, "{secret}") {
		return in, errors.New("inject.value must contain {secret}")
	}
	return in, nil
}

// InjectHTTP puts c's secret into req as its injection says. The agent's
// placeholder, wherever it put it in the headers or query, is replaced by
// the secret; the configured header is set (added when absent), never
// duplicated. Call it only after an allow, for a request whose verified
// destination is one of the credential's endpoints.
func (c *Credential) InjectHTTP(req *http.Request) error {
	in, err := ParseInjection(c.Config.Inject)
	if err != nil {
		return fmt.Errorf("credential %s: %w", c.Name, err)
	}
	for name, vals := range req.Header {
		for i, v := range vals {
			if strings.Contains(v, c.Placeholder) {
				vals[i] = strings.ReplaceAll(v, c.Placeholder, c.Secret)
			}
		}
		req.Header[name] = vals
	}
	q := req.URL.Query()
	changed := false
	for k, vals := range q {
		for i, v := range vals {
			if strings.Contains(v, c.Placeholder) {
				vals[i], changed = strings.ReplaceAll(v, c.Placeholder, c.Secret), true
			}
		}
		q[k] = vals
	}
	switch {
	case in.Header != "":
		req.Header.Set(in.Header, strings.ReplaceAll(in.Value, "{secret}", c.Secret))
	case in.Basic:
		user := in.User
		if user == "" {
			if u, _, ok := req.BasicAuth(); ok {
				user = u
			}
		}
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+c.Secret)))
	case in.Query != "":
		q.Set(in.Query, c.Secret)
		changed = true
	}
	if changed {
		req.URL.RawQuery = q.Encode()
	}
	// The response may echo the secret, and RedactResponse can only find
	// it in a body it can read: ask for no compression.
	req.Header.Set("Accept-Encoding", "identity")
	return nil
}
