package sqlfacts

import (
	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/fixtures"
)

// Fixtures and `clawpatrol eval` inputs may give only sql.statement; the
// facts the wire would have computed are derived from it, so a fixture
// decides exactly as the live action would.
func init() {
	fixtures.Derive = append(fixtures.Derive, DerivePostgres)
}

// DerivePostgres fills the facts of a Postgres sql block that states only its text.
// Facts the action already states are kept: each list is filled only when
// absent, and unparseable is set only when no fact at all was stated.
func DerivePostgres(a *action.Action) {
	q := a.SQL
	if q == nil || q.Dialect != DialectPostgres || q.Statement == "" {
		return
	}
	fill(q, Postgres(q.Statement))
}

// fill sets the facts of q that are absent from those derived in f, for
// every dialect: each list only when absent, unparseable only when no fact
// at all was stated.
func fill(q, f *action.SQL) {
	stated := q.Statements != nil || q.Verbs != nil || q.Tables != nil || q.QualifiedTables != nil || q.Functions != nil
	if f.Unparseable && !stated {
		q.Unparseable = true
	}
	if q.Statements == nil {
		q.Statements = f.Statements
	}
	if q.Verbs == nil {
		q.Verbs = f.Verbs
	}
	if q.Tables == nil {
		q.Tables = f.Tables
	}
	if q.QualifiedTables == nil {
		q.QualifiedTables = f.QualifiedTables
	}
	if q.Functions == nil {
		q.Functions = f.Functions
	}
}
