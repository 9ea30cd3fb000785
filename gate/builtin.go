package gate

import (
	"context"

	"github.com/clawpatrol/clawpatrol/action"
)

// Builtin is the rule used when no policy is loaded: an action to a
// configured endpoint is allowed, anything else gets policy.default.
type Builtin struct {
	// DefaultAllow is policy.default == "allow".
	DefaultAllow bool
}

// Decide applies the built-in rule.
func (b Builtin) Decide(_ context.Context, a *action.Action) action.Decision {
	if a.Endpoint != "" {
		return action.Decision{Verdict: action.Allow, Rule: "endpoint", Reasons: []action.Reason{{Rule: "endpoint", Reason: "destination is endpoint " + a.Endpoint}}}
	}
	return Default(b.DefaultAllow)
}

// Default is the decision when no rule fired.
func Default(allow bool) action.Decision {
	if allow {
		return action.Decision{Verdict: action.Allow, Rule: "policy.default", Reasons: []action.Reason{{Rule: "policy.default", Reason: "no rule matched; policy.default is allow"}}}
	}
	return action.Denied("policy.default", "no rule allows this action; policy.default is deny")
}
