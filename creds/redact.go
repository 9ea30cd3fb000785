package creds

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/clawpatrol/clawpatrol/action"
)

// Redacted replaces the values of sensitive headers and parameters.
const Redacted = "<redacted>"

// Sensitive reports whether a header or parameter named name carries a
// credential: the well-known ones, and any whose name says token, secret,
// password or key.
func Sensitive(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key":
		return true
	}
	for _, w := range []string{"token", "secret", "password", "passwd", "key"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// Body modes of audit.bodies.
const (
	BodiesRedacted = "redacted" // bodies kept; secrets and sensitive JSON fields redacted
	BodiesMetadata = "metadata" // no bodies at all
	BodiesFull     = "full"     // bodies kept as seen, secrets still redacted
)

// RedactAction returns a deep copy of a fit for the audit log, a recorded
// fixture or the dashboard: sensitive headers and parameters are
// <redacted>, every secret and placeholder is <redacted:NAME>, and bodies
// follow the mode. a is not changed. s may be nil (no credentials).
func (s *Store) RedactAction(a *action.Action, bodies string) *action.Action {
	if (s == nil || len(s.names) == 0) && a.HTTP == nil && (a.K8s == nil || bodies == BodiesFull) {
		return a // nothing in it to redact: a connection-level action
	}
	raw, err := json.Marshal(a)
	if err != nil {
		return &action.Action{ID: a.ID, Protocol: a.Protocol, Endpoint: a.Endpoint, Destination: a.Destination}
	}
	raw = s.redactJSON(raw)
	var c action.Action
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return &action.Action{ID: a.ID, Protocol: a.Protocol, Endpoint: a.Endpoint, Destination: a.Destination}
	}
	if h := c.HTTP; h != nil {
		redactValues(h.Headers)
		redactValues(h.Query)
		switch bodies {
		case BodiesMetadata:
			h.Body, h.JSON = "", nil
		case BodiesRedacted:
			h.JSON = redactJSONFields(h.JSON)
			if h.JSON != nil {
				var buf bytes.Buffer
				enc := json.NewEncoder(&buf)
				enc.SetEscapeHTML(false)
				if enc.Encode(h.JSON) == nil {
					h.Body = strings.TrimSuffix(buf.String(), "\n")
				}
			}
		}
	}
	if k := c.K8s; k != nil {
		redactValues(k.Params)
		switch bodies {
		case BodiesMetadata:
			k.Object = nil
		case BodiesRedacted:
			k.Object = redactSecretObject(redactJSONFields(k.Object))
		}
	}
	return &c
}

// redactJSON replaces secrets and placeholders in encoded JSON, also in
// their JSON-escaped forms.
func (s *Store) redactJSON(b []byte) []byte {
	if s == nil {
		return b
	}
	for _, n := range s.names {
		c := s.byName[n]
		mark := []byte("<redacted:" + n + ">")
		for _, v := range []string{c.Secret, c.Placeholder} {
			enc, _ := json.Marshal(v)
			b = bytes.ReplaceAll(b, bytes.Trim(enc, `"`), mark)
		}
	}
	return b
}

func redactValues(m map[string][]string) {
	for k, vs := range m {
		if Sensitive(k) {
			for i := range vs {
				vs[i] = Redacted
			}
		}
	}
}

// redactSecretObject hides a Kubernetes Secret's values (data and
// stringData), whatever their key names.
func redactSecretObject(v any) any {
	obj, ok := v.(map[string]any)
	if !ok || obj["kind"] != "Secret" {
		return v
	}
	for _, field := range []string{"data", "stringData"} {
		if m, ok := obj[field].(map[string]any); ok {
			for k := range m {
				m[k] = Redacted
			}
		}
	}
	return v
}

// redactJSONFields replaces the values of object keys that name secrets.
func redactJSONFields(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if Sensitive(k) {
				x[k] = Redacted
			} else {
				x[k] = redactJSONFields(val)
			}
		}
	case []any:
		for i, val := range x {
			x[i] = redactJSONFields(val)
		}
	}
	return v
}
