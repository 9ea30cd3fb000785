package sqlfacts

import (
	"strings"
)

// The MySQL and ClickHouse facts start from a lexer that reads quoting and
// comments the way each server does. It decides where statements end and
// what is code, so it is strict: whatever two servers (or two modes of one)
// could read differently is an error, and an error makes the query
// unparseable instead of letting a string or a comment hide a statement.

// tokenKind says what a token is.
type tokenKind uint8

const (
	tokWord     tokenKind = iota // an unquoted identifier or keyword
	tokQuoted                    // a quoted identifier; text is its value
	tokString                    // a string literal; text is as written
	tokNumber                    // a number, hex or bit literal
	tokVariable                  // @name, @@name, @'name' (MySQL)
	tokParam                     // ? (a prepared statement's parameter)
	tokOp                        // punctuation and operators, ";" included
)

// token is one token of a query. start and end are byte offsets into it.
type token struct {
	kind       tokenKind
	text       string
	start, end int
}

// is reports whether t is the word w (case-insensitive) or the operator w.
func (t token) is(w string) bool {
	if t.kind == tokWord {
		return strings.EqualFold(t.text, w)
	}
	return t.kind == tokOp && t.text == w
}

// lower is a word's text in lower case; "" for anything but a word.
func (t token) lower() string {
	if t.kind != tokWord {
		return ""
	}
	return strings.ToLower(t.text)
}

// name reports whether t can name a table or a function.
func (t token) name() bool { return t.kind == tokWord || t.kind == tokQuoted }

// lexRules are the parts of a dialect's lexer that change what is code.
type lexRules struct {
	hashComments       bool // "#" starts a comment to the end of the line (MySQL)
	dashNeedsSpace     bool // "--" starts a comment only before whitespace or a control character (MySQL)
	executableComments bool // "/*!" and "/*M!" comments are code (MySQL, MariaDB)
	doubleQuoteString  bool // "..." is a string (MySQL by default), else an identifier (ClickHouse)
	backslashEscapes   bool // a backslash escapes the next byte in strings
	quotedEscapes      bool // ... and in quoted identifiers (ClickHouse)
	dollarIdent        bool // "$" is part of identifiers (MySQL)
	variables          bool // @name and @@name are variables (MySQL)
	// asciiTrails: the connection's character set may be one where a
	// byte 0x80 or above and the ASCII byte after it are one character
	// (GBK, Big5, Shift-JIS): there a backslash or a backtick after such
	// a byte is no backslash or backtick (MySQL).
	asciiTrails bool
}

// lexError is why a query could not be split into tokens.
type lexError struct {
	pos    int
	reason string
}

func (e *lexError) Error() string { return e.reason }

// lexer splits one query into tokens.
type lexer struct {
	src    string
	rules  lexRules
	pos    int
	toks   []token
	inExec bool // inside an executable comment
	stop   func([]token) bool
}

// lex returns the tokens of src, comments left out. On an error it returns
// the tokens read before it.
func lex(src string, rules lexRules) ([]token, *lexError) {
	return lexUntil(src, rules, nil)
}

// lexUntil is lex that stops after the token that makes stop true: what
// follows is data, not SQL (ClickHouse's INSERT ... FORMAT).
func lexUntil(src string, rules lexRules, stop func([]token) bool) ([]token, *lexError) {
	l := &lexer{src: src, rules: rules, stop: stop}
	err := l.run()
	return l.toks, err
}

func (l *lexer) fail(reason string) *lexError { return &lexError{pos: l.pos, reason: reason} }

func (l *lexer) peek(n int) byte {
	if l.pos+n < len(l.src) {
		return l.src[l.pos+n]
	}
	return 0
}

func (l *lexer) emit(kind tokenKind, start int, text string) {
	l.toks = append(l.toks, token{kind: kind, text: text, start: start, end: l.pos})
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (l *lexer) wordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || c == '_' || c >= 0x80 || c == '$' && l.rules.dollarIdent
}

// multiOps are the operators of more than one byte, longest first.
var multiOps = []string{"<=>", "->>", "<=", ">=", "<>", "!=", "==", "<<", ">>", "&&", "||", ":=", "->", "::"}

func (l *lexer) run() *lexError {
	if l.rules.asciiTrails {
		for i := 1; i < len(l.src); i++ {
			if (l.src[i] == '\\' || l.src[i] == '`') && l.src[i-1] >= 0x80 {
				l.pos = i
				return l.fail("a backslash or backtick after a non-ASCII byte: GBK, Big5 or Shift-JIS would read them as one character")
			}
		}
	}
	for l.pos < len(l.src) {
		if l.stop != nil && len(l.toks) > 0 && l.stop(l.toks) {
			return nil
		}
		c := l.src[l.pos]
		start := l.pos
		switch {
		case isSpace(c):
			l.pos++
		case c == '#' && l.rules.hashComments,
			c == '-' && l.peek(1) == '-' && (!l.rules.dashNeedsSpace || l.pos+2 >= len(l.src) || l.src[l.pos+2] <= ' '):
			if l.inExec {
				// An older server reads the executable comment as a comment
				// that ends at the first */, whatever this one hides.
				return l.fail("comment inside an executable comment")
			}
			l.lineComment()
		case c == '/' && l.peek(1) == '*':
			if err := l.blockComment(); err != nil {
				return err
			}
		case c == '*' && l.peek(1) == '/' && l.inExec:
			l.inExec = false
			l.pos += 2
		case c == '\'' || c == '"' && l.rules.doubleQuoteString:
			if err := l.quoted(c, l.rules.backslashEscapes, tokString); err != nil {
				return err
			}
		case c == '`' || c == '"':
			if err := l.quoted(c, l.rules.quotedEscapes, tokQuoted); err != nil {
				return err
			}
		case c == ';' && l.inExec:
			return l.fail("; inside an executable comment")
		case c == '@' && l.rules.variables:
			if err := l.variable(); err != nil {
				return err
			}
		case c == '?':
			l.pos++
			l.emit(tokParam, start, "?")
		case isDigit(c) || c == '.' && isDigit(l.peek(1)) && !l.afterName():
			l.number()
		case l.wordByte(c):
			l.word()
		case strings.IndexByte("=<>!~^&|+-*/%(),.;:[]{}", c) >= 0:
			op := string(c)
			for _, m := range multiOps {
				if strings.HasPrefix(l.src[l.pos:], m) {
					op = m
					break
				}
			}
			l.pos += len(op)
			l.emit(tokOp, start, op)
		default:
			return l.fail("unexpected character")
		}
	}
	if l.inExec {
		return l.fail("unterminated executable comment")
	}
	return nil
}

// afterName reports whether the last token can be followed by ".name"
// (so ".5" after it is a qualified name, not a number).
func (l *lexer) afterName() bool {
	if len(l.toks) == 0 {
		return false
	}
	t := l.toks[len(l.toks)-1]
	return t.end == l.pos && (t.kind == tokWord || t.kind == tokQuoted)
}

func (l *lexer) lineComment() {
	if i := strings.IndexByte(l.src[l.pos:], '\n'); i >= 0 {
		l.pos += i + 1
		return
	}
	l.pos = len(l.src)
}

// blockComment skips a /* */ comment, or enters an executable one.
func (l *lexer) blockComment() *lexError {
	if l.inExec {
		return l.fail("comment inside an executable comment")
	}
	rest := l.src[l.pos+2:]
	if l.rules.executableComments && (strings.HasPrefix(rest, "!") || strings.HasPrefix(rest, "M!")) {
		// The server reads what follows as code when its version is at
		// least the one given; reading it as code here always lists a
		// superset of what the server runs. The version is 5 or 6 digits.
		l.pos += 3
		if rest[0] == 'M' {
			l.pos++
		}
		n := 0
		for n < len(l.src)-l.pos && isDigit(l.src[l.pos+n]) {
			n++
		}
		if n != 0 && n != 5 && n != 6 {
			return l.fail("executable comment with a version of neither 5 nor 6 digits")
		}
		l.pos += n
		l.inExec = true
		return nil
	}
	end := strings.Index(rest, "*/")
	if end < 0 {
		return l.fail("unterminated comment")
	}
	body := rest[:end]
	if strings.Contains(body, "/*") && !l.rules.executableComments {
		// ClickHouse nests comments in some versions, not in others.
		return l.fail("nested comment")
	}
	l.pos += 2 + end + 2
	return nil
}

// quoted reads a string literal or a quoted identifier: the delimiter
// doubled stands for itself, and with escapes a backslash takes the next
// byte literally.
func (l *lexer) quoted(delim byte, escapes bool, kind tokenKind) *lexError {
	start := l.pos
	l.pos++
	var val strings.Builder
	for {
		if l.pos >= len(l.src) {
			return l.fail("unterminated quoted text")
		}
		c := l.src[l.pos]
		switch {
		case c == '\\' && escapes:
			if l.pos+1 >= len(l.src) {
				return l.fail("unterminated quoted text")
			}
			if l.src[l.pos+1] == '"' && delim == '"' && l.rules.doubleQuoteString {
				// MySQL with ANSI_QUOTES reads "..." as an identifier,
				// where a backslash escapes nothing: the two readings
				// end this token in different places.
				return l.fail(`backslash-escaped " inside "...": ANSI_QUOTES would read it differently`)
			}
			val.WriteByte(l.src[l.pos+1])
			l.pos += 2
		case c == delim:
			if l.peek(1) == delim {
				val.WriteByte(delim)
				l.pos += 2
				continue
			}
			l.pos++
			text := val.String()
			if kind == tokString {
				text = l.src[start:l.pos]
			}
			if l.inExec && strings.Contains(l.src[start:l.pos], "*/") {
				// Read as a comment (an older server), the comment would end inside it.
				return l.fail("*/ inside quoted text in an executable comment")
			}
			l.emit(kind, start, text)
			return nil
		default:
			val.WriteByte(c)
			l.pos++
		}
	}
}

func (l *lexer) variable() *lexError {
	start := l.pos
	l.pos++
	if l.peek(0) == '@' {
		l.pos++
	}
	switch c := l.peek(0); {
	case c == '\'' || c == '"' || c == '`':
		if err := l.quoted(c, c != '`' && l.rules.backslashEscapes, tokQuoted); err != nil {
			return err
		}
		l.toks = l.toks[:len(l.toks)-1]
	case l.wordByte(c):
		for l.pos < len(l.src) && (l.wordByte(l.src[l.pos]) || l.src[l.pos] == '.') {
			l.pos++
		}
	default:
		return l.fail("@ without a name")
	}
	l.emit(tokVariable, start, l.src[start:l.pos])
	return nil
}

func (l *lexer) number() {
	start := l.pos
	if l.src[l.pos] == '0' && (l.peek(1) == 'x' || l.peek(1) == 'X' || l.peek(1) == 'b' || l.peek(1) == 'B') {
		l.pos += 2
	}
	for l.pos < len(l.src) && (l.wordByte(l.src[l.pos]) || l.src[l.pos] == '.' && isDigit(l.peek(1))) {
		c := l.src[l.pos]
		l.pos++
		if (c == 'e' || c == 'E') && (l.peek(0) == '+' || l.peek(0) == '-') && isDigit(l.peek(1)) {
			l.pos++
		}
	}
	// A trailing "." belongs to the number ("1." is 1.0).
	if l.peek(0) == '.' && !l.wordByte(l.peek(1)) {
		l.pos++
	}
	text := l.src[start:l.pos]
	kind := tokNumber
	for i := 0; i < len(text); i++ {
		if c := text[i]; !isDigit(c) && c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-' && c != 'x' && c != 'X' && c != 'b' && c != 'B' && !strings.ContainsRune("abcdefABCDEF_", rune(c)) {
			kind = tokWord // MySQL names may start with a digit ("1st_table")
			break
		}
	}
	l.emit(kind, start, text)
}

func (l *lexer) word() {
	start := l.pos
	for l.pos < len(l.src) && l.wordByte(l.src[l.pos]) {
		l.pos++
	}
	text := l.src[start:l.pos]
	if q := l.peek(0); q == '\'' && len(text) == 1 && strings.ContainsRune("xXbB", rune(text[0])) {
		// X'0A' and B'01' are literals, not a name and a string.
		if end := strings.IndexByte(l.src[l.pos+1:], '\''); end >= 0 {
			l.pos += end + 2
			l.emit(tokNumber, start, l.src[start:l.pos])
			return
		}
	}
	l.emit(tokWord, start, text)
}

// piece is one statement's tokens, and the text from the end of the
// separator before it to the start of the one after it.
type piece struct {
	toks       []token
	start, end int
}

// split cuts tokens into statements at ";"; statements with no tokens
// (only comments) are dropped.
func split(src string, toks []token) []piece {
	var out []piece
	begin, from := 0, 0
	for i, t := range toks {
		if t.is(";") {
			if i > begin {
				out = append(out, piece{toks[begin:i], from, t.start})
			}
			begin, from = i+1, t.end
		}
	}
	if begin < len(toks) {
		out = append(out, piece{toks[begin:], from, len(src)})
	}
	return out
}

// text is the statement's source, comments around its tokens included.
func (p piece) text(src string) string { return strings.TrimSpace(src[p.start:p.end]) }

// statementSource is the source of a statement's tokens, from the first to
// the last.
func statementSource(src string, toks []token) string {
	return strings.TrimSpace(src[toks[0].start:toks[len(toks)-1].end])
}

// callNames returns the names followed by "(" that are not in skip, nor
// right after a word in after (a table name before its column list):
// every function call, and some words the grammar puts before a
// parenthesis. It is how facts are found where no grammar is.
func callNames(toks []token, skip, after map[string]bool) []string {
	var out []string
	for i := 0; i+1 < len(toks); i++ {
		t := toks[i]
		if !t.name() || !toks[i+1].is("(") {
			continue
		}
		if t.kind == tokWord && skip[t.lower()] {
			continue
		}
		if i > 0 && after[toks[i-1].lower()] {
			continue
		}
		if i > 0 && toks[i-1].is(".") && i > 1 && after[toks[i-2].lower()] {
			continue
		}
		out = append(out, strings.ToLower(t.text))
	}
	return out
}

// ddlCalls is callNames for definitions, where "name(10)" is a type's size
// or an index's prefix length, not a call.
func ddlCalls(toks []token, skip, after map[string]bool) bool {
	for i := 0; i+1 < len(toks); i++ {
		if i+3 < len(toks) && toks[i+1].is("(") && toks[i+2].kind == tokNumber && toks[i+3].is(")") {
			i += 3
			continue
		}
		if len(callNames(toks[i:i+2], skip, nil)) > 0 && (i == 0 || !after[toks[i-1].lower()]) {
			return true
		}
	}
	return false
}

// hasCall reports whether callNames would find anything.
func hasCall(toks []token, skip, after map[string]bool) bool {
	return len(callNames(toks, skip, after)) > 0
}

// words makes a set of lower-case words.
func words(s string) map[string]bool {
	m := map[string]bool{}
	for w := range strings.FieldsSeq(s) {
		m[w] = true
	}
	return m
}

// cursor walks the tokens of one statement for the small grammars here.
type cursor struct {
	toks []token
	i    int
}

func (c *cursor) done() bool { return c.i >= len(c.toks) }

// peek returns the next token, or a zero token at the end.
func (c *cursor) peek() token {
	if c.done() {
		return token{kind: tokOp}
	}
	return c.toks[c.i]
}

func (c *cursor) next() token {
	t := c.peek()
	if !c.done() {
		c.i++
	}
	return t
}

// accept takes the next token when it is the word or operator w.
func (c *cursor) accept(w string) bool {
	if c.peek().is(w) {
		c.i++
		return true
	}
	return false
}

// name reads a name, qualified or not: "t", "db.t", "`db`.`t`".
func (c *cursor) name() (qualifier, name string, ok bool) {
	t := c.peek()
	if !t.name() {
		return "", "", false
	}
	c.i++
	if c.peek().is(".") && c.i+1 < len(c.toks) && c.toks[c.i+1].name() {
		c.i += 2
		return t.text, c.toks[c.i-1].text, true
	}
	return "", t.text, true
}

// has reports whether the rest holds the word or operator w.
func (c *cursor) has(w string) bool { return has(c.toks[min(c.i, len(c.toks)):], w) }

// find returns the index of the next word or operator w, or -1.
func (c *cursor) find(w string) int {
	for i := c.i; i < len(c.toks); i++ {
		if c.toks[i].is(w) {
			return i
		}
	}
	return -1
}

func (c *cursor) rest() []token {
	r := c.toks[min(c.i, len(c.toks)):]
	c.i = len(c.toks)
	return r
}

// skipParens skips a parenthesized group, nested ones included.
func (c *cursor) skipParens() bool {
	depth := 0
	for !c.done() {
		t := c.next()
		switch {
		case t.is("("):
			depth++
		case t.is(")"):
			depth--
			if depth == 0 {
				return true
			}
		}
		if depth == 0 {
			return false
		}
	}
	return false
}
