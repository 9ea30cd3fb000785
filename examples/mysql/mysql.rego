package clawpatrol

# MySQL or MariaDB at the endpoint named "app-db": reads are allowed;
# functions and statements that reach files on the database server or on
# the agent's host are denied. Writes fall to policy.default.

mysql_read_verbs := {"select", "show", "describe", "explain", "use"}

# load_file reads any file the server's user can read (with the FILE
# privilege); sys_exec and sys_eval are the usual UDFs that run commands.
mysql_server_functions := {"load_file", "sys_exec", "sys_eval"}

deny contains {"rule": "mysql-server-files", "reason": sprintf("%s reaches the database server's filesystem", [f])} if {
	input.endpoint == "app-db"
	input.sql.dialect == "mysql"
	some f in input.sql.functions
	f in mysql_server_functions
}

# LOAD DATA reads a file into a table: from the server's disk, or with
# LOCAL from the agent's host (whichever file the server asks for).
deny contains {"rule": "mysql-load-data", "reason": "LOAD DATA reads a file into a table"} if {
	input.endpoint == "app-db"
	input.sql.dialect == "mysql"
	"load" in input.sql.verbs
}

deny contains {"rule": "mysql-local-file", "reason": "LOAD DATA LOCAL sends a file from the agent's host"} if {
	input.endpoint == "app-db"
	some s in input.sql.statements
	s.local_file
}

# Every statement must be a read: "select 1; drop table users" is no read.
allow contains "mysql-read" if {
	input.endpoint == "app-db"
	input.sql.dialect == "mysql"
	count(input.sql.verbs) > 0
	every v in input.sql.verbs {
		v in mysql_read_verbs
	}
}
