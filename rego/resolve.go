package rego

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/clawpatrol/clawpatrol/action"
)

// entry is one member of deny, approve or allow.
type entry struct {
	action.Reason
	approvers []string // approve only; nil means approval.default
}

// resolve turns the values of deny, approve and allow (as read by the
// decision query, nil when absent) into a decision: any deny wins, then
// approve, then allow, then policy.default.
func (e *Engine) resolve(sets [3]*ast.Term) (action.Decision, error) {
	var buf [8]entry
	for i, t := range e.tiers {
		entries, err := readTier(t, sets[i], buf[:0])
		if err != nil {
			return action.Decision{}, err
		}
		if len(entries) == 0 {
			continue
		}
		slices.SortFunc(entries, func(a, b entry) int {
			return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Reason.Reason, b.Reason.Reason))
		})
		d := action.Decision{Verdict: t.verdict, Rule: entries[0].Rule, Reasons: make([]action.Reason, len(entries))}
		for j, en := range entries {
			d.Reasons[j] = en.Reason
		}
		if t.verdict == action.Approve {
			d.Approvers = e.approversOf(entries)
		}
		return d, nil
	}
	return e.fallback(), nil
}

// approversOf lists the approvers the entries name, in entry order without
// repeats; an entry that names none asks approval.default.
func (e *Engine) approversOf(entries []entry) []string {
	var out []string
	for _, en := range entries {
		names := en.approvers
		if names == nil {
			names = e.approvers
		}
		for _, n := range names {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// readTier appends the entries of one tier to out. A set holds entries;
// a boolean (`allow if ...`) is one entry named after the rule when true.
func readTier(t tier, v *ast.Term, out []entry) ([]entry, error) {
	switch t.form {
	case absent:
		return out, nil
	case wrapped:
		arr, ok := v.Value.(*ast.Array)
		if !ok || arr.Len() > 1 {
			return nil, fmt.Errorf("%s: unexpected query result %v", t.name, v)
		}
		if arr.Len() == 0 {
			return out, nil // undefined: no rule fired
		}
		v = arr.Elem(0)
	}
	switch x := v.Value.(type) {
	case ast.Boolean:
		if x {
			out = append(out, entry{Reason: action.Reason{Rule: t.name, Reason: t.name + " is true"}})
		}
		return out, nil
	case ast.Set:
		for _, m := range x.Slice() {
			en, err := readEntry(t.name, m)
			if err != nil {
				return nil, err
			}
			out = append(out, en)
		}
		return out, nil
	}
	return nil, fmt.Errorf("data.clawpatrol.%s is %s %v: want a set (%s contains ...) or a boolean", t.name, ast.ValueName(v.Value), v, t.name)
}

// readEntry reads a string entry (rule id and reason at once) or an object
// {"rule", "reason", "approvers"}. Unknown keys are errors: a misspelt
// "approver" must not silently fall back to the default approvers.
func readEntry(name string, t *ast.Term) (entry, error) {
	switch v := t.Value.(type) {
	case ast.String:
		return entry{Reason: action.Reason{Rule: string(v), Reason: string(v)}}, nil
	case ast.Object:
		var en entry
		err := v.Iter(func(k, val *ast.Term) error {
			key, _ := k.Value.(ast.String)
			switch key {
			case "rule", "reason":
				s, ok := val.Value.(ast.String)
				if !ok {
					return fmt.Errorf("%s entry %v: %s must be a string", name, t, key)
				}
				if key == "rule" {
					en.Rule = string(s)
				} else {
					en.Reason.Reason = string(s)
				}
			case "approvers":
				if name != "approve" {
					return fmt.Errorf("%s entry %v: only approve entries name approvers", name, t)
				}
				names, err := stringList(val)
				if err != nil {
					return fmt.Errorf("%s entry %v: approvers: %w", name, t, err)
				}
				en.approvers = names
			default:
				return fmt.Errorf("%s entry %v: unknown key %v (want rule, reason, approvers)", name, t, k)
			}
			return nil
		})
		if err != nil {
			return entry{}, err
		}
		switch {
		case en.Rule == "" && en.Reason.Reason == "":
			return entry{}, fmt.Errorf("%s entry %v: needs a rule or a reason", name, t)
		case en.Rule == "":
			en.Rule = en.Reason.Reason
		case en.Reason.Reason == "":
			en.Reason.Reason = en.Rule
		}
		return en, nil
	}
	return entry{}, fmt.Errorf("%s entry %v: want a string or an object with rule and reason", name, t)
}

// stringList reads an array or set of strings (or one string). An empty
// list stays empty, not nil, so it does not fall back to approval.default.
func stringList(t *ast.Term) ([]string, error) {
	out := []string{}
	var err error
	add := func(x *ast.Term) {
		s, ok := x.Value.(ast.String)
		if !ok {
			err = fmt.Errorf("%v is not a string", x)
			return
		}
		out = append(out, string(s))
	}
	switch v := t.Value.(type) {
	case *ast.Array:
		v.Foreach(add)
	case ast.Set:
		v.Foreach(add)
	case ast.String:
		add(t)
	default:
		return nil, fmt.Errorf("want a list of approver names, got %v", t)
	}
	return out, err
}
