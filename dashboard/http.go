package dashboard

import (
	"bytes"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/clawpatrol/clawpatrol/action"
	"github.com/clawpatrol/clawpatrol/approve"
	"github.com/clawpatrol/clawpatrol/audit"
	"github.com/clawpatrol/clawpatrol/fixtures"
)

//go:embed web
var web embed.FS

var (
	static    = must(fs.Sub(web, "web/static"))
	templates = template.Must(template.New("").Funcs(template.FuncMap{
		"ms":    formatMS,
		"bytes": formatBytes,
	}).ParseFS(web, "web/*.html"))
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Limits of what a browser may send.
const (
	maxFormBytes    = 16 << 10
	maxReasonLength = 500
	maxCallbackBody = 64 << 10
	// heartbeat keeps an idle event stream alive through proxies and lets
	// a dead one be noticed.
	heartbeat = 15 * time.Second
)

// contentSecurity allows nothing but this origin: no inline script, no
// CDN, no external font; the page works offline.
const contentSecurity = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// handler routes every request. Everything needs the session's token
// except the webhook callback, which carries its own HMAC signature.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /action/{id}", s.detail)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /api/state", s.apiState)
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /api/actions", s.apiActions)
	mux.HandleFunc("GET /api/actions/{id}", s.apiAction)
	mux.HandleFunc("GET /api/actions/{id}/fixture", s.fixture)
	mux.HandleFunc("GET /api/approvals", s.apiApprovals)
	// Decisions change state: the CSRF token and a same-origin browser.
	mux.Handle("POST /api/approvals/{id}", http.NewCrossOriginProtection().Handler(http.HandlerFunc(s.decide)))

	top := http.NewServeMux()
	top.HandleFunc("POST /api/webhook/{session}", s.webhook)
	top.Handle("/", s.guard(mux))
	return top
}

// cookieName differs per port: browsers share cookies across the ports of
// one host, and two dashboards must not overwrite each other's.
func (s *Server) cookieName() string {
	_, port, _ := net.SplitHostPort(s.currentAddr())
	return "clawpatrol_dashboard_" + port
}

// guard lets a request through with the session's token: in the cookie,
// as a bearer token, or once in ?token=, which sets the cookie and
// redirects to the same page without it.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurity)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if !s.hostAllowed(r.Host) {
			// A name that resolves to loopback (DNS rebinding) is not us.
			http.Error(w, "clawpatrol dashboard: unexpected Host header", http.StatusMisdirectedRequest)
			return
		}
		token, _ := s.secrets()
		if q := r.URL.Query(); q.Has("token") && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			if !equal(q.Get("token"), token) {
				unauthorized(w)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: token, Path: "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode})
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		if !s.authorized(r, token) {
			unauthorized(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) authorized(r *http.Request, token string) bool {
	if c, err := r.Cookie(s.cookieName()); err == nil && equal(c.Value, token) {
		return true
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && equal(bearer, token)
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="clawpatrol dashboard"`)
	http.Error(w, "clawpatrol dashboard: open the URL that `clawpatrol run` printed when the session started: it carries the session's token",
		http.StatusUnauthorized)
}

// hostAllowed checks the Host header of a loopback dashboard.
func (s *Server) hostAllowed(host string) bool {
	if s.opts.AllowRemote {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}

func equal(a, b string) bool {
	return b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// indexPage is the data of the main page.
type indexPage struct {
	CSRF string
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	_, csrf := s.secrets()
	render(w, "index.html", indexPage{CSRF: csrf})
}

// detailPage is the data of an action's page.
type detailPage struct {
	CSRF     string
	Row      row
	Record   audit.ActionRecord
	Session  SessionInfo
	Reasons  []action.Reason
	Approval *action.Approval
	Pending  *approve.Pending // while it waits
	Input    string           // the redacted policy input, indented
	Builtin  bool             // decided by a rule of clawpatrol's own
}

// builtinRules are decided outside the policy: a fixture of one does not
// replay to the same decision.
var builtinRules = map[string]bool{"local-address": true, "placeholder-leak": true, "audit-log-unwritable": true}

func (s *Server) detail(w http.ResponseWriter, r *http.Request) {
	rw, info, ok := s.hub.find(r.PathValue("id"))
	if !ok {
		http.Error(w, "no such action on this dashboard (it keeps the newest; the audit log has them all)", http.StatusNotFound)
		return
	}
	_, csrf := s.secrets()
	d := rw.rec.Decision
	page := detailPage{CSRF: csrf, Row: rw, Record: rw.rec, Session: info, Reasons: d.Reasons, Approval: d.Approval, Builtin: builtinRules[d.Rule]}
	if p, ok := s.hub.pending(rw.ID); ok {
		page.Pending = &p
	}
	if rw.rec.Input != nil {
		page.Input = indentJSON(rw.rec.Input)
	}
	render(w, "action.html", page)
}

func render(w http.ResponseWriter, name string, data any) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) apiState(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.hub.state())
}

// matches applies the page's filters to a row; the page's script does the
// same (app.js, matches).
func matches(r *row, verdict, protocol, endpoint, session string) bool {
	switch {
	case verdict == "approve" && r.Verdict != "approve" && r.Approver == "":
		return false
	case verdict != "" && verdict != "approve" && r.Verdict != verdict:
		return false
	case protocol != "" && r.Protocol != protocol:
		return false
	case endpoint != "" && r.Endpoint != endpoint:
		return false
	case session != "" && r.Session != session:
		return false
	}
	return true
}

// apiActions lists the rows, oldest first, filtered by ?verdict=,
// ?protocol=, ?endpoint= and ?session=.
func (s *Server) apiActions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	out := []*row{}
	for _, rw := range s.hub.state().Rows {
		if matches(rw, q.Get("verdict"), q.Get("protocol"), q.Get("endpoint"), q.Get("session")) {
			out = append(out, rw)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiAction(w http.ResponseWriter, r *http.Request) {
	rw, _, ok := s.hub.find(r.PathValue("id"))
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such action"})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		row
		Record audit.ActionRecord `json:"record"`
	}{rw, rw.rec})
}

func (s *Server) apiApprovals(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.hub.state().Pending)
}

// events streams the dashboard: a snapshot, then every change.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	c := s.hub.subscribe()
	defer s.hub.unsubscribe(c)
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	// retry: a lost stream (the owner ended, another session took over)
	// comes back within a second.
	if !flush(w, rc, []byte("retry: 1000\n\n")) {
		return
	}
	for {
		var msg []byte
		select {
		case e := <-c.ch:
			msg = fmt.Appendf(nil, "event: %s\ndata: %s\n\n", e.name, e.data)
		case <-tick.C:
			msg = []byte(": ping\n\n")
		case <-c.gone:
			return // lagged: the browser reconnects to a fresh snapshot
		case <-r.Context().Done():
			return
		}
		if !flush(w, rc, msg) {
			return
		}
	}
}

func flush(w http.ResponseWriter, rc *http.ResponseController, msg []byte) bool {
	_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := w.Write(msg); err != nil {
		return false
	}
	return rc.Flush() == nil
}

// decide takes Approve or Deny from the page.
func (s *Server) decide(w http.ResponseWriter, r *http.Request) {
	_, csrf := s.secrets()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad form"})
		return
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostForm.Get("csrf")
	}
	if !equal(got, csrf) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "missing or wrong CSRF token: decide from the dashboard's page", "code": "csrf"})
		return
	}
	var verdict action.Verdict
	switch r.PostForm.Get("verdict") {
	case "allow", "approve":
		verdict = action.Allow
	case "deny":
		verdict = action.Deny
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "verdict must be allow or deny"})
		return
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if len(reason) > maxReasonLength {
		reason = reason[:maxReasonLength]
	}
	p, err := s.hub.resolve(r.PathValue("id"), approve.Resolution{Verdict: verdict, By: s.who(r), Via: approve.ViaDashboard, Reason: reason})
	p.Input = nil
	status := http.StatusOK
	switch {
	case errors.Is(err, approve.ErrUnknown):
		status = http.StatusNotFound
	case errors.Is(err, approve.ErrDecided), errors.Is(err, approve.ErrNotAsked):
		status = http.StatusConflict
	case err != nil:
		status = http.StatusBadGateway
	}
	out := map[string]any{"ok": err == nil, "pending": p}
	if err != nil {
		out["error"], out["code"] = err.Error(), errorCode(err)
	}
	writeJSON(w, status, out)
}

// who names the person deciding: the user running the dashboard (only
// they hold the token), and where from when it is not this host.
func (s *Server) who(r *http.Request) string {
	name := s.user
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && !ip.IsLoopback() {
			name += " from " + ip.String()
		}
	}
	return name
}

// webhook takes a webhook approver's later answer for a session.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	src := s.hub.sourceOf(r.PathValue("session"))
	if src == nil {
		http.Error(w, "no such session", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCallbackBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	status, ans := src.callback(body, r.Header.Get(approve.SignatureHeader))
	if status == http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.WriteHeader(status)
	_, _ = w.Write(ans)
}

// serveCallback runs approve's callback handler on a body that arrived
// here, or at the owner of the page and was relayed.
func serveCallback(h http.Handler, body []byte, signature string) (int, []byte) {
	req, err := http.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	if err != nil {
		return http.StatusBadRequest, []byte(err.Error())
	}
	req.Header.Set(approve.SignatureHeader, signature)
	req.Header.Set("Content-Type", "application/json")
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	h.ServeHTTP(rec, req)
	return rec.status, rec.body.Bytes()
}

// recorder is a ResponseWriter that keeps the response.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}

// fixtureOf is SPEC §7's fixture of a row: its redacted input, expecting
// what the policy said (approve for an action that went to approvers, as
// `run --record` writes it).
func fixtureOf(rec audit.ActionRecord) fixtures.Fixture {
	d := rec.Decision
	verdict := d.Verdict
	if d.Approval != nil {
		verdict = action.Approve
	}
	return fixtures.Fixture{Name: rec.Summary, Action: rec.Input, Expect: fixtures.Expect{Verdict: verdict, Rule: d.Rule}}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (s *Server) fixture(w http.ResponseWriter, r *http.Request) {
	rw, _, ok := s.hub.find(r.PathValue("id"))
	if !ok || rw.rec.Input == nil {
		http.Error(w, "no such action on this dashboard", http.StatusNotFound)
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<redacted>" stays readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(fixtureOf(rw.rec)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	name := strings.Trim(unsafeName.ReplaceAllString(rw.Protocol+"-"+strings.ReplaceAll(rw.Destination, ":", "-")+"-"+rw.ID, "-"), "-")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.json"`)
	_, _ = w.Write(buf.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func indentJSON(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err.Error()
	}
	return buf.String()
}

func formatMS(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d == 0:
		return "—"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func formatBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
