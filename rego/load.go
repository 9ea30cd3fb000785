package rego

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Problem is one compile or load problem, located in a policy file.
type Problem struct {
	File    string // as shown to the user: relative to the working directory when below it
	Row     int    // 1-based; 0 when the problem is about the whole file
	Col     int
	Message string
}

func (p Problem) String() string {
	switch {
	case p.File == "":
		return p.Message
	case p.Row == 0:
		return p.File + ": " + p.Message
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Row, p.Col, p.Message)
}

// CompileError lists every problem found while loading policies, one per
// line as FILE:LINE:COL: MESSAGE, so editors can jump to each.
type CompileError struct {
	Problems []Problem
}

func (e *CompileError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// source is one policy file as read from disk.
type source struct {
	name string // display name, also the module's file name in locations
	text string
	test bool // a *_test.rego file: Rego unit tests, never part of decisions
}

// readSources finds the .rego files under paths. A directory is walked
// recursively; a file is taken as given. Sources come back sorted by name,
// so compile errors and the digest do not depend on directory order.
func readSources(paths []string) ([]source, error) {
	if len(paths) == 0 {
		return nil, errors.New("no policy paths given")
	}
	var out []source
	seen := map[string]bool{}
	add := func(path string) error {
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		if seen[abs] {
			return nil
		}
		seen[abs] = true
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read policy: %w", err)
		}
		out = append(out, source{name: displayName(path), text: string(b), test: strings.HasSuffix(path, "_test.rego")})
		return nil
	}
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("policy path: %w", err)
		}
		if !info.IsDir() {
			if err := add(p); err != nil {
				return nil, err
			}
			continue
		}
		n := len(out)
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				// Hidden directories (.git, editor state) never hold policy.
				if path != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(d.Name(), ".rego") {
				return add(path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("policy path: %w", err)
		}
		if len(out) == n {
			return nil, fmt.Errorf("policy path %s: no .rego files in this directory", displayName(p))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// displayName shows a path relative to the working directory when it lies
// below it, as the user most likely typed it.
func displayName(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(wd, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return abs
	}
	return rel
}

// unsafeBuiltins may not appear in a policy: a decision must not reach the
// network (it runs inside the firewall, per action) nor read clawpatrol's
// own environment, which holds the real secrets.
var unsafeBuiltins = map[string]struct{}{
	"http.send":          {},
	"net.lookup_ip_addr": {},
	"opa.runtime":        {},
}

// parse parses sources as Rego v1 modules.
func parse(srcs []source) (map[string]*ast.Module, error) {
	mods := make(map[string]*ast.Module, len(srcs))
	var problems []Problem
	for _, s := range srcs {
		m, err := ast.ParseModuleWithOpts(s.name, s.text, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			problems = append(problems, astProblems(s.name, err)...)
			continue
		}
		mods[s.name] = m
	}
	if len(problems) > 0 {
		return nil, &CompileError{Problems: problems}
	}
	return mods, nil
}

// newCompiler returns the compiler every policy load uses.
func newCompiler(printStatements bool) *ast.Compiler {
	return ast.NewCompiler().
		WithDefaultRegoVersion(ast.RegoV1).
		WithUnsafeBuiltins(unsafeBuiltins).
		WithEnablePrintStatements(printStatements)
}

// compile compiles modules, turning OPA's errors into located problems.
func compile(c *ast.Compiler, mods map[string]*ast.Module) error {
	if c.Compile(mods); c.Failed() {
		return &CompileError{Problems: astProblems("", c.Errors)}
	}
	return nil
}

// astProblems flattens an OPA error (ast.Errors or another) into problems.
func astProblems(file string, err error) []Problem {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return []Problem{{File: file, Message: err.Error()}}
	}
	errs.Sort()
	out := make([]Problem, 0, len(errs))
	for _, e := range errs {
		p := Problem{File: file, Message: e.Code + ": " + e.Message}
		if e.Location != nil {
			if e.Location.File != "" {
				p.File = e.Location.File
			}
			p.Row, p.Col = e.Location.Row, e.Location.Col
		}
		if e.Details != nil {
			for _, l := range e.Details.Lines() {
				p.Message += "\n\t" + l
			}
		}
		out = append(out, p)
	}
	return out
}
