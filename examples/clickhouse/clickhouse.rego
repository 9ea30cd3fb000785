package clawpatrol

# ClickHouse at the endpoint named "analytics": reads are allowed, but not
# through table functions that reach files on the server, URLs or object
# storage (file, url, s3 and their cluster variants, hdfs, remote): from
# there a query can read local files or send data anywhere.

ch_read_verbs := {"select", "show", "describe", "explain", "exists"}

ch_outside_functions := {
	"file", "url", "urlcluster", "s3", "s3cluster", "gcs", "azureblobstorage",
	"hdfs", "hdfscluster", "remote", "remotesecure",
}

deny contains {"rule": "ch-table-function", "reason": sprintf("the %s() table function reaches outside the database", [f])} if {
	input.endpoint == "analytics"
	input.sql.dialect == "clickhouse"
	some f in input.sql.functions
	f in ch_outside_functions
}

# INSERT INTO FUNCTION s3(...) writes out through the same functions.
deny contains {"rule": "ch-table-function", "reason": sprintf("the %s() table function reaches outside the database", [f])} if {
	input.endpoint == "analytics"
	input.sql.dialect == "clickhouse"
	some s in input.sql.statements
	some f in object.get(s, "functions", [])
	f in ch_outside_functions
}

allow contains "ch-read" if {
	input.endpoint == "analytics"
	input.sql.dialect == "clickhouse"
	count(input.sql.verbs) > 0
	every v in input.sql.verbs {
		v in ch_read_verbs
	}
}
