package clawpatrol

# PostgreSQL at the endpoint named "prod-db": reads are allowed; functions
# that reach the server's filesystem or other servers, and COPY to or from
# a program or a server-side file, are denied; DDL waits for an approver.
# Writes (insert, update, delete) fall to policy.default.

pg_read_verbs := {"select", "show", "explain"}

pg_copy_out_verbs := pg_read_verbs | {"copy"}

pg_ddl_verbs := {"create", "alter", "drop", "truncate", "grant", "revoke", "comment", "reindex", "vacuum", "cluster"}

# Functions that read or write files on the database server, or run as the
# server against other hosts.
pg_server_functions := {
	"pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file",
	"lo_get", "lo_put", "lo_import", "lo_export", "lo_from_bytea",
}

deny contains {"rule": "pg-server-files", "reason": sprintf("%s reaches the database server's filesystem", [f])} if {
	input.endpoint == "prod-db"
	input.sql.dialect == "postgres"
	some f in input.sql.functions
	f in pg_server_functions
}

deny contains {"rule": "pg-dblink", "reason": sprintf("%s connects from the database server to another one", [f])} if {
	input.endpoint == "prod-db"
	input.sql.dialect == "postgres"
	some f in input.sql.functions
	startswith(f, "dblink")
}

deny contains {"rule": "pg-copy-program", "reason": "COPY ... PROGRAM runs a shell command on the database server"} if {
	input.endpoint == "prod-db"
	input.sql.dialect == "postgres"
	some s in input.sql.statements
	s.verb == "copy"
	regex.match(`(?i)\bprogram\s+'`, s.text)
}

deny contains {"rule": "pg-copy-server-file", "reason": "COPY to or from a file reaches the database server's filesystem"} if {
	input.endpoint == "prod-db"
	input.sql.dialect == "postgres"
	some s in input.sql.statements
	s.verb == "copy"
	regex.match(`(?i)\b(to|from)\s+'`, s.text)
}

approve contains {"rule": "pg-ddl", "reason": sprintf("%s changes the schema", [upper(v)])} if {
	input.endpoint == "prod-db"
	input.sql.dialect == "postgres"
	some v in input.sql.verbs
	v in pg_ddl_verbs
}

# Every statement must be a read: "select 1; drop table users" is no read.
allow contains "pg-read" if {
	input.endpoint == "prod-db"
	input.sql.dialect == "postgres"
	count(input.sql.verbs) > 0
	every v in input.sql.verbs {
		v in pg_read_verbs
	}
}

# COPY ... TO STDOUT is how psql's \copy and pg_dump read a table.
allow contains "pg-copy-out" if {
	input.endpoint == "prod-db"
	input.sql.dialect == "postgres"
	some s in input.sql.statements
	s.verb == "copy"
	regex.match(`(?i)\bto\s+stdout\b`, s.text)
	every v in input.sql.verbs {
		v in pg_copy_out_verbs
	}
}
