package sqlfacts

import (
	"slices"
	"strings"
	"testing"

	"github.com/clawpatrol/clawpatrol/action"
)

// factCase is one query and the facts it must have; nil lists must be empty.
type factCase struct {
	name, query string
	verbs       []string
	tables      []string
	qualified   []string
	functions   []string
	texts       []string // the statements' texts, checked when given
	unparseable bool
}

func checkFacts(t *testing.T, q *action.SQL, c factCase) {
	t.Helper()
	if q.Statement != c.query {
		t.Errorf("statement %q", q.Statement)
	}
	if q.Unparseable != c.unparseable {
		t.Errorf("unparseable = %v, want %v", q.Unparseable, c.unparseable)
	}
	check := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	check("verbs", q.Verbs, c.verbs)
	check("tables", q.Tables, c.tables)
	check("qualified_tables", q.QualifiedTables, c.qualified)
	check("functions", q.Functions, c.functions)
	if c.texts != nil {
		var texts []string
		for _, s := range q.Statements {
			texts = append(texts, s.Text)
		}
		check("statement texts", texts, c.texts)
	}
}

func TestMySQL(t *testing.T) {
	l := func(s ...string) []string { return s }
	cases := []factCase{
		{name: "select", query: "SELECT id, email FROM app.users WHERE id = 1",
			verbs: l("select"), tables: l("users"), qualified: l("app.users"), texts: l("SELECT id, email FROM app.users WHERE id = 1")},
		{name: "no from is no table", query: "SELECT 1", verbs: l("select")},
		{name: "multi-statement", query: "select load_file('/etc/passwd'); DROP TABLE t;",
			verbs: l("select", "drop"), tables: l("t"), qualified: l("t"), functions: l("load_file"),
			texts: l("select load_file('/etc/passwd')", "DROP TABLE t")},
		{name: "a semicolon in a string splits nothing", query: "SELECT 'a;b'; SELECT \"c;d\"", verbs: l("select"),
			texts: l("SELECT 'a;b'", `SELECT "c;d"`)},
		{name: "a semicolon in a comment splits nothing", query: "SELECT 1 /* ; DROP TABLE x */ # ; DROP TABLE y\n-- ; DROP TABLE z\n",
			verbs: l("select"), texts: l("SELECT 1 /* ; DROP TABLE x */ # ; DROP TABLE y\n-- ; DROP TABLE z")},
		{name: "a semicolon in backticks splits nothing", query: "SELECT * FROM `a;b`", verbs: l("select"), tables: l("a;b"), qualified: l("a;b")},
		{name: "escaped quote", query: `SELECT 'a\'; DROP TABLE t; -- '`, verbs: l("select")},
		{name: "doubled quote", query: `SELECT 'a''; DROP TABLE t; -- '`, verbs: l("select")},
		{name: "dash dash without a space is no comment", query: "SELECT 1 --1, load_file('/etc/passwd')",
			verbs: l("select"), functions: l("load_file")},
		{name: "dash dash with a space is", query: "SELECT 1 -- , load_file('/etc/passwd')", verbs: l("select")},
		{name: "executable comments are code", query: "SELECT 1 /*!50000 , load_file('/etc/passwd') */",
			verbs: l("select"), functions: l("load_file")},
		{name: "MariaDB executable comments are code", query: "SELECT 1 /*M!100100 , load_file('x') */",
			verbs: l("select"), functions: l("load_file")},
		{name: "a comment inside an executable comment", query: "SELECT 1 /*!50000 /* */ , 2 */", verbs: l("select"), unparseable: true},
		{name: "a statement hidden in an executable comment", query: "SELECT 1 /*!50000 ; DROP TABLE t */", verbs: l("select"), unparseable: true},
		{name: "ANSI_QUOTES would read this otherwise", query: `SELECT "a\" FROM secrets -- "`, verbs: l("select"), unparseable: true,
			texts: l(`SELECT "a\" FROM secrets -- "`)},
		{name: "backslash quotes are ambiguous across statements", query: `SELECT 'a\'; SELECT 1; -- '; SELECT 2`,
			verbs: l("select"), unparseable: true},
		{name: "unterminated string", query: "SELECT 'abc", verbs: l("select"), unparseable: true},
		{name: "a backslash GBK would join to the byte before", query: "SELECT '\xbf\\'; DROP TABLE t; -- '", unparseable: true},
		{name: "non-ASCII text is fine", query: "SELECT 'héllo' FROM t", verbs: l("select"), tables: l("t"), qualified: l("t")},
		{name: "qualified and quoted names", query: "SELECT * FROM `Weird Table` w JOIN `db`.`X` ON w.id = X.id",
			verbs: l("select"), tables: l("weird table", "x"), qualified: l("Weird Table", "db.X")},
		{name: "function names are lower-case, column qualifiers no tables", query: "SELECT COUNT(*), Sleep(1), t.a FROM t",
			verbs: l("select"), tables: l("t"), qualified: l("t"), functions: l("count", "sleep")},
		{name: "subqueries", query: "SELECT * FROM (SELECT a FROM x) s WHERE a IN (SELECT b FROM y) AND EXISTS (SELECT 1 FROM z)",
			verbs: l("select"), tables: l("x", "y", "z"), qualified: l("x", "y", "z")},
		{name: "union", query: "SELECT a FROM x UNION SELECT b FROM y", verbs: l("select"), tables: l("x", "y"), qualified: l("x", "y")},
		{name: "insert select", query: "INSERT INTO t (a, b) SELECT a, now() FROM u ON DUPLICATE KEY UPDATE a = VALUES(a)",
			verbs: l("insert"), tables: l("t", "u"), qualified: l("t", "u"), functions: l("now", "values")},
		{name: "replace", query: "REPLACE INTO t VALUES (1)", verbs: l("replace"), tables: l("t"), qualified: l("t")},
		{name: "update with a subquery", query: "UPDATE t SET a = (SELECT max(b) FROM u)",
			verbs: l("update"), tables: l("t", "u"), qualified: l("t", "u"), functions: l("max")},
		{name: "multi-table delete", query: "DELETE a FROM t AS a JOIN u ON a.id = u.id",
			verbs: l("delete"), tables: l("t", "u"), qualified: l("t", "u")},
		{name: "character set introducers", query: "SELECT _utf8mb4'x', N'y', X'0A' FROM t", verbs: l("select"), tables: l("t"), qualified: l("t")},
		{name: "settings", query: "SET NAMES utf8mb4; SET autocommit = 1; SET @@session.sql_mode = 'ANSI'", verbs: l("set")},
		{name: "use", query: "USE app", verbs: l("use")},
		{name: "transactions", query: "START TRANSACTION; SAVEPOINT s; ROLLBACK TO SAVEPOINT s; RELEASE SAVEPOINT s; COMMIT; BEGIN; ROLLBACK",
			verbs: l("begin", "savepoint", "rollback", "release", "commit")},
		{name: "compound statement", query: "BEGIN NOT ATOMIC DROP TABLE t; END", verbs: l("begin", "end"), unparseable: true},
		{name: "create table", query: "CREATE TABLE t (id int primary key, name varchar(10))", verbs: l("create"), tables: l("t"), qualified: l("t")},
		{name: "create table like", query: "CREATE TABLE IF NOT EXISTS t2 LIKE app.t", verbs: l("create"), tables: l("t2", "t"), qualified: l("t2", "app.t")},
		{name: "create view", query: "CREATE OR REPLACE VIEW v AS SELECT a, load_file('x') FROM t WITH CHECK OPTION",
			verbs: l("create"), tables: l("v", "t"), qualified: l("v", "t"), functions: l("load_file")},
		{name: "create index", query: "CREATE UNIQUE INDEX i ON t (a, b(10))", verbs: l("create"), tables: l("t"), qualified: l("t")},
		{name: "functional index", query: "CREATE INDEX i ON t ((lower(a)))", verbs: l("create"), tables: l("t"), qualified: l("t"),
			functions: l("lower"), unparseable: true},
		{name: "create procedure", query: "CREATE PROCEDURE p() SELECT 1", verbs: l("create"), unparseable: true},
		{name: "alter table", query: "ALTER TABLE t ADD COLUMN c varchar(10) DEFAULT 'x', ADD FOREIGN KEY (c) REFERENCES u (id)",
			verbs: l("alter"), tables: l("t", "u"), qualified: l("t", "u")},
		{name: "alter table rename", query: "ALTER TABLE t RENAME TO u", verbs: l("alter"), tables: l("t", "u"), qualified: l("t", "u")},
		{name: "alter table with an expression", query: "ALTER TABLE t ADD CHECK (length(a) > 1)", verbs: l("alter"), tables: l("t"),
			qualified: l("t"), functions: l("length"), unparseable: true},
		{name: "drop", query: "DROP TEMPORARY TABLE IF EXISTS a, db.b; DROP VIEW v; DROP INDEX i ON c; DROP DATABASE d; DROP USER 'x'@'%'",
			verbs: l("drop"), tables: l("a", "b", "v", "c"), qualified: l("a", "db.b", "v", "c")},
		{name: "truncate and rename", query: "TRUNCATE TABLE t; RENAME TABLE a TO b, c TO d",
			verbs: l("truncate", "rename"), tables: l("t", "a", "b", "c", "d"), qualified: l("t", "a", "b", "c", "d")},
		{name: "show", query: "SHOW TABLES; SHOW FULL COLUMNS FROM t FROM app; SHOW CREATE TABLE secrets; SHOW VARIABLES LIKE 'x%'",
			verbs: l("show"), tables: l("t", "secrets"), qualified: l("app.t", "secrets")},
		{name: "show with a subquery", query: "SHOW TABLES WHERE (SELECT load_file('x'))", verbs: l("show"), functions: l("load_file"), unparseable: true},
		{name: "describe", query: "DESCRIBE users; DESC app.orders id", verbs: l("describe"), tables: l("users", "orders"), qualified: l("users", "app.orders")},
		{name: "explain of a select", query: "EXPLAIN SELECT * FROM t", verbs: l("explain"), tables: l("t"), qualified: l("t"),
			texts: l("EXPLAIN SELECT * FROM t")},
		{name: "explain analyze runs its statement", query: "EXPLAIN ANALYZE DELETE FROM t WHERE x = sleep(1)",
			verbs: l("explain", "delete"), tables: l("t"), qualified: l("t"), functions: l("sleep"),
			texts: l("EXPLAIN ANALYZE DELETE FROM t WHERE x = sleep(1)", "DELETE FROM t WHERE x = sleep(1)")},
		{name: "MariaDB analyze runs its statement", query: "ANALYZE FORMAT=JSON UPDATE t SET a = 1",
			verbs: l("analyze", "update"), tables: l("t"), qualified: l("t")},
		{name: "table maintenance", query: "ANALYZE TABLE a, b; OPTIMIZE TABLE c; CHECK TABLE d FOR UPGRADE; CHECKSUM TABLE e QUICK; REPAIR TABLE f",
			verbs: l("analyze", "optimize", "check", "checksum", "repair"), tables: l("a", "b", "c", "d", "e", "f"), qualified: l("a", "b", "c", "d", "e", "f")},
		{name: "load data local", query: "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t FIELDS TERMINATED BY ':' (a, @b)",
			verbs: l("load"), tables: l("t"), qualified: l("t")},
		{name: "load data with a set clause", query: "LOAD DATA INFILE 'x' INTO TABLE t (a) SET b = (SELECT c FROM u)",
			verbs: l("load"), tables: l("t"), qualified: l("t"), unparseable: true},
		{name: "lock", query: "LOCK TABLES t READ, app.u AS x WRITE; UNLOCK TABLES", verbs: l("lock", "unlock"), tables: l("t", "u"), qualified: l("t", "app.u")},
		{name: "flush", query: "FLUSH TABLES t WITH READ LOCK; FLUSH PRIVILEGES", verbs: l("flush"), tables: l("t"), qualified: l("t")},
		{name: "do", query: "DO sleep(1)", verbs: l("do"), functions: l("sleep")},
		{name: "table statement", query: "TABLE t ORDER BY a", verbs: l("table"), tables: l("t"), qualified: l("t")},
		{name: "CTEs are not parsed", query: "WITH x AS (SELECT secret FROM s) SELECT upper(secret) FROM x",
			verbs: l("select"), functions: l("upper"), unparseable: true},
		{name: "window functions are not parsed", query: "SELECT sum(x) OVER (PARTITION BY y) FROM t", verbs: l("select"), functions: l("sum"), unparseable: true},
		{name: "select into outfile is not parsed", query: "SELECT * FROM t INTO OUTFILE '/tmp/x'", verbs: l("select"), unparseable: true},
		{name: "call", query: "CALL p(1)", verbs: l("call"), functions: l("p"), unparseable: true},
		{name: "prepare from a string", query: "PREPARE s FROM 'DROP TABLE t'; EXECUTE s", verbs: l("prepare", "execute"), unparseable: true},
		{name: "grant", query: "GRANT ALL ON *.* TO 'x'@'%'", verbs: l("grant"), unparseable: true},
		{name: "empty", query: ""},
		{name: "only comments and semicolons", query: " ; -- nothing\n/* at all */ ; # really\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkFacts(t, MySQL(c.query, MySQLMode{}), c)
		})
	}
}

func TestMySQLLocalFile(t *testing.T) {
	for query, want := range map[string]bool{
		"LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t":                                true,
		"load xml low_priority local infile 'x' into table t":                              true,
		"LOAD DATA LOCAL INFILE 'x' INTO TABLE t (a) SET b = 1":                            true,
		"LOAD DATA INFILE '/var/lib/mysql-files/x' INTO TABLE t":                           false,
		"SELECT 'LOAD DATA LOCAL INFILE'":                                                  false,
		"SELECT 1; LOAD DATA /*!50000 LOCAL */ INFILE 'x' INTO TABLE t":                    true,
		"LOAD DATA INFILE 'x' INTO TABLE t CHARACTER SET latin1 LINES STARTING BY 'local'": false,
	} {
		q := MySQL(query, MySQLMode{})
		got := slices.ContainsFunc(q.Statements, func(s action.Statement) bool { return s.LocalFile })
		if got != want {
			t.Errorf("%s: local_file = %v, want %v", query, got, want)
		}
		if want && !slices.Contains(q.Verbs, "load") {
			t.Errorf("%s: verbs %q", query, q.Verbs)
		}
	}
}

func TestMySQLNoBackslashEscapes(t *testing.T) {
	// With NO_BACKSLASH_ESCAPES a backslash ends nothing: the quote after
	// it closes the string, and what follows is a statement.
	q := MySQL(`SELECT 'a\'; DROP TABLE t; -- '`, MySQLMode{NoBackslashEscapes: true})
	if !q.Unparseable || !slices.Contains(q.Verbs, "drop") {
		t.Errorf("got %+v", q)
	}
	q = MySQL(`SELECT 'C:\dir\' FROM t`, MySQLMode{NoBackslashEscapes: true})
	if q.Unparseable || !slices.Equal(q.Tables, []string{"t"}) {
		t.Errorf("got %+v", q)
	}
}

func TestDeriveMySQL(t *testing.T) {
	a := &action.Action{Protocol: "sql", SQL: &action.SQL{Dialect: "mysql", Statement: "SELECT load_file('/etc/passwd')"}}
	DeriveMySQL(a)
	if !slices.Equal(a.SQL.Functions, []string{"load_file"}) || len(a.SQL.Statements) != 1 || a.SQL.Unparseable {
		t.Errorf("derived %+v", a.SQL)
	}
	b := &action.Action{Protocol: "sql", SQL: &action.SQL{Dialect: "mysql", Statement: "DELETE FROM t", Verbs: []string{"select"}}}
	DeriveMySQL(b)
	if !slices.Equal(b.SQL.Verbs, []string{"select"}) || !slices.Equal(b.SQL.Tables, []string{"t"}) {
		t.Errorf("derived %+v", b.SQL)
	}
	c := &action.Action{Protocol: "sql", SQL: &action.SQL{Dialect: "postgres", Statement: "SELECT 1"}}
	DeriveMySQL(c)
	if c.SQL.Verbs != nil {
		t.Errorf("derived %+v", c.SQL)
	}
}

// FuzzMySQL checks that no query takes the parser down and that every
// statement listed is text of the query.
func FuzzMySQL(f *testing.F) {
	for _, s := range []string{
		"SELECT 1", "select load_file('/etc/passwd'); DROP TABLE t", "SELECT 'a\\'b' -- x\n, `c``d` FROM t",
		"SELECT /*!50000 1, */ 2", "LOAD DATA LOCAL INFILE 'x' INTO TABLE t", "CREATE VIEW v AS SELECT 1",
		"EXPLAIN ANALYZE DELETE FROM t", "SHOW CREATE TABLE t", "INSERT INTO t VALUES (1, 'x', X'0A', 1.5e3, @v, ?)",
	} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, query string, nbe bool) {
		q := MySQL(query, MySQLMode{NoBackslashEscapes: nbe})
		if q.Statement != query {
			t.Fatal("statement changed")
		}
		for _, s := range q.Statements {
			if !q.Unparseable && !strings.Contains(query, s.Text) && s.Verb != "select" {
				// nested statements are cut from the text too
				t.Errorf("statement %q is not in the query", s.Text)
			}
		}
	})
}
