package inspect

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	nethttp "net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/creds"
	inspecthttp "github.com/clawpatrol/clawpatrol/inspect/http"
	"github.com/clawpatrol/clawpatrol/inspect/k8s"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

// kubernetesOptions makes the HTTP inspector speak for a Kubernetes
// endpoint: API requests become k8s actions, refusals are Status objects,
// and the endpoint's credential is a bearer token or a client certificate
// presented upstream.
func (r *Router) kubernetesOptions(t upstream.Target, o *inspecthttp.Options) {
	var cred *creds.Credential
	var credErr error
	if name := t.Endpoint.Credential; name != "" {
		c, ok := r.creds.Get(name)
		if !ok {
			credErr = fmt.Errorf("credential %s is not loaded", name)
		} else {
			cred = c
			o.ClientCert, credErr = clientCert(c)
		}
	}
	o.Describe = func(a *action.Action, _ *nethttp.Request) *action.Decision {
		if credErr != nil {
			d := action.Denied("credential", credErr.Error())
			return &d
		}
		// The gate looks for placeholders sent to the wrong endpoint in
		// the http block, which a k8s action no longer has: look now.
		if c, leak := r.creds.Leak(a); leak {
			d := action.Denied("placeholder-leak", "the placeholder of credential "+c.Name+" may only be sent to its own endpoints")
			return &d
		}
		if d := k8s.Describe(a); d != nil {
			return d
		}
		return r.connectRefusals.recall(a)
	}
	o.Refuse = func(w nethttp.ResponseWriter, a *action.Action, status int, d action.Decision) {
		r.connectRefusals.remember(a, d)
		k8s.WriteStatus(w, a, status, d)
	}
	o.Inject = func(a *action.Action, req *nethttp.Request) error {
		if cred == nil || a.Credential != cred.Name {
			return nil
		}
		if !a.Destination.TLS {
			return fmt.Errorf("credential %s is only sent over TLS", cred.Name)
		}
		if o.ClientCert != nil && len(cred.Config.Inject) == 0 {
			// The certificate authenticates. The kubeconfig's placeholder
			// token must not reach the server as a second identity.
			if strings.Contains(req.Header.Get("Authorization"), cred.Placeholder) {
				req.Header.Del("Authorization")
			}
			return nil
		}
		return cred.InjectHTTP(req)
	}
}

// clientCert loads a credential's client certificate: client_cert, with
// the key from client_key, or else the credential's secret (from) when
// that is the key's PEM. nil when the credential has no certificate.
func clientCert(c *creds.Credential) (*tls.Certificate, error) {
	cfg := c.Config
	if cfg.ClientCert == "" && cfg.ClientKey == "" {
		return nil, nil
	}
	if cfg.ClientCert == "" {
		return nil, fmt.Errorf("credential %s: client_key needs client_cert", c.Name)
	}
	certPEM, err := os.ReadFile(cfg.ClientCert)
	if err != nil {
		return nil, fmt.Errorf("credential %s: client_cert: %w", c.Name, err)
	}
	keyPEM := []byte(c.Secret)
	if cfg.ClientKey != "" {
		if keyPEM, err = os.ReadFile(cfg.ClientKey); err != nil {
			return nil, fmt.Errorf("credential %s: client_key: %w", c.Name, err)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("credential %s: client certificate: %w", c.Name, err)
	}
	return &cert, nil
}

// connectRefusals remembers refused exec, attach, port-forward and proxy
// requests for a short while, and refuses the same request again without
// asking. kubectl asks for a WebSocket first and, when that is refused,
// asks again over SPDY on a new connection: without this the approver
// would be asked twice in a row about the same command, and a timed-out
// approval would be waited out twice.
func newRefusals() *refusals { return &refusals{ttl: 30 * time.Second, m: map[string]refusal{}} }

// maxRefusals bounds the table: past it, entries are forgotten rather
// than the table growing.
const maxRefusals = 256

type refusals struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]refusal
}

type refusal struct {
	d  action.Decision
	at time.Time
}

// key identifies "the same connect request": the endpoint and every k8s
// fact (the query included). "" for anything that is not one.
func (rs *refusals) key(a *action.Action) string {
	if a == nil || a.K8s == nil || a.K8s.Verb != "connect" {
		return ""
	}
	facts, err := json.Marshal(a.K8s)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s\x00%s\x00%d\x00%s", a.Endpoint, a.Destination.Host, a.Destination.Port, facts)
}

// remember keeps a refused connect request, unless the same one is
// already kept: its first refusal is what later ones repeat.
func (rs *refusals) remember(a *action.Action, d action.Decision) {
	k := rs.key(a)
	if k == "" || d.Verdict != action.Deny {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	now := time.Now()
	for old, f := range rs.m {
		if now.Sub(f.at) > rs.ttl || len(rs.m) >= maxRefusals {
			delete(rs.m, old)
		}
	}
	if _, ok := rs.m[k]; !ok {
		rs.m[k] = refusal{d: d, at: now}
	}
}

// recall returns the refusal of the same connect request within the ttl.
func (rs *refusals) recall(a *action.Action) *action.Decision {
	k := rs.key(a)
	if k == "" {
		return nil
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	f, ok := rs.m[k]
	if !ok || time.Since(f.at) > rs.ttl {
		return nil
	}
	d := f.d
	d.Approval = nil // it belongs to the first request's audit record
	d.Reasons = slices.Clone(d.Reasons)
	for i := range d.Reasons {
		if d.Reasons[i].Rule == d.Rule {
			d.Reasons[i].Reason += fmt.Sprintf(" (the same request was refused %s ago)", time.Since(f.at).Round(time.Second))
			break
		}
	}
	return &d
}
