package rego

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/clawpatrol/clawpatrol/fixtures"
)

func TestRegoUnitTests(t *testing.T) {
	dir := writePolicy(t, map[string]string{
		"p.rego": "package clawpatrol\nallow contains \"x\" if input.protocol == \"tcp\"\n",
		"p_test.rego": `package clawpatrol

test_passes if {
	"x" in allow with input as {"protocol": "tcp"}
}

test_fails if {
	print("looking at udp")
	"x" in allow with input as {"protocol": "udp"}
}

test_errors if {
	to_number("nope") == 1
}

todo_test_later if false
`,
	})
	tests, err := LoadTests([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if tests.Count() != 4 {
		t.Errorf("count %d", tests.Count())
	}
	results, err := tests.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]TestResult{}
	for _, r := range results {
		got[r.Name] = r
	}
	if r := got["test_passes"]; !r.Pass || r.Row != 3 || filepath.Base(r.File) != "p_test.rego" {
		t.Errorf("test_passes: %+v", r)
	}
	if r := got["test_fails"]; r.Pass || r.Detail == "" || !strings.Contains(r.Output, "looking at udp") {
		t.Errorf("test_fails: %+v", r)
	}
	if r := got["test_errors"]; r.Pass || !strings.Contains(r.Detail, "to_number") {
		t.Errorf("test_errors: %+v", r)
	}
	if r := got["todo_test_later"]; !r.Skip {
		t.Errorf("todo_test_later: %+v", r)
	}
}

func TestRegoUnitTestCompileError(t *testing.T) {
	dir := writePolicy(t, map[string]string{
		"p.rego":      "package clawpatrol\nallow contains \"x\" if true\n",
		"p_test.rego": "package clawpatrol\n\ntest_x if {\n\tundefined_function(1)\n}\n",
	})
	_, err := LoadTests([]string{dir})
	if err == nil || !strings.Contains(err.Error(), "p_test.rego:4:") {
		t.Errorf("error %v, want one at p_test.rego:4", err)
	}
}

// TestPrunedInputDecidesAlike replays every example fixture with the input
// pruned to what the policy reads and with the whole input: the decisions
// must be the same.
func TestPrunedInputDecidesAlike(t *testing.T) {
	pruned, err := Load([]string{"../examples"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pruned.need == nil {
		t.Fatal("the examples need the whole input: nothing is pruned")
	}
	whole := *pruned
	whole.need, whole.vocab = nil, nil
	files, err := fixtures.Files([]string{"../examples"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		fx, err := fixtures.Read(f)
		if err != nil {
			t.Fatal(err)
		}
		a, b := pruned.Decide(context.Background(), fx.Action), whole.Decide(context.Background(), fx.Action)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: pruned %+v, whole %+v", f, a, b)
		}
		if !fixtures.Matches(fx.Expect, a) {
			t.Errorf("%s: got %s, want %+v", f, fixtures.Describe(a), fx.Expect)
		}
	}
}

func TestNeedOfBareInput(t *testing.T) {
	for policy, whole := range map[string]bool{
		`allow contains "x" if input.http.method == "GET"`:       false,
		`allow contains "x" if count(input) > 0`:                 true,
		`allow contains "x" if { some k, _ in input; k == "a" }`: true,
		`allow contains "x" if walk(input.http, [_, _])`:         false,
	} {
		e := load(t, nil, map[string]string{"p.rego": "package clawpatrol\n" + policy + "\n"})
		if (e.need == nil) != whole {
			t.Errorf("%s: need %+v, want whole=%v", policy, e.need, whole)
		}
	}
}
