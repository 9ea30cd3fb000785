package sqlfacts

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/fixtures"
)

func TestClickHouse(t *testing.T) {
	l := func(s ...string) []string { return s }
	cases := []factCase{
		{name: "select", query: "SELECT toDate(ts) AS d, count() FROM events GROUP BY d",
			verbs: l("select"), tables: l("events"), qualified: l("events"), functions: l("todate", "count")},
		{name: "file", query: "SELECT * FROM file('/etc/passwd', 'LineAsString')", verbs: l("select"), functions: l("file")},
		{name: "table functions are lower-case", query: "SELECT * FROM remoteSecure('h:9440', db.t) JOIN url('http://x', CSV) USING (id)",
			verbs: l("select"), functions: l("remotesecure", "url")},
		{name: "many table functions", query: "SELECT * FROM s3('u') UNION ALL SELECT * FROM mysql('h', 'db', 't', 'u', 'p') UNION ALL SELECT * FROM postgresql('h', 'db', 't', 'u', 'p') " +
			"UNION ALL SELECT * FROM hdfs('u') UNION ALL SELECT * FROM jdbc('x', 't') UNION ALL SELECT * FROM odbc('x', 't') UNION ALL SELECT * FROM cluster('c', db.t) UNION ALL SELECT * FROM input('a Int8')",
			verbs: l("select"), functions: l("s3", "mysql", "postgresql", "hdfs", "jdbc", "odbc", "cluster", "input")},
		{name: "insert into function", query: "INSERT INTO FUNCTION s3('https://b.s3.amazonaws.com/x.csv', 'CSV') SELECT * FROM users",
			verbs: l("insert"), tables: l("users"), qualified: l("users"), functions: l("s3")},
		{name: "insert rows in a format are data", query: "INSERT INTO db.t (a, b) FORMAT TSV\n1\t'x\n2\tfile('y')\n",
			verbs: l("insert"), tables: l("t"), qualified: l("db.t"), texts: l("INSERT INTO db.t (a, b) FORMAT TSV")},
		{name: "insert values are expressions", query: "INSERT INTO t VALUES (1, now()), (2, 'x')",
			verbs: l("insert"), tables: l("t"), qualified: l("t"), functions: l("now")},
		{name: "insert select", query: "INSERT INTO t SELECT * FROM file('x') FORMAT TSV",
			verbs: l("insert"), tables: l("t"), qualified: l("t"), functions: l("file")},
		{name: "subqueries, joins and commas", query: "SELECT * FROM (SELECT a FROM x) AS s, y FINAL JOIN z ON s.a = z.a ARRAY JOIN arr WHERE a IN lookup",
			verbs: l("select"), tables: l("x", "y", "z", "lookup"), qualified: l("x", "y", "z", "lookup")},
		{name: "a CTE is no table after its definition", query: "WITH t AS (SELECT * FROM t) SELECT * FROM t, db.t",
			verbs: l("select"), tables: l("t"), qualified: l("t", "db.t")},
		{name: "an expression alias is no CTE", query: "WITH 1 AS secrets SELECT * FROM secrets",
			verbs: l("select"), tables: l("secrets"), qualified: l("secrets")},
		{name: "FROM inside a call is no table", query: "SELECT extract(DAY FROM d), trim(BOTH ' ' FROM s) FROM t",
			verbs: l("select"), tables: l("t"), qualified: l("t"), functions: l("extract", "trim")},
		{name: "identifier parameters", query: "SELECT * FROM {tbl:Identifier}", verbs: l("select"), unparseable: true},
		{name: "value parameters", query: "SELECT * FROM t WHERE a = {a:UInt8}", verbs: l("select"), tables: l("t"), qualified: l("t")},
		{name: "create table", query: "CREATE TABLE IF NOT EXISTS t (a Nullable(String), d DateTime CODEC(ZSTD(1))) ENGINE = MergeTree() ORDER BY d",
			verbs: l("create"), tables: l("t"), qualified: l("t"), functions: l("mergetree")},
		{name: "table engines that reach out are functions", query: "CREATE TABLE t (a String) ENGINE = URL('http://x', CSV)",
			verbs: l("create"), tables: l("t"), qualified: l("t"), functions: l("url")},
		{name: "create table as", query: "CREATE TABLE t2 AS db.t", verbs: l("create"), tables: l("t2", "t"), qualified: l("t2", "db.t")},
		{name: "create table as select", query: "CREATE TABLE t2 ENGINE = Memory AS SELECT a AS b FROM t",
			verbs: l("create"), tables: l("t2", "t"), qualified: l("t2", "t")},
		{name: "materialized view", query: "CREATE MATERIALIZED VIEW v TO dst AS SELECT a FROM src",
			verbs: l("create"), tables: l("v", "dst", "src"), qualified: l("v", "dst", "src")},
		{name: "drop, truncate, rename, exchange", query: "DROP TABLE IF EXISTS a, b SYNC",
			verbs: l("drop"), tables: l("a", "b"), qualified: l("a", "b")},
		{name: "rename", query: "RENAME TABLE a TO b, c TO d", verbs: l("rename"), tables: l("a", "b", "c", "d"), qualified: l("a", "b", "c", "d")},
		{name: "exchange", query: "EXCHANGE TABLES a AND b", verbs: l("exchange"), tables: l("a", "b"), qualified: l("a", "b")},
		{name: "truncate", query: "TRUNCATE TABLE IF EXISTS t", verbs: l("truncate"), tables: l("t"), qualified: l("t")},
		{name: "alter", query: "ALTER TABLE t DELETE WHERE id IN (SELECT id FROM gone)", verbs: l("alter"), tables: l("t", "gone"), qualified: l("t", "gone")},
		{name: "show", query: "SHOW TABLES FROM db LIKE 'x%'", verbs: l("show")},
		{name: "show create", query: "SHOW CREATE TABLE secrets", verbs: l("show"), tables: l("secrets"), qualified: l("secrets")},
		{name: "describe reads a table function's file", query: "DESCRIBE TABLE file('/etc/passwd')", verbs: l("describe"), functions: l("file")},
		{name: "desc", query: "DESC t", verbs: l("describe"), tables: l("t"), qualified: l("t")},
		{name: "exists", query: "EXISTS TABLE t", verbs: l("exists"), tables: l("t"), qualified: l("t")},
		{name: "explain", query: "EXPLAIN SYNTAX SELECT * FROM url('http://x')", verbs: l("explain"), functions: l("url")},
		{name: "system tables", query: "SELECT table FROM system.tables", verbs: l("select"), tables: l("tables"), qualified: l("system.tables")},
		{name: "use and set", query: "USE db; SET max_threads = 1", verbs: l("use", "set")},
		{name: "multi-statement", query: "SELECT 1; DROP TABLE t", verbs: l("select", "drop"), tables: l("t"), qualified: l("t")},
		{name: "escapes and comments", query: "SELECT 'a\\'b', \"c\\\"d\" -- ; DROP TABLE x\n FROM t /* ; */",
			verbs: l("select"), tables: l("t"), qualified: l("t")},
		{name: "hash is no comment here", query: "SELECT 1 # x", verbs: l("select"), unparseable: true},
		{name: "nested comments", query: "SELECT 1 /* /* */ */", verbs: l("select"), unparseable: true},
		{name: "system", query: "SYSTEM DROP DNS CACHE", verbs: l("system"), unparseable: true},
		{name: "grant", query: "GRANT SELECT ON db.* TO u", verbs: l("grant"), unparseable: true},
		{name: "a string where a table goes", query: "SELECT * FROM 'file.csv'", verbs: l("select"), unparseable: true},
		{name: "empty", query: ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkFacts(t, ClickHouse(c.query), c)
		})
	}
}

func TestClickHouseInsertData(t *testing.T) {
	for query, want := range map[string]int{
		"INSERT INTO t FORMAT TSV\n1\t2\n":                     len("INSERT INTO t FORMAT TSV"),
		"insert into db.t (a) settings x = 1 format CSV 1,2":   len("insert into db.t (a) settings x = 1 format CSV"),
		"INSERT INTO t FORMAT TSV":                             -1, // the name may go on
		"INSERT INTO t FORMAT":                                 -1,
		"INSERT INTO t VALUES (1)":                             -1,
		"INSERT INTO t FORMAT Values (1)":                      -1,
		"INSERT INTO t SELECT 1 FORMAT TSV\n1":                 -1,
		"SELECT 1 FORMAT TSV\n":                                -1,
		"INSERT INTO t FORMAT 'TSV\n":                          -1,
		"/* c */ INSERT INTO t FORMAT JSONEachRow\n{\"a\": 1}": len("/* c */ INSERT INTO t FORMAT JSONEachRow"),
	} {
		got, ok := ClickHouseInsertData(query)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("%q: %d, want %d", query, got, want)
		}
	}
}

// TestExampleFixtures checks that the facts derived from each example
// fixture's statement are the facts it states, so the fixtures replay the
// same with or without derivation.
func TestExampleFixtures(t *testing.T) {
	files, err := filepath.Glob("../examples/*/fixtures/*.json")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		saved := fixtures.Derive
		fixtures.Derive = nil
		fx, err := fixtures.Parse(data)
		fixtures.Derive = saved
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		q := fx.Action.SQL
		if q == nil || q.Dialect != DialectMySQL && q.Dialect != DialectClickHouse {
			continue
		}
		n++
		var got *action.SQL
		if q.Dialect == DialectMySQL {
			got = MySQL(q.Statement, MySQLMode{})
		} else {
			got = ClickHouse(q.Statement)
		}
		// Each fact the fixture states must be the derived one.
		same := q.Unparseable == got.Unparseable && (q.Statements == nil || reflect.DeepEqual(q.Statements, got.Statements))
		for _, pair := range [][2][]string{{q.Verbs, got.Verbs}, {q.Tables, got.Tables}, {q.QualifiedTables, got.QualifiedTables}, {q.Functions, got.Functions}} {
			same = same && (pair[0] == nil || slices.Equal(pair[0], pair[1]))
		}
		if !same {
			t.Errorf("%s:\n stated  %+v\n derived %+v", file, q, got)
		}
	}
	if n == 0 {
		t.Error("no MySQL or ClickHouse fixtures found")
	}
}

// FuzzClickHouse checks that no query takes the reader down, and that the
// rows of an insert are never read as SQL.
func FuzzClickHouse(f *testing.F) {
	for _, s := range []string{
		"SELECT count() FROM events", "SELECT * FROM file('/etc/passwd')", "INSERT INTO t FORMAT TSV\n1\t2",
		"WITH a AS (SELECT 1) SELECT * FROM a, b", "CREATE TABLE t (a Int8) ENGINE = Memory", "SELECT {a:UInt8}",
		"INSERT INTO t VALUES (1, 'x')", "SELECT 'a\\'b' -- c\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		q := ClickHouse(query)
		if q.Statement != query {
			t.Fatal("statement changed")
		}
		if end, ok := ClickHouseInsertData(query); ok {
			if end <= 0 || end >= len(query) {
				t.Fatalf("data at %d of %d", end, len(query))
			}
			head := ClickHouse(query[:end] + "\n")
			if !slices.Equal(head.Tables, q.Tables) || !slices.Equal(head.Functions, q.Functions) {
				t.Errorf("the rows changed the facts: %+v, %+v", head, q)
			}
		}
		for _, s := range q.Statements {
			if !strings.Contains(query, s.Text) {
				t.Errorf("statement %q is not in the query", s.Text)
			}
		}
	})
}
