package rego

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// Tests are a policy's own Rego unit tests: the test_ rules of its
// *_test.rego files, compiled together with the policy as `opa test` does.
type Tests struct {
	mods  map[string]*ast.Module
	count int
}

// TestResult is the outcome of one test_ rule.
type TestResult struct {
	File   string // where the rule is
	Row    int
	Name   string // the rule's name, test_...
	Pass   bool
	Skip   bool   // a todo_test_ rule
	Detail string // why it failed: the error, or "the rule was false or undefined"
	Output string // what the test printed with print()
}

// LoadTests reads every .rego file under paths, test files included, and
// compiles them. The policy must compile on its own too: use Load for that.
func LoadTests(paths []string) (*Tests, error) {
	srcs, err := readSources(paths)
	if err != nil {
		return nil, err
	}
	mods, err := parse(srcs)
	if err != nil {
		return nil, err
	}
	if err := compile(newCompiler(true), mods); err != nil {
		return nil, err
	}
	t := &Tests{mods: mods}
	for _, m := range mods {
		for _, r := range m.Rules {
			name := r.Head.Ref().String()
			if strings.HasPrefix(name, tester.TestPrefix) || strings.HasPrefix(name, tester.SkipTestPrefix) {
				t.count++
			}
		}
	}
	return t, nil
}

// Count is the number of test_ (and todo_test_) rules.
func (t *Tests) Count() int { return t.count }

// Run runs every test and returns the results sorted by file and line.
// Built-in errors fail a test, as they deny a decision.
func (t *Tests) Run(ctx context.Context) ([]TestResult, error) {
	if t.count == 0 {
		return nil, nil
	}
	store := inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false))
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().
		SetCompiler(newCompiler(true)).
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(store).
		SetModules(t.mods).
		RaiseBuiltinErrors(true).
		CapturePrintOutput(true).
		RunTests(ctx, txn)
	if err != nil {
		return nil, &CompileError{Problems: astProblems("", err)}
	}
	var out []TestResult
	for r := range ch {
		tr := TestResult{Name: r.Name, Pass: r.Pass(), Skip: r.Skip, Output: string(r.Output)}
		if r.Location != nil {
			tr.File, tr.Row = r.Location.File, r.Location.Row
		}
		switch {
		case r.Error != nil:
			tr.Detail = r.Error.Error()
		case r.Fail:
			tr.Detail = "the rule was false or undefined"
		}
		out = append(out, tr)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Row < out[j].Row
	})
	return out, nil
}

// String is the test's location and name: "FILE:ROW: NAME".
func (r TestResult) String() string {
	return fmt.Sprintf("%s:%d: %s", r.File, r.Row, r.Name)
}
