package sqlfacts

import (
	"strings"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/fixtures"
)

// ClickHouse facts come from tokens alone: ClickHouse's grammar is close to
// MySQL's for simple statements but not close enough to borrow a parser.
// Functions are the names called (table functions and table engines with
// arguments included); tables are the names in the places a table goes.
// Statements of a kind not listed in docs/sql.md, and anything unexpected
// where a table goes, make the query unparseable.

// DialectClickHouse is the sql.dialect of ClickHouse actions.
const DialectClickHouse = "clickhouse"

func init() {
	fixtures.Derive = append(fixtures.Derive, DeriveClickHouse)
}

var clickhouseRules = lexRules{backslashEscapes: true, quotedEscapes: true}

// ClickHouse reads query, as the server would from the HTTP interface
// (the query parameter, a newline, then the body), and returns its sql block:
// Dialect and Statement set, Database and User left to the caller. The
// rows of an INSERT ... FORMAT that follow the format name are data and
// are not read.
func ClickHouse(query string) *action.SQL {
	var f facts
	toks, err := lexUntil(query, clickhouseRules, insertData)
	if err != nil {
		f.unparseable = true
	}
	for _, p := range split(query, toks) {
		text := p.text(query)
		if err == nil && p.end == len(query) && insertData(p.toks) {
			text = statementSource(query, p.toks) // INSERT rows are not the statement's
		}
		f.statements = append(f.statements, f.clickhouseStatement(query, p.toks, text, false)...)
	}
	return f.block(DialectClickHouse, query)
}

// ClickHouseInsertData returns where the rows of an INSERT ... FORMAT name
// begin in query: right after the format name. ok is false when query is no
// such statement, or does not reach the format name yet. Rows in FORMAT
// Values (or VALUES) are expressions the server evaluates: they are SQL.
func ClickHouseInsertData(query string) (int, bool) {
	toks, err := lexUntil(query, clickhouseRules, insertData)
	if err != nil || len(toks) == 0 || !insertData(toks) {
		return 0, false
	}
	end := toks[len(toks)-1].end
	if end == len(query) {
		// The format name may go on in what is not read yet.
		return 0, false
	}
	return end, true
}

// insertData reports whether toks is an INSERT that ends in FORMAT name,
// with rows to follow.
func insertData(toks []token) bool {
	n := len(toks)
	if n < 4 || !toks[n-1].name() || !toks[n-2].is("format") || !toks[0].is("insert") || toks[n-1].is("values") {
		return false
	}
	depth := 0
	for _, t := range toks[1 : n-2] {
		switch {
		case t.is("("):
			depth++
		case t.is(")"):
			depth--
		case t.is(";"):
			return false
		case depth == 0 && (t.is("select") || t.is("with") || t.is("values")):
			return false // the FORMAT of INSERT ... SELECT is no data
		}
	}
	return depth == 0
}

// clickhouseStatement reads one statement like mysqlStatement does.
func (f *facts) clickhouseStatement(src string, toks []token, text string, nested bool) []action.Statement {
	s := &statement{f: f}
	verb := clickhouseVerb(toks)
	if !nested || verb != "select" {
		f.verbs.add(verb)
	}
	if !s.clickhouseRead(src, toks, verb) {
		f.unparseable = true
		for _, fn := range callNames(toks, clickhouseNotCalls, clickhouseBeforeColumns) {
			s.function(fn)
		}
	}
	st := action.Statement{Verb: verb, Tables: s.tables.list, Functions: s.functions.list, Text: text}
	return append([]action.Statement{st}, s.nested...)
}

func clickhouseVerb(toks []token) string {
	switch w := toks[0].lower(); w {
	case "with":
		return "select"
	case "desc":
		return "describe"
	case "":
		if toks[0].is("(") {
			return "select"
		}
		return ""
	default:
		return w
	}
}

// clickhouseRead fills s and reports whether it read the whole statement.
func (s *statement) clickhouseRead(src string, toks []token, verb string) bool {
	switch verb {
	case "select", "insert", "create", "attach", "detach", "drop", "undrop", "truncate", "alter", "rename",
		"exchange", "optimize", "describe", "exists", "check", "set", "delete", "kill":
		sc := &chScan{s: s, toks: toks, verb: verb, ctes: map[string][]cte{}, fromOpen: []bool{false}, called: -1}
		return sc.run()
	case "use":
		return len(toks) == 2 && toks[1].name()
	case "show":
		return s.clickhouseShow(toks)
	case "explain":
		for i := 1; i < len(toks); i++ {
			if clickhouseStarts(toks[i]) {
				inner := s.f.clickhouseStatement(src, toks[i:], statementSource(src, toks[i:]), true)
				s.merge(&inner[0])
				if inner[0].Verb == "select" {
					inner = inner[1:]
				}
				s.nested = append(s.nested, inner...)
				return true
			}
			if toks[i].is("(") && i > 1 {
				return false // only settings (name = literal) come between
			}
		}
	}
	return false
}

// clickhouseStarts reports whether t begins a statement EXPLAIN carries.
func clickhouseStarts(t token) bool {
	switch t.lower() {
	case "select", "with", "insert", "create", "alter", "drop", "delete", "describe", "desc", "show", "optimize", "truncate", "rename":
		return true
	}
	return false
}

func (s *statement) clickhouseShow(toks []token) bool {
	c := &cursor{toks: toks, i: 1}
	for c.accept("full") || c.accept("extended") {
	}
	switch {
	case c.accept("create"):
		c.accept("temporary")
		if c.accept("database") || c.accept("user") || c.accept("role") || c.accept("quota") || c.accept("policy") {
			break
		}
		c.accept("table")
		c.accept("view")
		c.accept("dictionary")
		q, n, ok := c.name()
		if !ok {
			return false
		}
		s.table(q, n)
	case c.accept("columns"), c.accept("fields"):
		if !c.accept("from") && !c.accept("in") {
			return false
		}
		q, n, ok := c.name()
		if !ok {
			return false
		}
		if q == "" && (c.accept("from") || c.accept("in")) {
			if db := c.next(); db.name() {
				q = db.text
			}
		}
		s.table(q, n)
	}
	return !c.has("(")
}

// chScan reads the tables and functions of one ClickHouse statement.
type chScan struct {
	s        *statement
	toks     []token
	verb     string
	groups   []chGroup        // the open parentheses, innermost last
	nextID   int              // group ids; 0 is the statement itself
	fromOpen []bool           // per depth: a FROM clause's list of tables is being read
	ctes     map[string][]cte // CTE names, lower-case
	called   int              // the index of the last name recorded as a call
	query    bool             // a SELECT or WITH was seen at depth 0
}

// chGroup is one open parenthesis; call is set for a function's arguments.
type chGroup struct {
	id   int
	call bool
}

// cte is where a CTE name stands for its subquery: in the group that
// defines it, and only after its definition (a CTE's own body that names
// it reads the table of that name).
type cte struct {
	group int
	from  int
}

// Where a table may go, as seen from the tokens before.
type chPosition int

const (
	posNone   chPosition = iota
	posFrom              // FROM, JOIN, a comma in FROM, DESCRIBE: a table, a table function or a subquery
	posHead              // after TABLE, INTO, TO, ...: a table name, maybe with a column list
	posIn                // after IN: a table name, or an expression
	posSource            // CREATE TABLE ... AS t: a table, a table function or a query
)

func (sc *chScan) run() bool {
	toks := sc.toks
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.is("{") && i+3 < len(toks) && toks[i+2].is(":") && toks[i+3].is("identifier") {
			return false // a query parameter names a table or column
		}
		pos := sc.position(i)
		call := t.name() && i+1 < len(toks) && toks[i+1].is("(")
		switch pos {
		case posFrom, posSource:
			switch {
			case t.is("("), call:
			case pos == posSource && (t.is("select") || t.is("with")):
			case t.name():
				i = sc.table(i) - 1
				continue
			default:
				return false
			}
		case posHead:
			if t.name() {
				i = sc.table(i) - 1
				continue
			}
		case posIn:
			if t.name() && !call {
				i = sc.table(i) - 1
				continue
			}
		}
		depth := len(sc.groups)
		switch {
		case call && !(t.kind == tokWord && clickhouseNotCalls[t.lower()]):
			sc.s.function(t.text)
			sc.called = i
		case t.is("with") && (i == 0 || toks[i-1].is("(") || toks[i-1].is("as") || sc.verb == "insert" && depth == 0):
			sc.defineCTEs(i)
		case t.is("from") && !sc.inCall():
			sc.fromOpen[depth] = true
		case t.is("("):
			sc.nextID++
			sc.groups = append(sc.groups, chGroup{id: sc.nextID, call: sc.called == i-1})
			sc.fromOpen = append(sc.fromOpen, false)
		case t.is(")"):
			if depth == 0 {
				return false
			}
			sc.groups = sc.groups[:depth-1]
			sc.fromOpen = sc.fromOpen[:depth]
		case t.kind == tokWord && fromEnds[t.lower()]:
			sc.fromOpen[depth] = false
		}
		if depth == 0 && (t.is("select") || t.is("with")) {
			sc.query = true
		}
	}
	return len(sc.groups) == 0
}

// fromEnds are the words that end a FROM clause's list of tables.
var fromEnds = words(`where prewhere group order limit having settings format union except intersect window qualify
	array join left right inner outer full cross any all asof semi anti paste global on using into`)

func (sc *chScan) inCall() bool {
	return len(sc.groups) > 0 && sc.groups[len(sc.groups)-1].call
}

// after reports whether the token before i is the word w.
func (sc *chScan) after(i int, w string) bool { return i > 0 && sc.toks[i-1].is(w) }

// notNames are the words that follow a statement's head where a name
// could.
var notNames = words(`table tables view dictionary database temporary if function`)

// heads are the words before TABLE, VIEW or DICTIONARY when a name follows.
var heads = words(`create attach detach drop undrop alter truncate optimize check exists describe desc rename
	into temporary replace to exchange materialized live window`)

// position says whether a table may go at token i.
func (sc *chScan) position(i int) chPosition {
	if i == 0 {
		return posNone
	}
	toks := sc.toks
	p, t := toks[i-1], toks[i]
	depth := len(sc.groups)
	if notNames[t.lower()] {
		return posNone
	}
	switch p.lower() {
	case "from":
		if sc.inCall() {
			return posNone // EXTRACT(DAY FROM d), TRIM(... FROM s)
		}
		return posFrom
	case "join":
		if sc.after(i-1, "array") {
			return posNone // ARRAY JOIN takes arrays
		}
		return posFrom
	case "describe", "desc":
		if i == 1 && !t.is("table") {
			return posFrom
		}
	case "in":
		if !sc.inCall() {
			return posIn
		}
	case "into":
		if !t.is("table") && !t.is("function") {
			return posHead
		}
	case "table", "tables", "view", "dictionary":
		if i >= 2 && (toks[i-2].is("describe") || toks[i-2].is("desc")) {
			return posFrom // DESCRIBE TABLE file(...) reads the file for its structure
		}
		if i >= 2 && heads[toks[i-2].lower()] {
			return posHead
		}
	case "exists":
		if i == 1 || sc.after(i-1, "if") || sc.after(i-1, "not") && sc.after(i-2, "if") || sc.after(i-1, "temporary") && i == 2 {
			return posHead
		}
	case "to":
		if depth == 0 && (sc.verb == "rename" || sc.verb == "create" || sc.verb == "attach") && i >= 2 && toks[i-2].name() &&
			!t.is("disk") && !t.is("volume") {
			return posHead
		}
	case "and":
		if depth == 0 && sc.verb == "exchange" {
			return posHead
		}
	case "as":
		if depth == 0 && sc.verb == "create" && !sc.query && !has(toks, "view") && !has(toks, "function") {
			return posSource
		}
	case "truncate", "optimize", "check":
		if i == 1 && !t.is("table") && !t.is("temporary") {
			return posHead
		}
	}
	if p.is(",") {
		if sc.fromOpen[depth] {
			return posFrom
		}
		if depth == 0 && (sc.verb == "drop" || sc.verb == "rename") {
			return posHead
		}
	}
	return posNone
}

// table adds the table name at i, unless it is a CTE in scope there, and
// returns the index after it.
func (sc *chScan) table(i int) int {
	c := &cursor{toks: sc.toks, i: i}
	q, n, ok := c.name()
	if !ok {
		return i + 1
	}
	if q == "" && sc.cteInScope(n, i) {
		return c.i
	}
	sc.s.table(q, n)
	return c.i
}

// defineCTEs records the names a WITH clause at i gives its subqueries:
// name AS (SELECT ...). "expr AS name" is an alias, not a table.
func (sc *chScan) defineCTEs(i int) {
	group := 0
	if len(sc.groups) > 0 {
		group = sc.groups[len(sc.groups)-1].id
	}
	toks := sc.toks
	for j := i + 1; j+3 < len(toks); j++ {
		if toks[j].is("select") && !toks[j-1].is("(") {
			return // the WITH clause ended
		}
		if !(toks[j].name() && toks[j+1].is("as") && toks[j+2].is("(") && (toks[j+3].is("select") || toks[j+3].is("with")) &&
			(toks[j-1].is("with") || toks[j-1].is(","))) {
			continue
		}
		c := &cursor{toks: toks, i: j + 2}
		if !c.skipParens() {
			return
		}
		name := strings.ToLower(toks[j].text)
		sc.ctes[name] = append(sc.ctes[name], cte{group: group, from: c.i})
		j = c.i - 1
	}
}

func (sc *chScan) cteInScope(name string, i int) bool {
	for _, d := range sc.ctes[strings.ToLower(name)] {
		if i < d.from {
			continue
		}
		if d.group == 0 {
			return true
		}
		for _, g := range sc.groups {
			if g.id == d.group {
				return true
			}
		}
	}
	return false
}

// clickhouseNotCalls are words before "(" that call nothing: keywords,
// type names, codecs and the clauses of a dictionary.
var clickhouseNotCalls = words(`in exists as on using and or not when then else case all any some select from join over by
	with union distinct into values where having prewhere key primary order partition sample final settings format
	interval global asof cross paste semi anti except intersect limit offset codec source layout lifetime
	nullable lowcardinality fixedstring decimal decimal32 decimal64 decimal128 decimal256 datetime datetime64
	enum enum8 enum16 nested aggregatefunction simpleaggregatefunction object
	zstd lz4 lz4hc delta doubledelta gorilla t64 fpc`)

// clickhouseBeforeColumns are words after which "name (" is a table and
// its column list, not a call.
var clickhouseBeforeColumns = words(`into table view dictionary exists`)

// DeriveClickHouse fills the facts of a ClickHouse sql block that states
// only its text.
func DeriveClickHouse(a *action.Action) {
	if a.SQL == nil || a.SQL.Dialect != DialectClickHouse || a.SQL.Statement == "" {
		return
	}
	fill(a.SQL, ClickHouse(a.SQL.Statement))
}
