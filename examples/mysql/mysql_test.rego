package clawpatrol

mysql_query(text, verbs, functions) := {
	"protocol": "sql",
	"endpoint": "app-db",
	"sql": {
		"dialect": "mysql", "database": "app", "user": "app", "statement": text,
		"statements": [{"verb": v, "text": text} | some v in verbs],
		"verbs": verbs, "functions": functions, "unparseable": false, "truncated": false,
	},
}

test_mysql_select_allowed if {
	"mysql-read" in allow with input as mysql_query("SELECT * FROM users", ["select"], [])
}

test_mysql_load_file_denied if {
	some e in deny with input as mysql_query("SELECT load_file('/etc/passwd')", ["select"], ["load_file"])
	e.rule == "mysql-server-files"
}

test_mysql_local_file_denied if {
	q := mysql_query("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t", ["load"], [])
	some e in deny with input as object.union(q, {"sql": {"statements": [{"verb": "load", "text": "x", "local_file": true}]}})
	e.rule == "mysql-local-file"
}

test_mysql_read_then_write_is_no_read if {
	count(allow) == 0 with input as mysql_query("SELECT 1; DELETE FROM users", ["select", "delete"], [])
}
