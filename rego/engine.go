// Package rego decides actions with Rego policies (SPEC §4): it loads and
// compiles policy files once, builds each action's input as an AST value,
// and resolves the deny, approve and allow sets of data.clawpatrol into a
// decision, failing closed on any error.
package rego

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/config"
	"github.com/clawpatrol/clawpatrol/gate"
)

var _ gate.Engine = (*Engine)(nil)

// Engine decides actions with a compiled policy. It is safe for concurrent
// use: the policy is compiled and the query prepared once, at Load.
type Engine struct {
	compiler *ast.Compiler
	query    ast.Body // the compiled decisionQuery
	tiers    [3]tier
	store    storage.Store
	// txn is one read transaction shared by every evaluation: the store
	// holds no data and is never written, so reads through it never block
	// and never change, and opening one per decision would cost allocations.
	txn    storage.Transaction
	files  []string
	digest string

	need  *need                // the input fields the policy reads; nil: all
	vocab map[string]*ast.Term // strings shared between inputs

	defaultAllow bool
	approvers    []string // approval.default
}

// Load reads the policy files and directories in paths (*.rego, skipping
// *_test.rego), compiles them as Rego v1 and prepares the decision query.
// A compile problem comes back as a *CompileError with file:line:col.
// cfg supplies policy.default and approval.default; nil means built-in defaults.
func Load(paths []string, cfg *config.Config) (*Engine, error) {
	srcs, err := readSources(paths)
	if err != nil {
		return nil, err
	}
	var policy []source
	for _, s := range srcs {
		if !s.test {
			policy = append(policy, s)
		}
	}
	if len(policy) == 0 {
		return nil, fmt.Errorf("no policy files in %v (only *_test.rego files)", paths)
	}
	return compileEngine(policy, cfg)
}

func compileEngine(srcs []source, cfg *config.Config) (*Engine, error) {
	if cfg == nil {
		cfg = config.Default()
	}
	mods, err := parse(srcs)
	if err != nil {
		return nil, err
	}
	c := newCompiler(false)
	if err := compile(c, mods); err != nil {
		return nil, err
	}
	tiers, q, err := decisionQuery(c)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		compiler:     c,
		query:        q,
		tiers:        tiers,
		need:         inputNeed(c),
		vocab:        policyVocabulary(mods),
		store:        inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false)),
		defaultAllow: cfg.Policy.Default == "allow",
		approvers:    cfg.Approval.Default,
	}
	if e.txn, err = e.store.NewTransaction(context.Background()); err != nil {
		return nil, fmt.Errorf("policy store: %w", err)
	}
	h := sha256.New()
	for _, s := range srcs {
		e.files = append(e.files, s.name)
		// Length-prefixed so that moving text between files changes the digest.
		h.Write([]byte(strconv.Itoa(len(s.text)) + "\n" + s.text))
	}
	e.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return e, nil
}

// Files lists the policy files the engine was compiled from, sorted.
func (e *Engine) Files() []string { return e.files }

// Digest identifies the policy: the sha256 of the sorted policy sources,
// written as "sha256:HEX". The audit log's session_start records it.
func (e *Engine) Digest() string { return e.digest }

// Decide evaluates the policy for a. It never returns an error: anything
// that goes wrong denies, with the error text in Decision.Error only.
func (e *Engine) Decide(ctx context.Context, a *action.Action) action.Decision {
	b := builder{vocab: e.vocab}
	d, err := e.decide(ctx, b.term(b.action(a, 0, e.need)))
	if err != nil {
		return policyError(err)
	}
	if d.Verdict == action.Deny {
		return d
	}
	// A decision that is not a deny must not rest on facts clawpatrol could
	// not see whole: decide again without them and compare (docs/policy.md).
	var h hide
	rule, reason := "", ""
	if a.HTTP != nil && a.HTTP.Truncated {
		h |= hideHTTPBody
		rule, reason = "truncated-input", "a rule read the request body, which was longer than limits.body"
	}
	if a.SQL != nil && (a.SQL.Truncated || a.SQL.Unparseable) {
		h |= hideSQLFacts
		rule, reason = "unparseable-input", "a rule read facts of a SQL statement that could not be parsed"
		if a.SQL.Truncated {
			h |= hideSQLText
			rule, reason = "truncated-input", "a rule read facts of a SQL statement that was longer than limits.body"
		}
	}
	if h == 0 {
		return d
	}
	b2 := builder{vocab: e.vocab}
	d2, err := e.decide(ctx, b2.term(b2.action(a, h, e.need)))
	if err != nil {
		return policyError(err)
	}
	if d2.Verdict != d.Verdict || d2.Rule != d.Rule || !slices.Equal(d2.Approvers, d.Approvers) {
		denied := action.Denied(rule, reason)
		denied.Error = fmt.Sprintf("with the whole input: %s %s; without the partial facts: %s %s", d.Verdict, d.Rule, d2.Verdict, d2.Rule)
		return denied
	}
	return d
}

// decide evaluates the query once for input and resolves the result.
func (e *Engine) decide(ctx context.Context, input *ast.Term) (action.Decision, error) {
	var sets [3]*ast.Term
	n := 0
	cache := getRuleCache()
	defer putRuleCache(cache)
	q := topdown.NewQuery(e.query)
	if err := ctx.Err(); err != nil {
		return action.Decision{}, err
	}
	if ctx.Done() != nil {
		// Stop evaluating when the action's context ends (the agent hung
		// up). A context that can never end costs nothing here.
		c := topdown.NewCancel()
		stop := context.AfterFunc(ctx, c.Cancel)
		defer stop()
		q = q.WithCancel(c)
	}
	err := q.
		WithCompiler(e.compiler).
		WithStore(e.store).
		WithTransaction(e.txn).
		WithInput(input).
		WithMetrics(metrics.NoOp()).
		WithVirtualCache(cache).
		WithBaseCache(noBaseCache{}).
		WithRequestMetadata(noMetadata).
		WithStrictBuiltinErrors(true).
		Iter(ctx, func(qr topdown.QueryResult) error {
			n++
			for i, t := range e.tiers {
				if t.form != absent {
					sets[i] = qr[t.v]
				}
			}
			return nil
		})
	if err != nil {
		return action.Decision{}, err
	}
	if n != 1 {
		return action.Decision{}, fmt.Errorf("decision query gave %d results", n)
	}
	return e.resolve(sets)
}

// noMetadata is the request metadata of every query: none, and never written.
var noMetadata = map[string]any{}

func policyError(err error) action.Decision {
	d := action.Denied("policy-error", "the policy could not be evaluated")
	d.Error = err.Error()
	return d
}

// Default decisions come from the gate, so "no rule fired" reads the same
// whichever engine is in use.
func (e *Engine) fallback() action.Decision { return gate.Default(e.defaultAllow) }
