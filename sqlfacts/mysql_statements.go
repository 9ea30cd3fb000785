package sqlfacts

import "slices"

// The statements the MySQL grammar skips over or does not know, read
// from their tokens. Each reads what it can name for sure and reports
// whether nothing else in the statement could touch a table or call a
// function (docs/sql.md lists them).

func (s *statement) show(c *cursor) bool {
	c.next()
	for c.accept("full") || c.accept("extended") {
	}
	switch {
	case c.accept("create"):
		if c.accept("table") || c.accept("view") {
			q, n, ok := c.name()
			s.table(q, n)
			if !ok {
				return false
			}
		}
	case c.accept("columns"), c.accept("fields"), c.accept("index"), c.accept("indexes"), c.accept("keys"):
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
	// What else SHOW says is a filter (LIKE, WHERE): without a call or a
	// subquery in it, it reads nothing.
	return !c.has("(") && !c.has("select")
}

func (s *statement) explain(src string, c *cursor) bool {
	c.next()
	for {
		switch {
		case c.accept("extended"), c.accept("partitions"), c.accept("analyze"), c.accept("verbose"):
		case c.accept("format"):
			if !c.accept("=") || !c.next().name() {
				return false
			}
		default:
			if startsStatement(c.peek()) {
				return s.nestedStatement(src, c.rest())
			}
			// DESCRIBE t [column | 'pattern']
			q, n, ok := c.name()
			if !ok || c.accept("for") {
				return false
			}
			s.table(q, n)
			if !c.done() {
				if t := c.next(); !t.name() && t.kind != tokString {
					return false
				}
			}
			return c.done()
		}
	}
}

// maintenance reads ANALYZE, OPTIMIZE, REPAIR, CHECK and CHECKSUM TABLE;
// MariaDB's ANALYZE of a statement runs it, like EXPLAIN ANALYZE.
func (s *statement) maintenance(src string, c *cursor) bool {
	c.next()
	if c.accept("format") && (!c.accept("=") || !c.next().name()) {
		return false
	}
	c.accept("no_write_to_binlog")
	c.accept("local")
	if !c.accept("table") && !c.accept("tables") {
		if startsStatement(c.peek()) {
			return s.nestedStatement(src, c.rest())
		}
		return false
	}
	if !s.names(c) {
		return false
	}
	return !c.has("(")
}

// names reads a list of table names.
func (s *statement) names(c *cursor) bool {
	for {
		q, n, ok := c.name()
		if !ok {
			return false
		}
		s.table(q, n)
		if !c.accept(",") {
			return true
		}
	}
}

func (s *statement) drop(c *cursor) bool {
	c.next()
	c.accept("temporary")
	switch {
	case c.accept("table"), c.accept("tables"), c.accept("view"), c.accept("sequence"):
		if c.accept("if") && !c.accept("exists") {
			return false
		}
		if !s.names(c) {
			return false
		}
		c.accept("restrict")
		c.accept("cascade")
		return c.done()
	case c.accept("index"):
		c.accept("if") // MariaDB: DROP INDEX IF EXISTS
		c.accept("exists")
		if !c.next().name() || !c.accept("on") {
			return false
		}
		q, n, ok := c.name()
		s.table(q, n)
		return ok && !c.has("(")
	}
	// DROP DATABASE, FUNCTION, PROCEDURE, TRIGGER, EVENT, USER, ROLE, ...:
	// names only, no table.
	return !c.has("(")
}

func (s *statement) alter(src string, c *cursor) bool {
	c.next()
	c.accept("online")
	c.accept("ignore")
	switch {
	case c.accept("table"):
		if c.accept("if") && !c.accept("exists") {
			return false
		}
		q, n, ok := c.name()
		if !ok {
			return false
		}
		s.table(q, n)
		rest := c.rest()
		s.tablesAfter(rest, "to", "as", "references", "table")
		return !ddlCalls(rest, mysqlNotCalls, mysqlBeforeColumns) && !has(rest, "select")
	case c.accept("view"):
		return s.view(src, c)
	case c.accept("database"), c.accept("schema"):
		return !c.has("(")
	}
	if i := c.find("view"); i >= 0 && !c.has("(") {
		// ALTER ALGORITHM = ... DEFINER = ... VIEW
		c.i = i + 1
		return s.view(src, c)
	}
	return false
}

// tablesAfter adds the names right after any of the given words (ALTER
// TABLE's RENAME TO, REFERENCES, EXCHANGE PARTITION ... WITH TABLE).
func (s *statement) tablesAfter(toks []token, after ...string) {
	for i := 0; i+1 < len(toks); i++ {
		if !slices.Contains(after, toks[i].lower()) {
			continue
		}
		c := &cursor{toks: toks, i: i + 1}
		if q, n, ok := c.name(); ok {
			s.table(q, n)
		}
	}
}

// view reads a view's name, its optional column list and its query.
func (s *statement) view(src string, c *cursor) bool {
	q, n, ok := c.name()
	if !ok {
		return false
	}
	s.table(q, n)
	if c.peek().is("(") {
		if !c.skipParens() {
			return false
		}
	}
	if !c.accept("as") {
		return false
	}
	rest := c.rest()
	// WITH [CASCADED | LOCAL] CHECK OPTION is the view's, not the query's.
	if k := len(rest); k >= 3 && rest[k-2].is("check") && rest[k-1].is("option") {
		j := k - 3
		if rest[j].is("cascaded") || rest[j].is("local") {
			j--
		}
		if j < 0 || !rest[j].is("with") {
			return false
		}
		rest = rest[:j]
	}
	return s.nestedStatement(src, rest)
}

func (s *statement) create(src string, c *cursor) bool {
	c.next()
	c.accept("or")
	c.accept("replace")
	c.accept("temporary")
	switch {
	case c.accept("table"):
		// CREATE TABLE a LIKE b, with or without parentheses.
		c.accept("if")
		c.accept("not")
		c.accept("exists")
		q, n, ok := c.name()
		if ok && (c.accept("like") || c.accept("(") && c.accept("like")) {
			s.table(q, n)
			q2, n2, ok := c.name()
			s.table(q2, n2)
			c.accept(")")
			return ok && c.done()
		}
		return s.grammar(c.toks, "")
	case c.accept("unique"), c.accept("fulltext"), c.accept("spatial"), c.peek().is("index"):
		if !c.accept("index") {
			return false
		}
		if !c.next().name() {
			return false
		}
		if c.accept("using") {
			c.next()
		}
		if !c.accept("on") {
			return false
		}
		q, n, ok := c.name()
		s.table(q, n)
		rest := c.rest()
		return ok && !ddlCalls(rest, mysqlNotCalls, mysqlBeforeColumns) && !has(rest, "select")
	case c.accept("database"), c.accept("schema"):
		return !c.has("(")
	}
	// CREATE [ALGORITHM = ...] [DEFINER = ...] [SQL SECURITY ...] VIEW
	if i := c.find("view"); i >= 0 && !has(c.toks[c.i:i], "(") {
		c.i = i + 1
		return s.view(src, c)
	}
	return false
}

func (s *statement) rename(c *cursor) bool {
	c.next()
	switch {
	case c.accept("table"), c.accept("tables"):
		for {
			q, n, ok := c.name()
			if !ok || !c.accept("to") {
				return false
			}
			s.table(q, n)
			q, n, ok = c.name()
			if !ok {
				return false
			}
			s.table(q, n)
			if !c.accept(",") {
				return c.done()
			}
		}
	case c.accept("user"):
		return !c.has("(")
	}
	return false
}

// load reads LOAD DATA|XML [LOW_PRIORITY|CONCURRENT] [LOCAL] INFILE 'file'
// [REPLACE|IGNORE] INTO TABLE t ...; a SET clause (expressions) is not read.
func (s *statement) load(c *cursor) bool {
	c.next()
	if !c.accept("data") && !c.accept("xml") {
		return false
	}
	c.accept("low_priority")
	c.accept("concurrent")
	c.accept("local")
	if !c.accept("infile") || c.next().kind != tokString {
		return false
	}
	c.accept("replace")
	c.accept("ignore")
	if !c.accept("into") || !c.accept("table") {
		return false
	}
	q, n, ok := c.name()
	s.table(q, n)
	rest := c.rest()
	return ok && !has(rest, "set") && !has(rest, "select") && !ddlCalls(rest, mysqlNotCalls, mysqlBeforeColumns)
}

// lockOrFlush reads LOCK TABLES t [AS a] READ|WRITE, ..., UNLOCK TABLES and
// FLUSH [TABLES t, ...].
func (s *statement) lockOrFlush(c *cursor) bool {
	verb := c.next()
	if c.has("(") {
		return false
	}
	c.accept("no_write_to_binlog")
	c.accept("local")
	if !c.accept("tables") && !c.accept("table") || verb.is("unlock") {
		return true // LOCK INSTANCE FOR BACKUP, FLUSH PRIVILEGES, UNLOCK TABLES
	}
	for !c.done() {
		if verb.is("flush") && (c.peek().is("with") || c.peek().is("for")) {
			return true
		}
		q, n, ok := c.name()
		if !ok {
			return false
		}
		s.table(q, n)
		for !c.done() && !c.peek().is(",") {
			c.next() // [AS] alias READ [LOCAL] | [LOW_PRIORITY] WRITE
		}
		c.accept(",")
	}
	return true
}

// has reports whether toks holds the word or operator w.
func has(toks []token, w string) bool {
	for _, t := range toks {
		if t.is(w) {
			return true
		}
	}
	return false
}
