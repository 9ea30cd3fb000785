package rego

import (
	"errors"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/clawpatrol/clawpatrol/action"
)

// tier is one of the three rules a decision reads, in the order they win.
type tier struct {
	name    string
	verdict action.Verdict
	v       ast.Var // the query variable its value is bound to
	form    form
}

// form says how the decision query reads a tier.
type form uint8

const (
	// absent: no rule defines it, so it is not queried at all.
	absent form = iota
	// set: only `NAME contains ...` rules define it, so it is always
	// defined (empty when no rule fires) and is read as it is.
	set
	// wrapped: anything else (`allow if ...` is a boolean, undefined when
	// its body fails) is read as [x | x = data.clawpatrol.NAME], an array
	// of zero or one value, so the query is defined either way.
	wrapped
)

var tierNames = [3]struct {
	name    string
	verdict action.Verdict
}{{"deny", action.Deny}, {"approve", action.Approve}, {"allow", action.Allow}}

// decisionQuery builds the query that reads the three tiers in one
// evaluation, choosing each tier's form from the compiled rules: the
// wrapped form costs a comprehension per decision, so it is used only
// where a tier could be undefined.
func decisionQuery(c *ast.Compiler) ([3]tier, ast.Body, error) {
	var tiers [3]tier
	var exprs []string
	for i, t := range tierNames {
		tiers[i] = tier{name: t.name, verdict: t.verdict, v: ast.Var(t.name)}
		ref := ast.MustParseRef("data.clawpatrol." + t.name)
		all := c.GetRulesWithPrefix(ref)
		if len(all) == 0 {
			continue
		}
		tiers[i].form = set
		for _, r := range all {
			if r.Head.RuleKind() != ast.MultiValue || !r.Path().Equal(ref) {
				tiers[i].form = wrapped
			}
		}
		if tiers[i].form == set {
			exprs = append(exprs, fmt.Sprintf("%s = data.clawpatrol.%s", t.name, t.name))
		} else {
			exprs = append(exprs, fmt.Sprintf("%s = [x%d | x%d = data.clawpatrol.%s]", t.name, i, i, t.name))
		}
	}
	if len(exprs) == 0 {
		return tiers, nil, errors.New("no deny, approve or allow rule in package clawpatrol: nothing would ever fire (is the package name right?)")
	}
	q, err := c.QueryCompiler().Compile(ast.MustParseBody(strings.Join(exprs, "; ")))
	if err != nil {
		return tiers, nil, fmt.Errorf("prepare decision query: %w", err)
	}
	return tiers, q, nil
}
