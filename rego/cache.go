package rego

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// ruleCache is the evaluator's cache of rule values for one decision
// (topdown.VirtualCache). OPA's own builds a hash trie per query, which
// costs a score of allocations; a decision caches a handful of values, so
// a flat list searched from the end does the same job, and the lists are
// pooled between decisions.
type ruleCache struct {
	entries []cacheEntry
	frames  []int // index into entries where each pushed frame starts
	keys    []*ast.Term
}

type cacheEntry struct {
	key   ast.Ref // a window of keys: the caller's ref is a reused buffer
	value *ast.Term
}

var ruleCaches = sync.Pool{New: func() any { return &ruleCache{} }}

func getRuleCache() *ruleCache {
	c := ruleCaches.Get().(*ruleCache)
	c.Push()
	return c
}

func putRuleCache(c *ruleCache) {
	clear(c.entries)
	clear(c.keys)
	c.entries, c.frames, c.keys = c.entries[:0], c.frames[:0], c.keys[:0]
	ruleCaches.Put(c)
}

// Push starts a frame: entries put before it are hidden until Pop.
func (c *ruleCache) Push() { c.frames = append(c.frames, len(c.entries)) }

// Pop drops the top frame and its entries.
func (c *ruleCache) Pop() {
	top := c.frames[len(c.frames)-1]
	c.frames = c.frames[:len(c.frames)-1]
	clear(c.entries[top:])
	c.entries = c.entries[:top]
}

// Get returns the value cached for ref in the top frame; (nil, true) means
// cached as undefined, (nil, false) not cached.
func (c *ruleCache) Get(ref ast.Ref) (*ast.Term, bool) {
	top := c.frames[len(c.frames)-1]
	for i := len(c.entries) - 1; i >= top; i-- {
		if e := &c.entries[i]; e.key.Equal(ref) {
			return e.value, e.value == nil
		}
	}
	return nil, false
}

// Put caches value (nil: undefined) for ref in the top frame.
func (c *ruleCache) Put(ref ast.Ref, value *ast.Term) {
	top := c.frames[len(c.frames)-1]
	for i := len(c.entries) - 1; i >= top; i-- {
		if e := &c.entries[i]; e.key.Equal(ref) {
			e.value = value
			return
		}
	}
	start := len(c.keys)
	c.keys = append(c.keys, ref...)
	c.entries = append(c.entries, cacheEntry{key: ast.Ref(c.keys[start:len(c.keys):len(c.keys)]), value: value})
}

// Keys lists the refs cached in the top frame that have a value.
func (c *ruleCache) Keys() []ast.Ref {
	top := c.frames[len(c.frames)-1]
	var out []ast.Ref
	for _, e := range c.entries[top:] {
		if e.value != nil {
			out = append(out, e.key)
		}
	}
	return out
}

// noBaseCache is the evaluator's cache of base documents: the policy store
// holds none, so there is nothing to cache.
type noBaseCache struct{}

func (noBaseCache) Get(ast.Ref) ast.Value  { return nil }
func (noBaseCache) Put(ast.Ref, ast.Value) {}
