package clickhouse

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	nethttp "net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/sqlfacts"
)

// readChunk is how much of a body is read at a time while looking for the
// end of the statement.
const readChunk = 32 << 10

// request is one agent request under inspection.
type request struct {
	r      *nethttp.Request
	params url.Values
	query  bool   // the request carries a query (else it is a ping, the play UI, ...)
	text   string // the query text the policy sees
	head   []byte // the body bytes read for it, forwarded first
	whole  bool   // head is the whole body
	user   string // the agent's credentials
	pass   string
	hasPW  bool
}

// ServeHTTP is one agent request: build the action, decide, forward what
// is allowed, and report the outcome. Every request gets exactly one
// Finish; those the gate decided got a Decide first.
func (f *flow) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	start := time.Now()
	req, refusal := f.read(r)
	a := f.action(req)
	var d action.Decision
	var out action.Outcome
	defer func() {
		out.Duration = time.Since(start)
		f.opts.Gate.Finish(a, d, out)
	}()
	if refusal != nil {
		d = *refusal
		writeError(w, nethttp.StatusForbidden, d)
		return
	}
	if req.text != "" && a.SQL != nil {
		f.log.Debug("clickhouse query", zap.Strings("verbs", a.SQL.Verbs))
	}
	d = f.opts.Gate.Decide(r.Context(), a)
	if !d.Allowed() {
		writeError(w, nethttp.StatusForbidden, d)
		return
	}
	f.forward(w, req, a, &d, &out)
}

// read takes what the policy needs from a request: its query, as the
// server will read it, and the agent's credentials. A refusal is a request
// clawpatrol will not pass whatever the policy says.
func (f *flow) read(r *nethttp.Request) (*request, *action.Decision) {
	req := &request{r: r, params: r.URL.Query()}
	refuse := func(rule, format string, a ...any) (*request, *action.Decision) {
		d := action.Denied(rule, fmt.Sprintf(format, a...))
		return req, &d
	}
	for _, p := range []string{"query", "database", "user", "password", "decompress"} {
		if len(req.params[p]) > 1 {
			return refuse("clickhouse-malformed", "the %s parameter is given more than once", p)
		}
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "multipart/form-data" {
		// The query and external tables could come in the form's parts.
		return refuse("clickhouse-unsupported", "multipart/form-data requests (external tables) are not inspected")
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") || req.params.Get("decompress") != "" && req.params.Get("decompress") != "0" {
		return refuse("clickhouse-unsupported", "compressed request bodies are not inspected")
	}
	if err := req.credentials(); err != nil {
		return refuse("clickhouse-malformed", "%s", err.Error())
	}
	if err := req.readQuery(f.opts.TextLimit); err != nil {
		return refuse("clickhouse-malformed", "request body: %v", err)
	}
	if l := f.opts.Login; l != nil && req.hasPW && req.pass != l.Placeholder {
		return refuse("credential", "the password is not the placeholder of credential %q", f.credential())
	}
	return req, nil
}

// readQuery finds the query the server will read: the query parameter,
// then a newline and the body; without the parameter, the body of a POST.
// A GET with neither is a ping, and other paths are the server's pages:
// those requests carry no query.
func (req *request) readQuery(limit int) error {
	r := req.r
	_, hasQuery := req.params["query"]
	body := r.ContentLength != 0 && r.Body != nil && r.Body != nethttp.NoBody
	req.query = r.URL.Path == "/" && (hasQuery || body && r.Method != nethttp.MethodGet && r.Method != nethttp.MethodHead)
	if !req.query {
		return nil
	}
	prefix := ""
	if hasQuery {
		prefix = req.params.Get("query")
		if !body {
			req.text, req.whole = prefix, true
			return nil
		}
		prefix += "\n"
		if end, ok := sqlfacts.ClickHouseInsertData(prefix); ok {
			// INSERT ... FORMAT in the parameter: the body is all rows.
			req.text = prefix[:end]
			return nil
		}
	}
	return req.readBody(prefix, limit)
}

// readBody reads the body until the statement is known: to the end, up to
// the limit, or up to the rows of an INSERT ... FORMAT.
func (req *request) readBody(prefix string, limit int) error {
	buf := make([]byte, 0, min(limit+1, readChunk))
	for {
		buf = slices.Grow(buf, min(readChunk, limit+1-len(buf)))
		room := buf[len(buf):min(cap(buf), limit+1)]
		n, err := req.r.Body.Read(room)
		buf = buf[:len(buf)+n]
		text := prefix + string(buf)
		if end, ok := sqlfacts.ClickHouseInsertData(text); ok {
			req.text, req.head = text[:end], buf
			return nil
		}
		if errors.Is(err, io.EOF) {
			req.text, req.head, req.whole = text, buf, true
			return nil
		}
		if err != nil {
			return err
		}
		if len(buf) > limit {
			// Longer than the policy sees: it gets the start, marked truncated.
			req.text, req.head = text[:len(prefix)+limit], buf
			return nil
		}
	}
}

// truncated reports whether the policy sees only the start of the query.
func (req *request) truncated(limit int) bool {
	return req.query && len(req.head) > limit
}

// credentials finds the agent's login: X-ClickHouse-User and
// X-ClickHouse-Key, Basic authentication, or the user and password
// parameters. The server refuses more than one way at once, and so does
// clawpatrol.
func (req *request) credentials() error {
	ways := 0
	h := req.r.Header
	if u, k := h.Values("X-ClickHouse-User"), h.Values("X-ClickHouse-Key"); len(u) > 0 || len(k) > 0 {
		ways++
		req.user, req.pass, req.hasPW = first(u), first(k), len(k) > 0
	}
	if auth := h.Get("Authorization"); auth != "" {
		ways++
		scheme, enc, _ := strings.Cut(auth, " ")
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
		user, pass, ok := strings.Cut(string(dec), ":")
		if !strings.EqualFold(scheme, "basic") || err != nil || !ok {
			return errors.New("the Authorization header is not Basic authentication")
		}
		req.user, req.pass, req.hasPW = user, pass, true
	}
	if _, u := req.params["user"]; u || req.params.Has("password") {
		ways++
		req.user, req.pass, req.hasPW = req.params.Get("user"), req.params.Get("password"), req.params.Has("password")
	}
	if ways > 1 {
		return errors.New("credentials are given in more than one way")
	}
	return nil
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (f *flow) credential() string {
	if f.t.Endpoint != nil {
		return f.t.Endpoint.Credential
	}
	return ""
}

// action builds the policy input of a request: the sql block of its
// query, or, for a request without one, its HTTP facts.
func (f *flow) action(req *request) *action.Action {
	a := &action.Action{Protocol: action.ProtoSQL, Destination: f.dest}
	if ep := f.t.Endpoint; ep != nil {
		a.Endpoint, a.Credential = ep.Name, ep.Credential
	}
	if !req.query {
		a.Protocol = action.ProtoHTTP
		a.HTTP = &action.HTTP{Method: req.r.Method, Scheme: "http", Host: req.r.Host, Path: req.r.URL.Path,
			Query: redactedQuery(req.params), Headers: redactedHeaders(req.r.Header)}
		return a
	}
	q := sqlfacts.ClickHouse(req.text)
	q.Truncated = req.truncated(f.opts.TextLimit)
	q.Database = req.params.Get("database")
	if q.Database == "" {
		q.Database = req.r.Header.Get("X-ClickHouse-Database")
	}
	q.User = req.user
	if l := f.opts.Login; l != nil && l.Username != "" {
		q.User = l.Username
	}
	a.SQL = q
	return a
}

// redactedQuery is the query parameters as the policy sees them: the
// password is never shown.
func redactedQuery(v url.Values) map[string][]string {
	if len(v) == 0 {
		return nil
	}
	out := make(map[string][]string, len(v))
	for k, vals := range v {
		if k == "password" {
			vals = []string{"<redacted>"}
		}
		out[k] = vals
	}
	return out
}

func redactedHeaders(h nethttp.Header) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, vals := range h {
		name := strings.ToLower(k)
		if name == "authorization" || name == "x-clickhouse-key" {
			vals = []string{"<redacted>"}
		}
		out[name] = vals
	}
	return out
}

// body is what is forwarded of the request body: the head that was read,
// then the rest as it comes.
func (req *request) body() io.Reader {
	if req.whole {
		return bytes.NewReader(req.head)
	}
	return io.MultiReader(bytes.NewReader(req.head), req.r.Body)
}
