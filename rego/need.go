package rego

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// need is the part of the input a compiled policy can read, found from the
// refs to input in its rules. A nil *need means "all of it"; otherwise
// keys lists the fields read, each with what is read below it.
//
// The engine builds only those fields: a field no rule refers to cannot
// change a decision, and leaving it out saves most of the cost of building
// the input. Anything that takes input whole (`x := input`, `input[k]`,
// a function given input.http) needs all of it below that point, so the
// pruning never hides something a rule could see.
type need struct {
	keys map[string]*need
}

// needDepth bounds the pruning to the top-level fields and the fields of
// each protocol block; below that, a value is built whole.
const needDepth = 2

// inputNeed walks every rule of c for refs to input.
func inputNeed(c *ast.Compiler) *need {
	root := &need{keys: map[string]*need{}}
	all := false
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case ast.Var:
			// A bare input outside a ref: the policy takes all of it.
			if v.Equal(ast.InputRootDocument.Value) {
				all = true
			}
		case ast.Ref:
			if !v.HasPrefix(ast.InputRootRef) {
				return false
			}
			var path []string
			for _, t := range v[1:] {
				s, ok := t.Value.(ast.String)
				if !ok || len(path) == needDepth {
					break
				}
				path = append(path, string(s))
			}
			if len(path) == 0 {
				all = true
			}
			root.add(path)
			// Keys of the ref may hold refs of their own (input.x[input.y]).
			for _, t := range v[1:] {
				vis.Walk(t)
			}
			return true
		}
		return false
	})
	for _, m := range c.Modules {
		vis.Walk(m)
	}
	if all {
		return nil
	}
	return root
}

// add marks path as read: everything below its last key is needed.
func (n *need) add(path []string) {
	for i, k := range path {
		c, ok := n.keys[k]
		if ok && c == nil {
			return
		}
		if i == len(path)-1 {
			n.keys[k] = nil
			return
		}
		if !ok {
			c = &need{keys: map[string]*need{}}
			n.keys[k] = c
		}
		n = c
	}
}

// has reports whether key is read.
func (n *need) has(key string) bool {
	_, ok := n.wants(key)
	return ok
}

// wants reports whether key is read, and what is read below it.
func (n *need) wants(key string) (*need, bool) {
	if n == nil {
		return nil, true
	}
	c, ok := n.keys[key]
	return c, ok
}
