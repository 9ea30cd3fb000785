package inspect

import (
	"fmt"
	nethttp "net/http"

	"github.com/clawpatrol/clawpatrol/action"
	inspecthttp "github.com/clawpatrol/clawpatrol/inspect/http"
	"github.com/clawpatrol/clawpatrol/inspect/upstream"
)

// httpOptions are the HTTP inspector's options for a flow to t: the
// endpoint's roots, the credential hooks, and for a Kubernetes endpoint
// the hooks that make its requests k8s actions.
func (r *Router) httpOptions(t upstream.Target) inspecthttp.Options {
	roots := r.upstreamRoots("")
	if t.Endpoint != nil {
		roots = r.upstreamRoots(t.Endpoint.Name)
	}
	o := inspecthttp.Options{
		Gate: r.gate, Dialer: r.dialer, CA: r.ca, UpstreamRoots: roots,
		BodyLimit: int64(r.cfg.Limits.Body), Logger: r.log,
		// A name no endpoint knows is not resolved, let alone contacted,
		// before a request to it is allowed.
		DeferDial: t.Endpoint == nil,
		Inject:    func(a *action.Action, req *nethttp.Request) error { return r.inject(t, a, req) },
		Response:  func(a *action.Action, resp *nethttp.Response) { r.redactResponse(a, resp) },
	}
	if t.Endpoint != nil && t.Endpoint.Protocol == "kubernetes" {
		r.kubernetesOptions(t, &o)
	}
	return o
}

// inject splices the endpoint's credential into an allowed request. The
// action's credential comes from the endpoint the verified destination
// matched, so the secret can only go to its own endpoints; it goes over TLS
// unless the endpoint is explicitly plain http.
func (r *Router) inject(t upstream.Target, a *action.Action, req *nethttp.Request) error {
	if a.Credential == "" || t.Endpoint == nil {
		return nil
	}
	c, ok := r.creds.Get(a.Credential)
	if !ok {
		return fmt.Errorf("credential %s is not loaded", a.Credential)
	}
	if a.HTTP != nil && a.HTTP.Scheme != "https" && t.Endpoint.Protocol != "http" {
		return fmt.Errorf("credential %s is only sent over TLS (endpoint %s is %s)", c.Name, t.Endpoint.Name, t.Endpoint.Protocol)
	}
	return c.InjectHTTP(req)
}

// redactResponse keeps an injected secret from coming back to the agent in
// a response that echoes it.
func (r *Router) redactResponse(a *action.Action, resp *nethttp.Response) {
	if a.Credential == "" {
		return
	}
	r.creds.RedactResponse(resp)
}
