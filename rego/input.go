package rego

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/clawpatrol/clawpatrol/action"
)

// Input returns the policy input for a: the same value encoding/json would
// produce from a's JSON tags (omitempty and omitzero included), built as an
// AST value directly because a JSON round trip per action costs more than the
// decision itself.
func Input(a *action.Action) ast.Value {
	var b builder
	return b.action(a, 0, nil)
}

// hide says which facts to leave out of the input: the second evaluation
// of an action with truncated or unparseable parts runs without them.
type hide uint8

const (
	hideHTTPBody hide = 1 << iota // http.body, http.json
	hideSQLFacts                  // sql.statements, verbs, tables, qualified_tables, functions
	hideSQLText                   // sql.statement
)

// builder makes the terms of one input. Terms are cut from a slab so that
// the common fields cost one allocation between them, not one each.
type builder struct {
	vocab map[string]*ast.Term // shared terms for common strings; nil: vocabulary
	slab  []ast.Term
	ptrs  []*ast.Term // elements of arrays, cut the same way
}

// elems returns room for n array elements. The window's capacity ends at
// its length, so an append to the array can never run into the next one.
func (b *builder) elems(n int) []*ast.Term {
	if n > 16 {
		return make([]*ast.Term, n)
	}
	if len(b.ptrs)+n > cap(b.ptrs) {
		b.ptrs = make([]*ast.Term, 0, 32)
	}
	start := len(b.ptrs)
	b.ptrs = b.ptrs[:start+n]
	return b.ptrs[start : start+n : start+n]
}

func (b *builder) term(v ast.Value) *ast.Term {
	if len(b.slab) == cap(b.slab) {
		b.slab = make([]ast.Term, 0, 32)
	}
	b.slab = append(b.slab, ast.Term{Value: v})
	return &b.slab[len(b.slab)-1]
}

// str returns the term for s, shared when s is a word the input often holds.
func (b *builder) str(s string) *ast.Term {
	vocab := b.vocab
	if vocab == nil {
		vocab = vocabulary
	}
	if len(s) <= maxWord {
		if t, ok := vocab[s]; ok {
			return t
		}
	}
	return b.term(ast.String(validUTF8(s)))
}

func (b *builder) num(n int64) *ast.Term {
	if n >= -1 && n <= 512 {
		return ast.InternedTerm(int(n))
	}
	return b.term(ast.Number(strconv.FormatInt(n, 10)))
}

func (b *builder) strs(ss []string) *ast.Term {
	if ss == nil {
		return ast.InternedNullTerm
	}
	if len(ss) == 0 {
		return ast.InternedEmptyArray
	}
	ts := b.elems(len(ss))
	for i, s := range ss {
		ts[i] = b.str(s)
	}
	return b.term(ast.NewArray(ts...))
}

// values is a map[string][]string such as a query or header map.
func (b *builder) values(m map[string][]string) *ast.Term {
	if len(m) > len(fields{}.items) {
		items := make([][2]*ast.Term, 0, len(m))
		for k, v := range m {
			items = append(items, [2]*ast.Term{b.str(k), b.strs(v)})
		}
		return b.term(ast.NewObject(items...))
	}
	var f fields
	for k, v := range m {
		f.add(b.str(k), b.strs(v))
	}
	return f.object(b)
}

// any converts a decoded JSON value (http.json, k8s.object).
func (b *builder) any(x any) *ast.Term {
	v, err := ast.InterfaceToValue(x)
	if err != nil {
		// encoding/json could not have produced it either; null keeps the
		// key visible to rules that test for presence.
		return ast.InternedNullTerm
	}
	return b.term(v)
}

func boolTerm(v bool) *ast.Term {
	if v {
		return ast.InternedBooleanTrue
	}
	return ast.InternedBooleanFalse
}

// fields collects one object's items on the stack.
type fields struct {
	n     int
	items [16][2]*ast.Term
}

func (f *fields) add(k, v *ast.Term) {
	f.items[f.n] = [2]*ast.Term{k, v}
	f.n++
}

func (f *fields) object(b *builder) *ast.Term {
	return b.term(ast.NewObject(f.items[:f.n]...))
}

func (b *builder) action(a *action.Action, h hide, n *need) ast.Value {
	var f fields
	if a.ID != "" && n.has("id") {
		f.add(kID, b.str(a.ID))
	}
	if !a.Time.IsZero() && n.has("time") {
		f.add(kTime, b.term(ast.String(a.Time.Format(time.RFC3339Nano))))
	}
	if a.Session != "" && n.has("session") {
		f.add(kSession, b.str(a.Session))
	}
	if gn, ok := n.wants("agent"); ok && a.Agent != nil {
		var g fields
		if gn.has("command") {
			g.add(kCommand, b.strs(a.Agent.Command))
		}
		if a.Agent.PID != 0 && gn.has("pid") {
			g.add(kPID, b.num(int64(a.Agent.PID)))
		}
		if a.Agent.Exe != "" && gn.has("exe") {
			g.add(kExe, b.str(a.Agent.Exe))
		}
		f.add(kAgent, g.object(b))
	}
	if n.has("protocol") {
		f.add(kProtocol, b.str(a.Protocol))
	}
	if a.Endpoint != "" && n.has("endpoint") {
		f.add(kEndpoint, b.str(a.Endpoint))
	}
	if a.Credential != "" && n.has("credential") {
		f.add(kCredential, b.str(a.Credential))
	}
	if gn, ok := n.wants("destination"); ok && a.Destination != (action.Destination{}) {
		d := a.Destination
		var g fields
		if d.Host != "" && gn.has("host") {
			g.add(kHost, b.str(d.Host))
		}
		if d.Port != 0 && gn.has("port") {
			g.add(kPort, b.num(int64(d.Port)))
		}
		if d.IP != "" && gn.has("ip") {
			g.add(kIP, b.str(d.IP))
		}
		if gn.has("tls") {
			g.add(kTLS, boolTerm(d.TLS))
		}
		f.add(kDestination, g.object(b))
	}
	if gn, ok := n.wants("http"); ok && a.HTTP != nil {
		f.add(kHTTP, b.http(a.HTTP, h, gn))
	}
	if gn, ok := n.wants("sql"); ok && a.SQL != nil {
		f.add(kSQL, b.sql(a.SQL, h, gn))
	}
	if gn, ok := n.wants("k8s"); ok && a.K8s != nil {
		f.add(kK8s, b.k8s(a.K8s, gn))
	}
	if a.TCP != nil && n.has("tcp") {
		f.add(kTCP, ast.InternedEmptyObject)
	}
	if gn, ok := n.wants("tls"); ok && a.TLS != nil {
		var g fields
		if gn.has("sni") {
			g.add(kSNI, b.str(a.TLS.SNI))
		}
		if len(a.TLS.ALPN) > 0 && gn.has("alpn") {
			g.add(kALPN, b.strs(a.TLS.ALPN))
		}
		f.add(kTLSBlock, g.object(b))
	}
	if gn, ok := n.wants("udp"); ok && a.UDP != nil {
		var g fields
		if gn.has("size") {
			g.add(kSize, b.num(int64(a.UDP.Size)))
		}
		f.add(kUDP, g.object(b))
	}
	return ast.NewObject(f.items[:f.n]...)
}

func (b *builder) http(r *action.HTTP, h hide, n *need) *ast.Term {
	var f fields
	if n.has("method") {
		f.add(kMethod, b.str(r.Method))
	}
	if r.Scheme != "" && n.has("scheme") {
		f.add(kScheme, b.str(r.Scheme))
	}
	if r.Host != "" && n.has("host") {
		f.add(kHost, b.str(r.Host))
	}
	if n.has("path") {
		f.add(kPath, b.str(r.Path))
	}
	if len(r.Query) > 0 && n.has("query") {
		f.add(kQuery, b.values(r.Query))
	}
	if len(r.Headers) > 0 && n.has("headers") {
		f.add(kHeaders, b.values(r.Headers))
	}
	if h&hideHTTPBody == 0 {
		if r.Body != "" && n.has("body") {
			f.add(kBody, b.str(r.Body))
		}
		if r.JSON != nil && n.has("json") {
			f.add(kJSON, b.any(r.JSON))
		}
	}
	if n.has("size") {
		f.add(kSize, b.num(r.Size))
	}
	if n.has("truncated") {
		f.add(kTruncated, boolTerm(r.Truncated))
	}
	if r.Upgrade != "" && n.has("upgrade") {
		f.add(kUpgrade, b.str(r.Upgrade))
	}
	return f.object(b)
}

func (b *builder) sql(q *action.SQL, h hide, n *need) *ast.Term {
	var f fields
	if n.has("dialect") {
		f.add(kDialect, b.str(q.Dialect))
	}
	if q.Database != "" && n.has("database") {
		f.add(kDatabase, b.str(q.Database))
	}
	if q.User != "" && n.has("user") {
		f.add(kUser, b.str(q.User))
	}
	if h&hideSQLText == 0 && n.has("statement") {
		f.add(kStatement, b.str(q.Statement))
	}
	if h&hideSQLFacts == 0 {
		if len(q.Statements) > 0 && n.has("statements") {
			ts := make([]*ast.Term, len(q.Statements))
			for i, s := range q.Statements {
				var g fields
				g.add(kVerb, b.str(s.Verb))
				if len(s.Tables) > 0 {
					g.add(kTables, b.strs(s.Tables))
				}
				if len(s.Functions) > 0 {
					g.add(kFunctions, b.strs(s.Functions))
				}
				g.add(kText, b.str(s.Text))
				if s.Program {
					g.add(kProgram, boolTerm(true))
				}
				if s.LocalFile {
					g.add(kLocalFile, boolTerm(true))
				}
				ts[i] = g.object(b)
			}
			f.add(kStatements, b.term(ast.NewArray(ts...)))
		}
		if len(q.Verbs) > 0 && n.has("verbs") {
			f.add(kVerbs, b.strs(q.Verbs))
		}
		if len(q.Tables) > 0 && n.has("tables") {
			f.add(kTables, b.strs(q.Tables))
		}
		if len(q.QualifiedTables) > 0 && n.has("qualified_tables") {
			f.add(kQualifiedTables, b.strs(q.QualifiedTables))
		}
		if len(q.Functions) > 0 && n.has("functions") {
			f.add(kFunctions, b.strs(q.Functions))
		}
	}
	if n.has("unparseable") {
		f.add(kUnparseable, boolTerm(q.Unparseable))
	}
	if n.has("truncated") {
		f.add(kTruncated, boolTerm(q.Truncated))
	}
	return f.object(b)
}

func (b *builder) k8s(k *action.K8s, n *need) *ast.Term {
	var f fields
	if n.has("verb") {
		f.add(kVerb, b.str(k.Verb))
	}
	if n.has("group") {
		f.add(kGroup, b.str(k.Group))
	}
	if k.Version != "" && n.has("version") {
		f.add(kVersion, b.str(k.Version))
	}
	if n.has("resource") {
		f.add(kResource, b.str(k.Resource))
	}
	if k.Subresource != "" && n.has("subresource") {
		f.add(kSubresource, b.str(k.Subresource))
	}
	if k.Namespace != "" && n.has("namespace") {
		f.add(kNamespace, b.str(k.Namespace))
	}
	if k.Name != "" && n.has("name") {
		f.add(kName, b.str(k.Name))
	}
	if len(k.Command) > 0 && n.has("command") {
		f.add(kCommand, b.strs(k.Command))
	}
	if k.Container != "" && n.has("container") {
		f.add(kContainer, b.str(k.Container))
	}
	if len(k.Params) > 0 && n.has("params") {
		f.add(kParams, b.values(k.Params))
	}
	if k.Object != nil && n.has("object") {
		f.add(kObject, b.any(k.Object))
	}
	if k.Discovery && n.has("discovery") {
		f.add(kDiscovery, ast.InternedBooleanTrue)
	}
	return f.object(b)
}

// validUTF8 replaces each invalid byte with U+FFFD, as encoding/json does,
// so a body with binary bytes looks the same live and in a fixture.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			out = append(out, "\uFFFD"...)
		} else {
			out = append(out, s[i:i+n]...)
		}
		i += n
	}
	return string(out)
}

// Keys of the input, and values it often holds, made once and shared by
// every input (terms are never modified once built).
var (
	kID              = ast.StringTerm("id")
	kTime            = ast.StringTerm("time")
	kSession         = ast.StringTerm("session")
	kAgent           = ast.StringTerm("agent")
	kCommand         = ast.StringTerm("command")
	kPID             = ast.StringTerm("pid")
	kExe             = ast.StringTerm("exe")
	kProtocol        = ast.StringTerm("protocol")
	kEndpoint        = ast.StringTerm("endpoint")
	kCredential      = ast.StringTerm("credential")
	kDestination     = ast.StringTerm("destination")
	kHost            = ast.StringTerm("host")
	kPort            = ast.StringTerm("port")
	kIP              = ast.StringTerm("ip")
	kTLS             = ast.StringTerm("tls")
	kHTTP            = ast.StringTerm("http")
	kSQL             = ast.StringTerm("sql")
	kK8s             = ast.StringTerm("k8s")
	kTCP             = ast.StringTerm("tcp")
	kTLSBlock        = kTLS
	kUDP             = ast.StringTerm("udp")
	kMethod          = ast.StringTerm("method")
	kScheme          = ast.StringTerm("scheme")
	kPath            = ast.StringTerm("path")
	kQuery           = ast.StringTerm("query")
	kHeaders         = ast.StringTerm("headers")
	kBody            = ast.StringTerm("body")
	kJSON            = ast.StringTerm("json")
	kSize            = ast.StringTerm("size")
	kTruncated       = ast.StringTerm("truncated")
	kUpgrade         = ast.StringTerm("upgrade")
	kDialect         = ast.StringTerm("dialect")
	kDatabase        = ast.StringTerm("database")
	kUser            = ast.StringTerm("user")
	kStatement       = ast.StringTerm("statement")
	kStatements      = ast.StringTerm("statements")
	kVerb            = ast.StringTerm("verb")
	kTables          = ast.StringTerm("tables")
	kFunctions       = ast.StringTerm("functions")
	kText            = ast.StringTerm("text")
	kProgram         = ast.StringTerm("program")
	kLocalFile       = ast.StringTerm("local_file")
	kVerbs           = ast.StringTerm("verbs")
	kQualifiedTables = ast.StringTerm("qualified_tables")
	kUnparseable     = ast.StringTerm("unparseable")
	kGroup           = ast.StringTerm("group")
	kVersion         = ast.StringTerm("version")
	kResource        = ast.StringTerm("resource")
	kSubresource     = ast.StringTerm("subresource")
	kNamespace       = ast.StringTerm("namespace")
	kName            = ast.StringTerm("name")
	kContainer       = ast.StringTerm("container")
	kParams          = ast.StringTerm("params")
	kObject          = ast.StringTerm("object")
	kDiscovery       = ast.StringTerm("discovery")
	kSNI             = ast.StringTerm("sni")
	kALPN            = ast.StringTerm("alpn")
)

// maxWord bounds the strings looked up in a vocabulary: longer ones are
// rarely repeated, and hashing a body to find that out costs more than it saves.
const maxWord = 64

// policyVocabulary adds to vocabulary every short string literal of the
// compiled policy: an input string a rule compares against ("github",
// "/graphql", a channel name) then costs no allocation. Read-only once built.
func policyVocabulary(mods map[string]*ast.Module) map[string]*ast.Term {
	m := make(map[string]*ast.Term, len(vocabulary)+64)
	for w, t := range vocabulary {
		m[w] = t
	}
	for _, mod := range mods {
		ast.WalkTerms(mod, func(t *ast.Term) bool {
			if s, ok := t.Value.(ast.String); ok && len(s) <= maxWord && m[string(s)] == nil {
				m[string(s)] = ast.StringTerm(string(s))
			}
			return false
		})
	}
	return m
}

// vocabulary holds the values most inputs repeat; it is read-only after init.
var vocabulary = func() map[string]*ast.Term {
	words := []string{
		"", "http", "https", "sql", "k8s", "tcp", "tls", "udp", "websocket", "h2", "http/1.1",
		"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "/",
		"accept", "accept-encoding", "accept-language", "authorization", "cache-control",
		"connection", "content-length", "content-type", "cookie", "host", "origin", "referer",
		"user-agent", "x-api-key", "x-request-id", "anthropic-version", "openai-beta",
		"application/json", "*/*", "<redacted>", "gzip", "keep-alive",
		"postgres", "mysql", "clickhouse",
		"select", "insert", "update", "delete", "copy", "create", "drop", "alter", "truncate",
		"get", "list", "watch", "create", "patch", "deletecollection", "connect",
		"v1", "apps", "pods", "exec", "log", "secrets", "configmaps", "deployments", "services",
		"namespaces", "default",
	}
	m := make(map[string]*ast.Term, len(words))
	for _, w := range words {
		m[w] = ast.StringTerm(w)
	}
	return m
}()
