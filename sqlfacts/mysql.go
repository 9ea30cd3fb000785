package sqlfacts

import (
	"strings"

	"github.com/xwb1989/sqlparser"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/fixtures"
)

// MySQL facts: the lexer splits the query into statements exactly where the
// server does; each statement is then read with the MySQL grammar of
// github.com/xwb1989/sqlparser, or, for the statements that grammar skips
// over or does not know, by a small grammar of its own here. A statement
// neither reads whole is unparseable, with its verb and the names called in
// it still listed. docs/sql.md says which statements are which.

// DialectMySQL is the sql.dialect of MySQL and MariaDB actions.
const DialectMySQL = "mysql"

func init() {
	fixtures.Derive = append(fixtures.Derive, DeriveMySQL)
}

// MySQLMode is the part of a session's sql_mode that changes how a query is
// read.
type MySQLMode struct {
	// NoBackslashEscapes is sql_mode NO_BACKSLASH_ESCAPES, which the server
	// reports in the status flags of every OK packet.
	NoBackslashEscapes bool
}

func mysqlRules(mode MySQLMode) lexRules {
	return lexRules{hashComments: true, dashNeedsSpace: true, executableComments: true,
		doubleQuoteString: true, backslashEscapes: !mode.NoBackslashEscapes, dollarIdent: true, variables: true, asciiTrails: true}
}

// MySQL reads query as the server would in mode and returns its sql block:
// Dialect and Statement set, Database and User left to the caller.
func MySQL(query string, mode MySQLMode) *action.SQL {
	var f facts
	toks, err := lex(query, mysqlRules(mode))
	if err != nil {
		f.unparseable = true
	}
	stmts := split(query, toks)
	if err == nil && len(stmts) > 1 && modeSensitive(query, mode, toks) {
		// A statement before the last may change sql_mode, and this
		// query splits differently in the other mode.
		f.unparseable = true
	}
	for _, p := range stmts {
		f.statements = append(f.statements, f.mysqlStatement(query, p.toks, p.text(query), false)...)
	}
	return f.block(DialectMySQL, query)
}

// modeSensitive reports whether query splits into other tokens with the
// opposite NO_BACKSLASH_ESCAPES.
func modeSensitive(query string, mode MySQLMode, toks []token) bool {
	other, err := lex(query, mysqlRules(MySQLMode{NoBackslashEscapes: !mode.NoBackslashEscapes}))
	if err != nil || len(other) != len(toks) {
		return true
	}
	for i := range toks {
		if toks[i].start != other[i].start || toks[i].end != other[i].end {
			return true
		}
	}
	return false
}

// block returns the facts as a sql block; unparseable facts are still
// listed (a deny rule may use them; SPEC §4 keeps allow rules off them).
func (f *facts) block(dialect, query string) *action.SQL {
	return &action.SQL{Dialect: dialect, Statement: query, Statements: f.statements, Verbs: f.verbs.list,
		Tables: f.tables.list, QualifiedTables: f.qualified.list, Functions: f.functions.list, Unparseable: f.unparseable}
}

// statement collects the facts of one statement.
type statement struct {
	f         *facts
	tables    set
	functions set
	local     bool
	nested    []action.Statement
}

func (s *statement) table(qualifier, name string) {
	if name == "" {
		return
	}
	s.tables.add(strings.ToLower(name))
	s.f.tables.add(strings.ToLower(name))
	if qualifier != "" {
		name = qualifier + "." + name
	}
	s.f.qualified.add(name)
}

func (s *statement) function(name string) {
	if name == "" {
		return
	}
	name = strings.ToLower(name)
	s.functions.add(name)
	s.f.functions.add(name)
}

// merge adds the facts of a statement nested in s.
func (s *statement) merge(in *action.Statement) {
	for _, t := range in.Tables {
		s.tables.add(t)
	}
	for _, fn := range in.Functions {
		s.functions.add(fn)
	}
	s.local = s.local || in.LocalFile
}

// mysqlStatement reads one statement: it comes first in the list returned,
// the statements nested in it after. The verb of a SELECT nested in another
// statement is not listed: it is part of that statement.
func (f *facts) mysqlStatement(src string, toks []token, text string, nested bool) []action.Statement {
	s := &statement{f: f}
	verb := mysqlVerb(toks)
	if !nested || verb != "select" {
		f.verbs.add(verb)
	}
	if !s.mysqlRead(src, toks, verb) {
		f.unparseable = true
		for _, fn := range callNames(toks, mysqlNotCalls, mysqlBeforeColumns) {
			s.function(fn)
		}
	}
	if verb == "load" && mysqlLocal(toks) {
		s.local = true
	}
	st := action.Statement{Verb: verb, Tables: s.tables.list, Functions: s.functions.list, Text: text, LocalFile: s.local}
	return append([]action.Statement{st}, s.nested...)
}

// mysqlVerb is a statement's verb: its first keyword, lower-case.
func mysqlVerb(toks []token) string {
	first := toks[0]
	switch w := first.lower(); w {
	case "start":
		if len(toks) > 1 && toks[1].is("transaction") {
			return "begin"
		}
		return w
	case "desc":
		return "describe"
	case "with":
		depth := 0
		for _, t := range toks[1:] {
			switch {
			case t.is("("):
				depth++
			case t.is(")"):
				depth--
			case depth == 0 && t.kind == tokWord:
				switch v := t.lower(); v {
				case "select", "insert", "replace", "update", "delete":
					return v
				}
			}
		}
		return "select"
	case "":
		if first.is("(") {
			return "select" // (SELECT ...) UNION (SELECT ...)
		}
		return ""
	default:
		return w
	}
}

// mysqlLocal reports whether a LOAD statement reads a file on the client's
// host: LOAD DATA|XML ... LOCAL INFILE.
func mysqlLocal(toks []token) bool {
	for _, t := range toks {
		if t.is("infile") {
			return false
		}
		if t.is("local") {
			return true
		}
	}
	return false
}

// mysqlRead fills s from a statement's tokens and reports whether it read
// all of it.
func (s *statement) mysqlRead(src string, toks []token, verb string) bool {
	c := &cursor{toks: toks}
	switch verb {
	case "select", "insert", "replace", "update", "delete", "truncate", "set":
		return s.grammar(toks, "")
	case "do":
		return s.grammar(toks[1:], "SELECT ")
	case "create":
		return s.create(src, c)
	case "show":
		return s.show(c)
	case "describe", "explain":
		return s.explain(src, c)
	case "analyze", "optimize", "repair", "check", "checksum":
		return s.maintenance(src, c)
	case "drop":
		return s.drop(c)
	case "alter":
		return s.alter(src, c)
	case "rename":
		return s.rename(c)
	case "load":
		return s.load(c)
	case "lock", "unlock", "flush":
		return s.lockOrFlush(c)
	case "use":
		return len(toks) == 2 && toks[1].name()
	case "table": // MySQL 8: TABLE t [ORDER BY ...] [LIMIT ...]
		c.next()
		q, n, ok := c.name()
		s.table(q, n)
		return ok && !c.has("(")
	case "begin":
		if toks[0].is("begin") {
			return len(toks) == 1 || len(toks) == 2 && toks[1].is("work") // not BEGIN NOT ATOMIC
		}
		return !c.has("(")
	case "commit", "rollback", "savepoint", "release", "kill", "help":
		return !c.has("(") && !c.has("select")
	}
	return false
}

// grammar parses a statement with the MySQL grammar and walks its tree. The
// statement is rendered again for the parser from the lexer's tokens, so the
// two cannot disagree about quotes or comments: strings become ” (their
// contents are never facts), names are quoted when they need it.
func (s *statement) grammar(toks []token, prefix string) bool {
	text, ok := render(toks)
	if !ok {
		return false
	}
	tree, ok := parseMySQL(prefix + text)
	if !ok {
		return false
	}
	switch t := tree.(type) {
	case *sqlparser.Select, *sqlparser.Union, *sqlparser.ParenSelect, *sqlparser.Insert, *sqlparser.Update,
		*sqlparser.Delete, *sqlparser.Set:
	case *sqlparser.DDL:
		// CREATE TABLE with its whole definition, and TRUNCATE: the other
		// DDL forms stop reading early.
		if !(t.Action == sqlparser.CreateStr && t.TableSpec != nil || t.Action == sqlparser.TruncateStr) {
			return false
		}
	default:
		return false
	}
	s.walk(tree)
	return true
}

// parseMySQL runs the parser, which must not take the process down on input
// it was never fuzzed with.
func parseMySQL(sql string) (tree sqlparser.Statement, ok bool) {
	defer func() {
		if recover() != nil {
			tree, ok = nil, false
		}
	}()
	t, err := sqlparser.ParseStrictDDL(sql)
	return t, err == nil && t != nil
}

// render writes tokens back as text the parser reads the same way.
func render(toks []token) (string, bool) {
	var b strings.Builder
	for i, t := range toks {
		if t.kind == tokWord && i+1 < len(toks) && toks[i+1].kind == tokString && toks[i+1].start == t.end &&
			(strings.HasPrefix(t.text, "_") || strings.EqualFold(t.text, "n")) {
			continue // a character set introducer: _utf8mb4'x', N'x'
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		switch t.kind {
		case tokWord:
			if plainName(t.text) {
				b.WriteString(t.text)
			} else {
				quoteName(&b, t.text)
			}
		case tokQuoted:
			if t.text == "" {
				return "", false
			}
			quoteName(&b, t.text)
		case tokString:
			b.WriteString("''")
		default:
			b.WriteString(t.text)
		}
	}
	return b.String(), true
}

func plainName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || c == '_') {
			return false
		}
	}
	return true
}

func quoteName(b *strings.Builder, name string) {
	b.WriteByte('`')
	b.WriteString(strings.ReplaceAll(name, "`", "``"))
	b.WriteByte('`')
}

// walk adds the tables and functions of a parsed statement.
func (s *statement) walk(nodes ...sqlparser.SQLNode) {
	sqlparser.Walk(func(n sqlparser.SQLNode) (bool, error) {
		switch v := n.(type) {
		case *sqlparser.ColName:
			return false, nil // its qualifier names a table already listed, or an alias
		case sqlparser.TableName:
			if v.Qualifier.IsEmpty() && strings.EqualFold(v.Name.String(), "dual") {
				return false, nil // the parser's stand-in for no FROM
			}
			s.table(v.Qualifier.String(), v.Name.String())
			return false, nil
		case *sqlparser.Delete:
			// The targets of a multi-table DELETE may be aliases; the
			// tables themselves are in TableExprs.
			s.walk(v.TableExprs, v.Where, v.OrderBy, v.Limit)
			return false, nil
		case *sqlparser.FuncExpr:
			s.function(v.Name.String())
		case *sqlparser.GroupConcatExpr:
			s.function("group_concat")
		case *sqlparser.ConvertExpr, *sqlparser.ConvertUsingExpr:
			s.function("convert")
		case *sqlparser.SubstrExpr:
			s.function("substr")
		case *sqlparser.MatchExpr:
			s.function("match")
		case *sqlparser.ValuesFuncExpr:
			s.function("values")
		}
		return true, nil
	}, nodes...)
}

// nestedStatement reads the statement at the end of another (EXPLAIN's,
// a view's query): its facts count for the outer statement, and unless it
// is a plain read it is listed too.
func (s *statement) nestedStatement(src string, toks []token) bool {
	if len(toks) == 0 {
		return false
	}
	unparseable := s.f.unparseable
	s.f.unparseable = false
	list := s.f.mysqlStatement(src, toks, statementSource(src, toks), true)
	ok := !s.f.unparseable
	s.f.unparseable = unparseable || !ok
	s.merge(&list[0])
	if list[0].Verb == "select" {
		list = list[1:]
	}
	s.nested = append(s.nested, list...)
	return ok
}

// startsStatement reports whether t begins a statement EXPLAIN can carry.
func startsStatement(t token) bool {
	switch t.lower() {
	case "select", "insert", "replace", "update", "delete", "with", "table", "values":
		return true
	}
	return t.is("(")
}

// mysqlNotCalls are words the grammar puts before "(" that call nothing:
// keywords and type names.
var mysqlNotCalls = words(`in exists as on using and or not xor is like between when then else case
	all any some select from join over by with lateral union distinct into values row where having
	key index unique primary foreign fulltext spatial check constraint references partition partitions
	subpartition range list hash linear columns default generated always stored virtual
	int integer tinyint smallint mediumint bigint decimal dec numeric fixed float double real bit bool boolean
	char varchar nchar nvarchar binary varbinary text tinytext mediumtext longtext blob tinyblob mediumblob
	longblob enum set year time datetime timestamp date national character varying interval if return returns`)

// mysqlBeforeColumns are words after which "name (" is a table or an index
// and its column list, not a call.
var mysqlBeforeColumns = words(`into table references on index key exists view function procedure fulltext spatial unique`)

// DeriveMySQL fills the facts of a MySQL sql block that states only its
// text, the way Derive does for Postgres.
func DeriveMySQL(a *action.Action) {
	if a.SQL == nil || a.SQL.Dialect != DialectMySQL || a.SQL.Statement == "" {
		return
	}
	fill(a.SQL, MySQL(a.SQL.Statement, MySQLMode{}))
}
