// Package k8s turns requests to a Kubernetes API server into k8s actions:
// the request info the API server itself derives, exec's command and
// container, and the object a write carries. It writes refusals as the
// API server's own Status objects, so kubectl prints them. The HTTP
// inspector carries the requests; this package only describes them.
package k8s

import (
	"errors"
	"strings"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/fixtures"
)

// Rules of the refusals this package makes before any policy runs.
const (
	RuleMalformed   = "k8s-malformed"
	RuleTruncated   = "truncated-input"
	RuleUnparseable = "unparseable-input"
)

// Fixtures and `clawpatrol eval` inputs may give a Kubernetes request as
// its http block only; the k8s block is derived from it the way the wire
// derives it.
func init() {
	fixtures.Derive = append(fixtures.Derive, Derive)
}

// Facts derives the k8s block of an HTTP request to a Kubernetes endpoint.
// It returns nil and no refusal for a request that is no API request
// (/healthz, /metrics): that stays an http action. A refusal is a request
// the policy could not judge: a malformed path (k8s-malformed) or an
// object it cannot see whole (truncated-input, unparseable-input).
func Facts(h *action.HTTP) (*action.K8s, *action.Decision) {
	k, err := RequestInfo(h.Method, h.Path, h.Query)
	if err != nil {
		d := action.Denied(RuleMalformed, err.Error())
		return nil, &d
	}
	if k == nil {
		return nil, nil
	}
	switch k.Verb {
	case "create", "update", "patch":
		obj, err := Object(header(h.Headers, "content-type"), h.Body, h.JSON, h.Truncated)
		switch {
		case errors.Is(err, ErrTruncated):
			d := action.Denied(RuleTruncated, err.Error())
			return nil, &d
		case err != nil:
			d := action.Denied(RuleUnparseable, err.Error())
			return nil, &d
		}
		k.Object = obj
	}
	return k, nil
}

// Describe turns an http action to a Kubernetes endpoint into a k8s
// action: protocol k8s with the k8s block, and no http block, since an
// action has exactly one protocol block (SPEC §5). A request that is no
// API request stays as it is. A non-nil decision refuses the request.
func Describe(a *action.Action) *action.Decision {
	if a.HTTP == nil {
		return nil
	}
	k, refused := Facts(a.HTTP)
	if refused != nil || k == nil {
		return refused
	}
	a.Protocol, a.K8s, a.HTTP = action.ProtoK8s, k, nil
	return nil
}

// Derive fills the k8s block of a fixture or eval input that says
// protocol k8s but gives only the http request, exactly as Describe would
// on the wire; facts the input states are kept (a k8s block, once given,
// is used as it is). The protocol is the marker: an http action to a path
// under /api is not taken for Kubernetes (GitHub Enterprise serves
// /api/v3). A request Describe would refuse is left as written; a
// non-API path becomes the http action the wire would see.
func Derive(a *action.Action) {
	if a.Protocol != action.ProtoK8s || a.K8s != nil || a.HTTP == nil {
		return
	}
	k, refused := Facts(a.HTTP)
	switch {
	case refused != nil:
	case k == nil:
		a.Protocol = action.ProtoHTTP
	default:
		a.K8s, a.HTTP = k, nil
	}
}

// header returns the first value of a header in a policy input's header
// map (names lower-case).
func header(h map[string][]string, name string) string {
	if v := h[name]; len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}
