package k8s

import (
	"encoding/json"
	"fmt"
	nethttp "net/http"
	"strconv"
	"strings"

	"github.com/clawpatrol/clawpatrol/action"
)

// RuleHeader names the rule that refused a request, as on refused HTTP
// requests.
const RuleHeader = "X-Clawpatrol-Rule"

// status is a meta/v1 Status, the API server's error body.
type status struct {
	Kind       string         `json:"kind"`
	APIVersion string         `json:"apiVersion"`
	Metadata   struct{}       `json:"metadata"`
	Status     string         `json:"status"`
	Message    string         `json:"message"`
	Reason     string         `json:"reason"`
	Details    *statusDetails `json:"details,omitempty"`
	Code       int            `json:"code"`
}

type statusDetails struct {
	Name  string `json:"name,omitempty"`
	Group string `json:"group,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// reasons are the Status reasons of the codes a refusal uses.
var reasons = map[int]string{
	nethttp.StatusBadRequest:                  "BadRequest",
	nethttp.StatusForbidden:                   "Forbidden",
	nethttp.StatusRequestHeaderFieldsTooLarge: "RequestEntityTooLarge",
}

// WriteStatus answers a refused request the way the API server refuses
// one: a Failure Status with reason Forbidden (403) or BadRequest (400),
// the rule and the reason in its message, so kubectl prints
// `Error from server (Forbidden): clawpatrol: denied by rule "R": REASON`.
// a, when it is a k8s action, names the object in the Status details.
func WriteStatus(w nethttp.ResponseWriter, a *action.Action, code int, d action.Decision) {
	reason := reasons[code]
	if reason == "" {
		reason = "Forbidden"
	}
	verb := "denied"
	if code != nethttp.StatusForbidden {
		verb = "rejected"
	}
	s := status{Kind: "Status", APIVersion: "v1", Status: "Failure", Reason: reason, Code: code,
		Message: fmt.Sprintf("clawpatrol: %s by rule %q: %s", verb, d.Rule, d.Reason())}
	if a != nil && a.K8s != nil && a.K8s.Resource != "" {
		s.Details = &statusDetails{Name: a.K8s.Name, Group: a.K8s.Group, Kind: a.K8s.Resource}
	}
	body, _ := json.Marshal(s)
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set(RuleHeader, strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, d.Rule))
	w.WriteHeader(code)
	w.Write(body)
}
