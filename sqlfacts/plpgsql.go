package sqlfacts

import (
	"encoding/json"
	"sort"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// PL/pgSQL parse modes of an embedded expression (the server's RawParseMode).
const (
	parseStatement  = 0 // a whole SQL statement
	parseExpression = 2 // an expression: "SELECT " + it
)

// do adds the statements of a DO block. Its body is compiled as PL/pgSQL, the
// way the server does, and every SQL statement and expression in it is parsed
// in turn: each statement is listed after the DO, and what they touch counts
// for the DO too. A body in another language, one that does not compile, or
// an EXECUTE of anything but a string constant makes the query unparseable:
// nothing shows what it would run.
func (w *walker) do(d *pg_query.DoStmt) {
	body, lang := "", "plpgsql"
	for _, a := range d.Args {
		switch de := a.GetDefElem(); de.GetDefname() {
		case "as":
			body = de.GetArg().GetString_().GetSval()
		case "language":
			lang = de.GetArg().GetString_().GetSval()
		}
	}
	if !strings.EqualFold(lang, "plpgsql") || w.depth+1 > maxNesting {
		w.facts.unparseable = true
		return
	}
	// The PL/pgSQL compiler takes a function definition: wrap the body in
	// one, quoted as a standard string so nothing in it can end the quote.
	def := "CREATE FUNCTION clawpatrol_do() RETURNS void LANGUAGE plpgsql AS '" + strings.ReplaceAll(body, "'", "''") + "'"
	out, err := pg_query.ParsePlPgSqlToJSON(def)
	if err != nil {
		w.facts.unparseable = true
		return
	}
	var tree any
	if err := json.Unmarshal([]byte(out), &tree); err != nil {
		w.facts.unparseable = true
		return
	}
	w.plpgsql(tree, "", false)
}

// plpgsql finds every embedded expression of a compiled PL/pgSQL function
// (the JSON tree pg_query returns). under is the key v was found under;
// dynamic says v is the string an EXECUTE runs.
func (w *walker) plpgsql(v any, under string, dynamic bool) {
	switch t := v.(type) {
	case []any:
		for _, x := range t {
			w.plpgsql(x, under, dynamic)
		}
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys) // deterministic order of the statements listed
		for _, k := range keys {
			if k == "PLpgSQL_expr" {
				e, _ := t[k].(map[string]any)
				query, _ := e["query"].(string)
				mode, _ := e["parseMode"].(float64)
				w.plExpr(query, int(mode), dynamic)
				continue
			}
			dyn := k == "dynquery" || k == "query" && (under == "PLpgSQL_stmt_dynexecute" || under == "PLpgSQL_stmt_dynfors")
			w.plpgsql(t[k], k, dyn)
		}
	}
}

// plExpr adds one embedded expression or statement of a PL/pgSQL body.
func (w *walker) plExpr(query string, mode int, dynamic bool) {
	switch {
	case dynamic:
		// EXECUTE runs a string computed at run time: only a constant
		// says what it is.
		s, ok := constantString(query)
		if !ok {
			w.facts.unparseable = true
			return
		}
		w.embedded(s, true)
	case mode == parseStatement:
		w.embedded(query, true)
	case mode == parseExpression:
		w.embedded("SELECT "+query, false)
	default: // an assignment, "target := expression"
		i, n := strings.Index(query, ":="), 2
		if i < 0 {
			i, n = strings.IndexByte(query, '='), 1
		}
		if i < 0 {
			w.facts.unparseable = true
			return
		}
		w.embedded("SELECT "+query[i+n:], false)
	}
}

// constantString returns the value of an expression that is one string
// constant.
func constantString(expr string) (string, bool) {
	tree, err := pg_query.Parse("SELECT " + expr)
	if err != nil || len(tree.Stmts) != 1 {
		return "", false
	}
	sel := tree.Stmts[0].GetStmt().GetSelectStmt()
	if sel == nil || len(sel.TargetList) != 1 {
		return "", false
	}
	c := sel.TargetList[0].GetResTarget().GetVal().GetAConst()
	if c == nil || c.GetSval() == nil {
		return "", false
	}
	return c.GetSval().GetSval(), true
}

// embedded adds the facts of SQL found inside a statement. listed adds its
// statements to the list too; an expression only lends its facts.
func (w *walker) embedded(sql string, listed bool) {
	if w.depth+1 > maxNesting {
		w.facts.unparseable = true
		return
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		w.facts.unparseable = true
		return
	}
	w.facts.version = tree.Version
	for _, raw := range tree.Stmts {
		if listed {
			w.facts.verbs.add(verb(raw.Stmt))
		}
		in := walker{facts: w.facts, depth: w.depth + 1, text: statementText(sql, raw)}
		s := in.statement(raw.Stmt)
		w.merge(&in)
		if listed {
			w.nested = append(w.nested, s)
		}
		w.nested = append(w.nested, in.nested...)
	}
}
