package sqlfacts

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// PostgresEscapes reports whether query holds a backslash inside a plain
// '...' string. Such text means something else to a server whose
// standard_conforming_strings is off (the backslash escapes the quote, and
// the statement boundaries move), while the grammar here assumes it is on,
// as it is by default. Text that does not even scan counts as holding one.
func PostgresEscapes(query string) bool {
	if !strings.Contains(query, `\`) {
		return false
	}
	res, err := pg_query.Scan(query)
	if err != nil {
		return true
	}
	for _, tok := range res.Tokens {
		if tok.Token != pg_query.Token_SCONST || tok.Start < 0 || int(tok.End) > len(query) || tok.Start >= tok.End {
			continue
		}
		// E'...' and $$...$$ mean the same either way; only a plain quote
		// (or N'...', which the scanner hands over from its quote) differs.
		if text := query[tok.Start:tok.End]; text[0] == '\'' && strings.Contains(text, `\`) {
			return true
		}
	}
	return false
}
