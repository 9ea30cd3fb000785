package clawpatrol

ch_query_input(text, verbs, functions) := {
	"protocol": "sql",
	"endpoint": "analytics",
	"sql": {
		"dialect": "clickhouse", "statement": text, "verbs": verbs, "functions": functions,
		"statements": [{"verb": verbs[0], "functions": functions, "text": text}],
		"unparseable": false, "truncated": false,
	},
}

test_ch_select_allowed if {
	"ch-read" in allow with input as ch_query_input("SELECT count() FROM events", ["select"], ["count"])
}

test_ch_file_denied if {
	some e in deny with input as ch_query_input("SELECT * FROM file('/etc/passwd', 'LineAsString')", ["select"], ["file"])
	e.reason == "the file() table function reaches outside the database"
}

test_ch_s3_insert_denied if {
	some e in deny with input as ch_query_input("INSERT INTO FUNCTION s3('https://b.s3.amazonaws.com/x.csv') SELECT * FROM events", ["insert"], ["s3"])
	e.rule == "ch-table-function"
}
