// Package sqlfacts turns SQL text into the statement facts of the policy
// input (SPEC §5's sql block): verbs, tables and functions per statement and
// in total, from each dialect's real grammar. Postgres uses the server's own
// parser, embedded by pg_query.
package sqlfacts

import (
	"reflect"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/clawpatrol/clawpatrol/action"
)

// DialectPostgres is the sql.dialect of Postgres actions.
const DialectPostgres = "postgres"

// maxNesting bounds how deep SQL found inside SQL (a DO block's body, a
// string EXECUTEd in it) is followed before the query counts as unparseable.
const maxNesting = 4

// Postgres parses query with the Postgres grammar and returns its sql block:
// Dialect and Statement set, Database and User left to the caller. Text the
// parser rejects is Unparseable with no facts. An empty query (only
// whitespace, comments or semicolons) has no statements and is parseable.
func Postgres(query string) *action.SQL {
	q := &action.SQL{Dialect: DialectPostgres, Statement: query}
	var f facts
	f.postgres(query, 0)
	if f.unparseable {
		q.Unparseable = true
		return q
	}
	q.Statements = f.statements
	q.Verbs = f.verbs.list
	q.Tables = f.tables.list
	q.QualifiedTables = f.qualified.list
	q.Functions = f.functions.list
	return q
}

// facts accumulates what a whole query touches.
type facts struct {
	statements  []action.Statement
	verbs       set
	tables      set
	qualified   set
	functions   set
	unparseable bool
	version     int32 // pg_query's grammar version, from the last parse
}

// postgres adds the facts of every statement of query; depth counts how
// far inside other SQL the query was found.
func (f *facts) postgres(query string, depth int) {
	if depth > maxNesting {
		f.unparseable = true
		return
	}
	tree, err := pg_query.Parse(query)
	if err != nil {
		f.unparseable = true
		return
	}
	f.version = tree.Version
	for _, raw := range tree.Stmts {
		f.top(raw.Stmt, statementText(query, raw), depth)
	}
}

// statementText cuts one statement out of the query it came from.
func statementText(query string, raw *pg_query.RawStmt) string {
	start := int(raw.StmtLocation)
	end := len(query)
	if raw.StmtLen > 0 {
		end = start + int(raw.StmtLen)
	}
	if start < 0 || start > end || end > len(query) {
		return strings.TrimSpace(query)
	}
	return strings.TrimSpace(query[start:end])
}

// top adds one statement, and after it every statement nested in it that is
// not a plain read (DML in a CTE, the statement EXPLAIN or PREPARE carries,
// the statements of a DO block).
func (f *facts) top(n *pg_query.Node, text string, depth int) {
	if n == nil {
		return
	}
	f.verbs.add(verb(n))
	w := walker{facts: f, depth: depth, text: text}
	f.statements = append(f.statements, w.statement(n))
	f.statements = append(f.statements, w.nested...)
}

// walker collects the facts of one statement's tree.
type walker struct {
	facts     *facts
	depth     int
	text      string // the statement's text
	tables    set
	functions set
	program   bool
	nested    []action.Statement
}

// statement walks the tree of n and returns it as one statement.
func (w *walker) statement(n *pg_query.Node) action.Statement {
	if m := inner(n); m != nil {
		w.walk(m, nil)
	}
	return action.Statement{Verb: verb(n), Tables: w.tables.list, Functions: w.functions.list, Text: w.text, Program: w.program}
}

// inner returns the message a Node wraps.
// Each oneof wrapper (Node_SelectStmt, ...) is a struct of one field, the
// message: plain reflection finds it without asking protoreflect about all
// of Node's two hundred-odd fields.
func inner(n *pg_query.Node) protoreflect.Message {
	if n == nil || n.Node == nil {
		return nil
	}
	v := reflect.ValueOf(n.Node)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct || v.Elem().NumField() != 1 {
		return nil
	}
	pm, ok := v.Elem().Field(0).Interface().(protoreflect.ProtoMessage)
	if !ok || reflect.ValueOf(pm).IsNil() {
		return nil
	}
	return pm.ProtoReflect()
}

// messageFields returns the fields of a message type that hold messages,
// in declaration order, computed once per type.
func messageFields(d protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	if f, ok := fieldCache.Load(d.FullName()); ok {
		return f.([]protoreflect.FieldDescriptor)
	}
	var out []protoreflect.FieldDescriptor
	fields := d.Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); fd.Kind() == protoreflect.MessageKind && !fd.IsMap() {
			out = append(out, fd)
		}
	}
	fieldCache.Store(d.FullName(), out)
	return out
}

var fieldCache sync.Map // protoreflect.FullName → []protoreflect.FieldDescriptor

// scope is the CTE names visible at a point of the tree: a bare name that
// matches one is no table.
type scope struct {
	names map[string]bool
	outer *scope
}

func (s *scope) has(name string) bool {
	for ; s != nil; s = s.outer {
		if s.names[name] {
			return true
		}
	}
	return false
}

func (w *walker) walk(m protoreflect.Message, sc *scope) {
	switch v := m.Interface().(type) {
	case *pg_query.Node:
		if !w.nestedStatement(v) {
			if m := inner(v); m != nil {
				w.walk(m, sc)
			}
		}
		return
	case *pg_query.RangeVar:
		if v.Schemaname == "" && v.Catalogname == "" && sc.has(v.Relname) {
			break
		}
		w.table(v.Catalogname, v.Schemaname, v.Relname)
	case *pg_query.FuncCall:
		if len(v.Funcname) > 0 {
			w.function(v.Funcname[len(v.Funcname)-1].GetString_().GetSval())
		}
	case *pg_query.CopyStmt:
		w.program = w.program || v.IsProgram
	case *pg_query.DropStmt:
		w.dropped(v)
	case *pg_query.DoStmt:
		w.do(v)
	}
	wfd := m.Descriptor().Fields().ByName("with_clause")
	if wfd != nil && m.Has(wfd) {
		// The WITH clause comes first, as in the text; its names are
		// visible to it (WITH RECURSIVE) and to the rest of the statement.
		wm := m.Get(wfd).Message()
		inner := &scope{names: map[string]bool{}, outer: sc}
		if wc, ok := wm.Interface().(*pg_query.WithClause); ok {
			for _, c := range wc.Ctes {
				if cte := c.GetCommonTableExpr(); cte != nil {
					inner.names[cte.Ctename] = true
				}
			}
		}
		sc = inner
		w.walk(wm, sc)
	}
	// Fields in declaration order (Range's order is undefined), so nested
	// statements are listed the same way every time.
	for _, fd := range messageFields(m.Descriptor()) {
		if fd == wfd || !m.Has(fd) {
			continue
		}
		if fd.IsList() {
			l := m.Get(fd).List()
			for j := range l.Len() {
				w.walk(l.Get(j).Message(), sc)
			}
			continue
		}
		w.walk(m.Get(fd).Message(), sc)
	}
}

// nestedStatement handles a statement found inside another one. A plain
// SELECT is part of the statement that holds it; anything else is also
// listed as a statement of its own. Its facts count for the outer
// statement too. It reports whether it walked n.
func (w *walker) nestedStatement(n *pg_query.Node) bool {
	v := verb(n)
	if v == "" || v == "select" {
		return false
	}
	w.facts.verbs.add(v)
	text := deparse(n, w.facts.version)
	if text == "" {
		text = w.text
	}
	in := walker{facts: w.facts, depth: w.depth, text: text}
	s := in.statement(n)
	w.merge(&in)
	w.nested = append(w.nested, s)
	w.nested = append(w.nested, in.nested...)
	return true
}

// merge adds the facts of a nested statement to w's.
func (w *walker) merge(in *walker) {
	for _, t := range in.tables.list {
		w.tables.add(t)
	}
	for _, fn := range in.functions.list {
		w.functions.add(fn)
	}
	w.program = w.program || in.program
}

// deparse turns a nested statement back into text; the parser's tree does
// not keep where a nested statement starts and ends.
// Deparse wants the grammar version the tree was parsed with.
func deparse(n *pg_query.Node, version int32) string {
	s, err := pg_query.Deparse(&pg_query.ParseResult{Version: version, Stmts: []*pg_query.RawStmt{{Stmt: n}}})
	if err != nil {
		return ""
	}
	return s
}

func (w *walker) table(catalog, schema, name string) {
	if name == "" {
		return
	}
	w.tables.add(strings.ToLower(name))
	w.facts.tables.add(strings.ToLower(name))
	q := name
	if schema != "" {
		q = schema + "." + q
	}
	if catalog != "" {
		q = catalog + "." + q
	}
	w.facts.qualified.add(q)
}

func (w *walker) function(name string) {
	if name == "" {
		return
	}
	name = strings.ToLower(name)
	w.functions.add(name)
	w.facts.functions.add(name)
}

// dropped adds the relations a DROP names: they are lists of names, not
// table references, in the tree.
func (w *walker) dropped(d *pg_query.DropStmt) {
	switch d.RemoveType {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW, pg_query.ObjectType_OBJECT_MATVIEW,
		pg_query.ObjectType_OBJECT_FOREIGN_TABLE, pg_query.ObjectType_OBJECT_SEQUENCE:
	default:
		return
	}
	for _, o := range d.Objects {
		var parts []string
		for _, item := range o.GetList().GetItems() {
			parts = append(parts, item.GetString_().GetSval())
		}
		switch len(parts) {
		case 1:
			w.table("", "", parts[0])
		case 2:
			w.table("", parts[0], parts[1])
		case 3:
			w.table(parts[0], parts[1], parts[2])
		}
	}
}

// set is an insertion-ordered set of strings.
type set struct {
	list []string
	seen map[string]bool
}

func (s *set) add(v string) {
	if v == "" || s.seen[v] {
		return
	}
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	s.seen[v] = true
	s.list = append(s.list, v)
}
