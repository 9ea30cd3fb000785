package sqlfacts

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// verb names a Postgres statement the way a policy writes it: the SQL
// command's first keyword, lower-case. It returns "" for a node that is no
// statement.
func verb(n *pg_query.Node) string {
	switch s := n.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		if s.SelectStmt.IntoClause != nil {
			return "create" // SELECT ... INTO creates a table, like CREATE TABLE AS
		}
		return "select"
	case *pg_query.Node_TransactionStmt:
		return transactionVerbs[s.TransactionStmt.Kind]
	case *pg_query.Node_VariableSetStmt:
		if k := s.VariableSetStmt.Kind; k == pg_query.VariableSetKind_VAR_RESET || k == pg_query.VariableSetKind_VAR_RESET_ALL {
			return "reset"
		}
		return "set"
	case *pg_query.Node_GrantStmt:
		return grantVerb(s.GrantStmt.IsGrant)
	case *pg_query.Node_GrantRoleStmt:
		return grantVerb(s.GrantRoleStmt.IsGrant)
	case *pg_query.Node_VacuumStmt:
		if s.VacuumStmt.IsVacuumcmd {
			return "vacuum"
		}
		return "analyze"
	case *pg_query.Node_FetchStmt:
		if s.FetchStmt.Ismove {
			return "move"
		}
		return "fetch"
	}
	m := inner(n)
	if m == nil {
		return ""
	}
	name := string(m.Descriptor().Name())
	if v, ok := namedVerbs[name]; ok {
		return v
	}
	if !strings.HasSuffix(name, "Stmt") {
		return ""
	}
	for _, p := range []struct{ prefix, verb string }{{"Create", "create"}, {"Define", "create"}, {"Alter", "alter"}, {"Drop", "drop"}} {
		if strings.HasPrefix(name, p.prefix) {
			return p.verb
		}
	}
	return strings.ToLower(strings.TrimSuffix(name, "Stmt"))
}

func grantVerb(grant bool) string {
	if grant {
		return "grant"
	}
	return "revoke"
}

var transactionVerbs = map[pg_query.TransactionStmtKind]string{
	pg_query.TransactionStmtKind_TRANS_STMT_BEGIN:             "begin",
	pg_query.TransactionStmtKind_TRANS_STMT_START:             "begin",
	pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:            "commit",
	pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:          "rollback",
	pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:         "savepoint",
	pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:           "release",
	pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:       "rollback",
	pg_query.TransactionStmtKind_TRANS_STMT_PREPARE:           "prepare",
	pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:   "commit",
	pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED: "rollback",
}

// namedVerbs are the statements whose node name does not say their verb.
var namedVerbs = map[string]string{
	"InsertStmt":              "insert",
	"UpdateStmt":              "update",
	"DeleteStmt":              "delete",
	"MergeStmt":               "merge",
	"CopyStmt":                "copy",
	"VariableShowStmt":        "show",
	"ExplainStmt":             "explain",
	"CreateTableAsStmt":       "create",
	"ViewStmt":                "create",
	"IndexStmt":               "create",
	"RuleStmt":                "create",
	"CompositeTypeStmt":       "create",
	"CreatedbStmt":            "create",
	"RenameStmt":              "alter",
	"AlterSystemStmt":         "alter",
	"DropdbStmt":              "drop",
	"RefreshMatViewStmt":      "refresh",
	"ClosePortalStmt":         "close",
	"DeclareCursorStmt":       "declare",
	"DeallocateStmt":          "deallocate",
	"ConstraintsSetStmt":      "set",
	"CheckPointStmt":          "checkpoint",
	"SecLabelStmt":            "security label",
	"ReassignOwnedStmt":       "reassign",
	"ImportForeignSchemaStmt": "import",
	"PLAssignStmt":            "assign",
	"CallStmt":                "call",
	"DoStmt":                  "do",
}
